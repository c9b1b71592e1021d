package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// DefaultPageBytes is the byte budget of one page of the records API when
// Snapshot.PageBytes is not set: a page stops short (HasMore true) once its values
// pass it, so a table of large rows is served in bounded memory whatever limit
// the receiver asks for.
const DefaultPageBytes = 4 << 20

// JSONPage is one page of the records API with PhoenixKit's JSON-typed values.
type JSONPage struct {
	// Records are JSON objects, column → value: integers and floats as numbers,
	// booleans, numeric and money as strings, uuid as text, date/time as ISO 8601
	// (timestamptz in UTC with a Z), json/jsonb as the document, arrays as lists,
	// bytea as {"__phoenix_kit_binary__": base64}.
	Records []json.RawMessage
	Offset  int
	HasMore bool
}

// jsonExpr is the SQL giving column c of src as PhoenixKit's sender serializes it.
func jsonExpr(c catalog.Column) string {
	col := "src." + pgx.Identifier{c.Name}.Sanitize()
	t := c.BaseType
	if t == "" {
		t = c.Type
	}
	switch {
	case strings.HasSuffix(t, "[]"):
		return "to_jsonb(" + col + ")"
	case strings.HasPrefix(t, "numeric"), t == "money":
		return "to_jsonb(" + col + "::text)"
	case t == "bytea":
		return "CASE WHEN " + col + " IS NOT NULL THEN jsonb_build_object('__phoenix_kit_binary__', translate(encode(" + col + ", 'base64'), E'\\n', '')) END"
	case t == "timestamp with time zone":
		return `to_jsonb(to_char(` + col + ` AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))`
	case t == "timestamp without time zone":
		return `to_jsonb(to_char(` + col + `, 'YYYY-MM-DD"T"HH24:MI:SS.US'))`
	}
	return "to_jsonb(" + col + ")"
}

// RecordsJSON returns rows offset..offset+limit in key order with JSON-typed
// values, for receivers that did not ask for text (PhoenixKit's). A page holds at
// least one row and stops once it passes PageBytes.
func (s *Snapshot) RecordsJSON(ctx context.Context, sch *catalog.Schema, offset, limit int) (p JSONPage, err error) {
	err = s.Isolate(ctx, func() error {
		p, err = s.recordsJSON(ctx, sch, offset, limit)
		return err
	})
	return p, err
}

func (s *Snapshot) recordsJSON(ctx context.Context, sch *catalog.Schema, offset, limit int) (JSONPage, error) {
	cols := sch.Writable()
	sel := make([]string, len(cols))
	for i, c := range cols {
		sel[i] = jsonExpr(c) + " AS " + pgx.Identifier{c.Name}.Sanitize()
	}
	p := JSONPage{Offset: offset, Records: []json.RawMessage{}}
	more, err := s.page(ctx, sch, "to_jsonb(x)::text", "LATERAL (SELECT "+strings.Join(sel, ", ")+") AS x", offset, limit, func(rows pgx.Rows) (int, error) {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return 0, err
		}
		p.Records = append(p.Records, json.RawMessage(rec))
		return len(rec), nil
	})
	if err != nil {
		return JSONPage{}, err
	}
	p.HasMore = more
	return p, nil
}

func (s *Snapshot) pageBytes() int {
	if s.PageBytes > 0 {
		return s.PageBytes
	}
	return DefaultPageBytes
}

// pageCursor is the cursor a page is read through.
const pageCursor = "fiberkit_page"

// page reads a page of the records API: selectList over the table (as src, with
// from joined) in key order from offset, rows handed to each (which returns their
// size) until limit rows or until the page passed PageBytes. It reads through a
// cursor, a few rows at a time sized on the rows seen so far, so that no more rows
// than the page holds (and one to know whether more follow) leave the database,
// however large they are. It reports whether more rows follow.
func (s *Snapshot) page(ctx context.Context, sch *catalog.Schema, selectList, from string, offset, limit int, each func(pgx.Rows) (int, error)) (more bool, err error) {
	if offset < 0 || limit <= 0 {
		return false, fmt.Errorf("export %s: offset must be ≥ 0 and limit > 0", sch.Name)
	}
	if catalog.IsSecretTable(sch.Name) {
		return false, fmt.Errorf("export: %w: %q", catalog.ErrUnknownTable, sch.Name)
	}
	exprs, _ := keyColumns(sch)
	// Order by the table's own columns (src.…), not outputs of the same name.
	order := make([]string, len(exprs))
	for i, e := range exprs {
		order[i] = "src." + e
	}
	if from != "" {
		from = ", " + from
	}
	table := catalog.IdentOf(sch).Quoted()
	if _, err := s.tx.Exec(ctx, fmt.Sprintf("DECLARE %s NO SCROLL CURSOR FOR SELECT %s FROM %s AS src%s%s ORDER BY %s OFFSET %d LIMIT %d",
		pageCursor, selectList, s.source(sch), from, addCond("", s.leftOutCond(table, "src.tableoid")), strings.Join(order, ", "), offset, limit+1)); err != nil {
		return false, fmt.Errorf("export %s: %w", sch.Name, err)
	}
	budget := s.pageBytes()
	n, size := 0, 0
	for {
		want := 1 // the first row tells how large rows are
		if n > 0 {
			want = max(1, min(limit+1-n, (budget-size)/max(1, size/n)+1))
		}
		// Simple protocol: the same FETCH text returns other columns for another page.
		rows, err := s.tx.Query(ctx, fmt.Sprintf("FETCH %d FROM %s", want, pageCursor), pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return false, fmt.Errorf("export %s: %w", sch.Name, err)
		}
		got := 0
		for rows.Next() {
			got++
			if n == limit || size > budget {
				more = true
				break
			}
			sz, err := each(rows)
			if err != nil {
				rows.Close()
				return false, fmt.Errorf("export %s: %w", sch.Name, err)
			}
			n, size = n+1, size+sz
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("export %s: %w", sch.Name, err)
		}
		if more || got < want {
			break
		}
	}
	if _, err := s.tx.Exec(ctx, "CLOSE "+pageCursor); err != nil {
		return false, fmt.Errorf("export %s: %w", sch.Name, err)
	}
	return more, nil
}
