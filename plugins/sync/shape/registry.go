package shape

import (
	"github.com/fiberkit/fiberkit/plugins/sync/capture"
)

// Registry holds shapes by table and finds those a change can concern. A shape
// whose where clause has a top-level equality (`user_id = $1`) is indexed by that
// column's value: a change is looked up by its old and new values in each indexed
// column, so a thousand such shapes cost a few map lookups per change, not a
// thousand evaluations. Other shapes of the table are always candidates. A
// Registry is not safe for concurrent use.
type Registry[T any] struct {
	tables map[tableKey]*tableShapes[T]
}

type tableKey struct{ schema, name string }

type tableShapes[T any] struct {
	all []*entry[T]
	// eq[column][value] are the shapes indexed by that equality.
	eq map[string]map[string][]*entry[T]
}

type entry[T any] struct {
	s   *Shape
	val T
}

// NewRegistry returns an empty Registry carrying a T with each shape.
func NewRegistry[T any]() *Registry[T] {
	return &Registry[T]{tables: map[tableKey]*tableShapes[T]{}}
}

// Add registers s with val.
func (r *Registry[T]) Add(s *Shape, val T) {
	k := tableKey{s.Table.Schema, s.Table.Name}
	t := r.tables[k]
	if t == nil {
		t = &tableShapes[T]{eq: map[string]map[string][]*entry[T]{}}
		r.tables[k] = t
	}
	e := &entry[T]{s: s, val: val}
	if eqs := s.Equalities(); len(eqs) > 0 {
		// One equality is enough to find the shape: the first.
		q := eqs[0]
		m := t.eq[q.Column]
		if m == nil {
			m = map[string][]*entry[T]{}
			t.eq[q.Column] = m
		}
		m[q.Value] = append(m[q.Value], e)
		return
	}
	t.all = append(t.all, e)
}

// Remove unregisters the shape whose value satisfies same.
func (r *Registry[T]) Remove(s *Shape, same func(T) bool) {
	k := tableKey{s.Table.Schema, s.Table.Name}
	t := r.tables[k]
	if t == nil {
		return
	}
	drop := func(es []*entry[T]) []*entry[T] {
		out := es[:0]
		for _, e := range es {
			if !(e.s.Hash == s.Hash && same(e.val)) {
				out = append(out, e)
			}
		}
		return out
	}
	t.all = drop(t.all)
	for col, m := range t.eq {
		for v, es := range m {
			if m[v] = drop(es); len(m[v]) == 0 {
				delete(m, v)
			}
		}
		if len(m) == 0 {
			delete(t.eq, col)
		}
	}
	if len(t.all) == 0 && len(t.eq) == 0 {
		delete(r.tables, k)
	}
}

// Tables lists the tables that have shapes, as capture names them.
func (r *Registry[T]) Tables() []capture.Table {
	out := make([]capture.Table, 0, len(r.tables))
	for k := range r.tables {
		out = append(out, capture.Table{Schema: k.schema, Name: k.name})
	}
	return out
}

// Each calls fn for every shape of table (all tables when table is nil).
func (r *Registry[T]) Each(table *capture.Table, fn func(*Shape, T)) {
	visit := func(t *tableShapes[T]) {
		for _, e := range t.all {
			fn(e.s, e.val)
		}
		for _, m := range t.eq {
			for _, es := range m {
				for _, e := range es {
					fn(e.s, e.val)
				}
			}
		}
	}
	if table != nil {
		if t := r.tables[tableKey{table.Schema, table.Name}]; t != nil {
			visit(t)
		}
		return
	}
	for _, t := range r.tables {
		visit(t)
	}
}

// Candidates calls fn, once each, for the shapes a row change on its table may
// concern: the unindexed ones, and the indexed ones whose value the old or new row
// has.
func (r *Registry[T]) Candidates(c *capture.Change, fn func(*Shape, T)) {
	t := r.tables[tableKey{c.Schema, c.Table}]
	if t == nil {
		return
	}
	for _, e := range t.all {
		fn(e.s, e.val)
	}
	if len(t.eq) == 0 {
		return
	}
	for col, m := range t.eq {
		var newV, oldV string
		var hasNew, hasOld bool
		for _, es := range m {
			// Any shape of the column canonicalizes the row's value the same way.
			newV, hasNew = es[0].s.canonical(col, c.New[col])
			oldV, hasOld = es[0].s.canonical(col, c.Old[col])
			break
		}
		if hasNew {
			for _, e := range m[newV] {
				fn(e.s, e.val)
			}
		}
		// A shape is indexed under one value: the old value's shapes are others.
		if hasOld && (!hasNew || oldV != newV) {
			for _, e := range m[oldV] {
				fn(e.s, e.val)
			}
		}
	}
}
