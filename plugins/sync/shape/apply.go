package shape

import (
	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Apply returns what a row change on the shape's table means for the shape, in
// order: nothing, an insert, update or delete, or — when an update moves a row into
// or out of the shape, or changes its key — the insert or delete (or both) that
// keep a reader's copy right. Headers' transaction fields are left to the caller.
//
// Updates and deletes are judged by the old row, which the table's REPLICA IDENTITY
// FULL provides (the live engine sets it on a shape's table); with only the old key,
// a row is taken to have been in the shape.
func (s *Shape) Apply(c *capture.Change) []syncapi.Message {
	switch c.Kind {
	case capture.Insert:
		if !s.Matches(c.New) {
			return nil
		}
		return []syncapi.Message{s.Row(c.New)}
	case capture.Delete:
		if !s.wasIn(c.Old) {
			return nil
		}
		return []syncapi.Message{s.deleted(c.Old)}
	case capture.Update:
		return s.update(c)
	}
	return nil
}

// wasIn judges an old row: with the key alone (no REPLICA IDENTITY FULL) it can't
// be evaluated, and is taken to be in.
func (s *Shape) wasIn(old map[string]*string) bool {
	if s.where == nil {
		return true
	}
	for _, c := range s.where.Columns() {
		if _, ok := old[c]; !ok {
			return true
		}
	}
	return s.Matches(old)
}

func (s *Shape) deleted(old map[string]*string) syncapi.Message {
	value := pick(old, s.Key)
	if s.full && len(old) > len(s.Key) {
		value = pick(old, s.columns)
	}
	return syncapi.Message{
		Headers: syncapi.Headers{Operation: syncapi.OperationDelete, Relation: []string{s.Table.Schema, s.Table.Name}},
		Key:     s.RowKey(old), Value: value,
	}
}

func (s *Shape) update(c *capture.Change) []syncapi.Message {
	old := c.Old
	if old == nil {
		old = pick(c.New, s.Key) // no key change, no FULL: the key is the new one
	}
	// Unchanged TOASTed values pgoutput left out of the new row are the old ones.
	newRow := c.New
	if len(c.Unchanged) > 0 {
		newRow = make(map[string]*string, len(c.New)+len(c.Unchanged))
		for k, v := range c.New {
			newRow[k] = v
		}
		for _, k := range c.Unchanged {
			if v, ok := old[k]; ok {
				newRow[k] = v
			}
		}
	}
	in, wasIn := s.Matches(newRow), s.wasIn(old)
	switch {
	case !in && !wasIn:
		return nil
	case in && !wasIn:
		return []syncapi.Message{s.Row(newRow)}
	case !in && wasIn:
		return []syncapi.Message{s.deleted(old)}
	}
	if _, ok := old[s.Key[0]]; ok && s.keyChanged(old, newRow) {
		return []syncapi.Message{s.deleted(old), s.Row(newRow)}
	}
	m := syncapi.Message{
		Headers: syncapi.Headers{Operation: syncapi.OperationUpdate, Relation: []string{s.Table.Schema, s.Table.Name}},
		Key:     s.RowKey(newRow),
		Value:   pick(newRow, s.Key),
	}
	knownOld := len(old) > len(s.Key)
	changed := 0
	for _, col := range s.columns {
		nv, ok := newRow[col]
		if !ok {
			continue
		}
		ov, had := old[col]
		if knownOld && had && eqValue(ov, nv) {
			if s.full {
				m.Value[col] = nv
			}
			continue
		}
		m.Value[col] = nv
		changed++
		if s.full && had {
			if m.OldValue == nil {
				m.OldValue = map[string]*string{}
			}
			m.OldValue[col] = ov
		}
	}
	if changed == 0 {
		return nil // no column of the shape changed
	}
	return []syncapi.Message{m}
}
