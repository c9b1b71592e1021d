package importer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// records decodes JSON records as the import_records operation does: a key left out
// is absent from its map, an explicit null is a nil value.
func records(t *testing.T, js string) []map[string]*string {
	t.Helper()
	var out []map[string]*string
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func importRecords(t *testing.T, s *site, table string, strategy importer.Strategy, js string) importer.Result {
	t.Helper()
	ctx := context.Background()
	im, err := importer.New(ctx, s.pool, table, importer.Options{Strategy: strategy})
	if err != nil {
		t.Fatal(err)
	}
	res, err := im.ImportRecords(ctx, records(t, js))
	if err != nil {
		t.Fatalf("import %s (%s): %v", table, strategy, err)
	}
	return res
}

func checkResult(t *testing.T, res importer.Result, created, updated, skipped, failed int) {
	t.Helper()
	if res.Created != created || res.Updated != updated || res.Skipped != skipped || res.Failed != failed {
		t.Fatalf("result %+v, want created %d updated %d skipped %d failed %d", res, created, updated, skipped, failed)
	}
}

func checkRows(t *testing.T, s *site, sql string, want ...string) {
	t.Helper()
	if got := rows(t, s, sql); !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", sql, got, want)
	}
}

const suppliedTable = `CREATE TABLE people (id int PRIMARY KEY, name text, note text DEFAULT 'dflt',
	n int NOT NULL DEFAULT 7, tags text[] DEFAULT '{x}')`

const peopleRows = `SELECT id || '|' || coalesce(name, '∅') || '|' || coalesce(note, '∅') || '|' || n || '|' || coalesce(tags::text, '∅') FROM people ORDER BY id`

// A column a record leaves out is not supplied: existing rows keep it (overwrite and
// merge), new rows take its default; an explicit null is NULL.
func TestRecordsLeavingColumnsOut(t *testing.T) {
	batch := `[
		{"id": "1", "name": "b"},
		{"id": "2", "name": "c"},
		{"id": "3", "name": null, "note": null},
		{"id": "4", "name": "d", "note": "e", "n": "4", "tags": "{y}"}
	]`
	for _, tc := range []struct {
		strategy                  importer.Strategy
		created, updated, skipped int
		want                      []string
	}{
		{importer.Overwrite, 1, 3, 0, []string{"1|b|keep|5|{k}", "2|c|keep2|6|{k}", "3|∅|∅|8|{k}", "4|d|e|4|{y}"}},
		// Merge keeps the existing value where the incoming one is NULL, too.
		{importer.Merge, 1, 3, 0, []string{"1|b|keep|5|{k}", "2|c|keep2|6|{k}", "3|old3|keep3|8|{k}", "4|d|e|4|{y}"}},
		{importer.Skip, 1, 0, 3, []string{"1|a|keep|5|{k}", "2|old2|keep2|6|{k}", "3|old3|keep3|8|{k}", "4|d|e|4|{y}"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			s := newSite(t)
			s.exec(t, suppliedTable)
			s.exec(t, `INSERT INTO people VALUES (1, 'a', 'keep', 5, '{k}'), (2, 'old2', 'keep2', 6, '{k}'), (3, 'old3', 'keep3', 8, '{k}')`)
			checkResult(t, importRecords(t, s, "people", tc.strategy, batch), tc.created, tc.updated, tc.skipped, 0)
			checkRows(t, s, peopleRows, tc.want...)
		})
	}
	// Into an empty table, every record is new: defaults fill what it leaves out.
	t.Run("empty", func(t *testing.T) {
		s := newSite(t)
		s.exec(t, suppliedTable)
		checkResult(t, importRecords(t, s, "people", importer.Overwrite, batch), 4, 0, 0, 0)
		checkRows(t, s, peopleRows, "1|b|dflt|7|{x}", "2|c|dflt|7|{x}", "3|∅|∅|7|{x}", "4|d|e|4|{y}")
	})
	// Records that all leave the same columns out.
	t.Run("uniform", func(t *testing.T) {
		s := newSite(t)
		s.exec(t, suppliedTable)
		s.exec(t, `INSERT INTO people VALUES (1, 'a', 'keep', 5, '{k}')`)
		checkResult(t, importRecords(t, s, "people", importer.Overwrite, `[{"id": "1", "name": "b"}, {"id": "2", "name": "c"}]`), 1, 1, 0, 0)
		checkRows(t, s, peopleRows, "1|b|keep|5|{k}", "2|c|dflt|7|{x}")
	})
}

// Several records with one key, supplying different columns: the last one wins as in
// a batch of full rows, the others count as skipped.
func TestRecordsWithOneKeyLastWinsAcrossSuppliedColumns(t *testing.T) {
	s := newSite(t)
	s.exec(t, suppliedTable)
	s.exec(t, `INSERT INTO people VALUES (1, 'a', 'keep', 5, '{k}')`)
	res := importRecords(t, s, "people", importer.Overwrite, `[
		{"id": "1", "name": "first", "note": "first"},
		{"id": "1", "note": "second"},
		{"id": "5", "note": "x", "n": "1"},
		{"id": "5", "name": "y", "note": "z"},
		{"id": "5", "note": "w"},
		{"id": "6", "n": "2"},
		{"id": "6", "name": "v", "note": "first"}
	]`)
	checkResult(t, res, 2, 1, 4, 0)
	checkRows(t, s, peopleRows, "1|a|second|5|{k}", "5|∅|w|7|{x}", "6|v|first|7|{x}")

	// Append has no key to match: every record is a row, with the key's default.
	s.exec(t, `CREATE TABLE notes (id serial PRIMARY KEY, body text DEFAULT 'empty', at int DEFAULT 42)`)
	res = importRecords(t, s, "notes", importer.Append, `[{"body": "a"}, {"at": "1"}, {}, {"id": "77", "body": null, "at": "2"}]`)
	checkResult(t, res, 4, 0, 0, 0)
	checkRows(t, s, `SELECT coalesce(body, '∅') || '|' || at FROM notes ORDER BY id`, "a|42", "empty|1", "empty|42", "∅|2")
}

// A refused record in a batch of mixed columns is reported with its key; the others
// land as the batch statement would have written them.
func TestRecordsLeavingColumnsOutRowByRow(t *testing.T) {
	s := newSite(t)
	s.exec(t, suppliedTable)
	s.exec(t, `INSERT INTO people VALUES (1, 'a', 'keep', 5, '{k}')`)
	res := importRecords(t, s, "people", importer.Overwrite, `[
		{"id": "1", "note": "new"},
		{"id": "2", "n": "not a number"},
		{"id": "3", "n": null},
		{"id": "4"},
		{"id": "4", "name": "four"},
		{"id": "5", "name": "five", "n": "9"}
	]`)
	checkCounts(t, res, 2, 1, 1, "id", map[string]string{"2": "invalid input syntax", "3": "null value"})
	checkRows(t, s, peopleRows, "1|a|new|5|{k}", "4|four|dflt|7|{x}", "5|five|dflt|9|{x}")
}

// Many different sets of supplied columns in one batch.
func TestRecordsWithManySetsOfColumns(t *testing.T) {
	s := newSite(t)
	var cols []string
	for i := 1; i <= 8; i++ {
		cols = append(cols, fmt.Sprintf("c%d text DEFAULT 'd%d'", i, i))
	}
	s.exec(t, `CREATE TABLE wide (id int PRIMARY KEY, `+strings.Join(cols, ", ")+`)`)
	s.exec(t, `INSERT INTO wide (id) SELECT g FROM generate_series(0, 99, 2) g`)
	var recs []string
	for id := 0; id < 100; id++ {
		recs = append(recs, fmt.Sprintf(`{"id": "%d", "c%d": "v%d"}`, id, id%8+1, id))
	}
	res := importRecords(t, s, "wide", importer.Merge, "["+strings.Join(recs, ",")+"]")
	checkResult(t, res, 50, 50, 0, 0)
	checkRows(t, s, `SELECT concat_ws(',', id, c1, c2, c3, c4, c5, c6, c7, c8) FROM wide WHERE id IN (0, 1, 10, 15) ORDER BY id`,
		"0,v0,d2,d3,d4,d5,d6,d7,d8", "1,d1,v1,d3,d4,d5,d6,d7,d8", "10,d1,d2,v10,d4,d5,d6,d7,d8", "15,d1,d2,d3,d4,d5,d6,d7,v15")
}

// A record key the table lacks is refused, unless unknown columns are ignored.
func TestRecordsWithAnUnknownKey(t *testing.T) {
	s := newSite(t)
	s.exec(t, suppliedTable)
	ctx := context.Background()
	im, err := importer.New(ctx, s.pool, "people", importer.Options{Strategy: importer.Overwrite})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ImportRecords(ctx, records(t, `[{"id": "1", "nope": "x"}]`)); !errors.Is(err, importer.ErrUnknownColumn) {
		t.Fatalf("err = %v", err)
	}
	im, err = importer.New(ctx, s.pool, "people", importer.Options{Strategy: importer.Overwrite, IgnoreUnknownColumns: true})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, must(im.ImportRecords(ctx, records(t, `[{"id": "1", "nope": "x", "name": "n"}]`))), 1, 0, 0, 0)
	checkRows(t, s, peopleRows, "1|n|dflt|7|{x}")
}

func must(res importer.Result, err error) importer.Result {
	if err != nil {
		panic(err)
	}
	return res
}

// Incoming columns the table lacks: named all at once, or cut out of every line.
func TestUnknownColumnsRefusedOrCutOut(t *testing.T) {
	s := newSite(t)
	s.exec(t, `CREATE TABLE kept (id int PRIMARY KEY, a text, b text DEFAULT 'bd')`)
	ctx := context.Background()
	cols := []string{"gone1", "id", "a", "gone2", "b", "gone3"}
	_, err := importer.New(ctx, s.pool, "kept", importer.Options{Columns: cols})
	if !errors.Is(err, importer.ErrUnknownColumn) || !strings.Contains(err.Error(), `"gone1", "gone2", "gone3"`) {
		t.Fatalf("err = %v", err)
	}
	line := func(fields ...string) string { return strings.Join(fields, "\t") + "\n" }
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite} {
		s.exec(t, `TRUNCATE kept`)
		if strategy == importer.Overwrite {
			s.exec(t, `INSERT INTO kept VALUES (2, 'old', 'old')`) // not empty: through the temp table
		}
		im, err := importer.New(ctx, s.pool, "kept", importer.Options{Strategy: strategy, Columns: cols, IgnoreUnknownColumns: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := im.Dropped(); !reflect.DeepEqual(got, []string{"gone1", "gone2", "gone3"}) {
			t.Fatalf("dropped %v", got)
		}
		// Escaped tabs, newlines and backslashes stay inside their fields.
		batches := []string{
			line(`x\ty`, `1`, `a\tb`, `\N`, `b1`, `z\\`) + line(``, `2`, ``, `\\t`, `\N`, ``),
			line(`\N`, `3`, `a\nb\\`, `g\\`, `\\`, `last`),
		}
		for i, batch := range batches {
			res, err := im.ImportCopy(ctx, []byte(batch))
			if err != nil {
				t.Fatalf("%s batch %d: %v", strategy, i, err)
			}
			if res.Created+res.Updated != strings.Count(batch, "\n") || res.Failed != 0 {
				t.Fatalf("%s batch %d: %+v", strategy, i, res)
			}
		}
		checkRows(t, s, `SELECT id || '|' || a || '|' || coalesce(b, '∅') FROM kept ORDER BY id`,
			"1|a\tb|b1", "2||∅", "3|a\nb\\|\\")
		for _, bad := range []string{"1\t2\t3\t4\t5\n", "1\t2\t3\t4\t5\t6\t7\n"} {
			if _, err := im.ImportCopy(ctx, []byte(bad)); !errors.Is(err, importer.ErrMalformedBatch) {
				t.Fatalf("%q: err = %v", bad, err)
			}
		}
	}
	if _, err := importer.New(ctx, s.pool, "kept", importer.Options{Columns: []string{"x", "y"}, IgnoreUnknownColumns: true, Strategy: importer.Append}); err == nil {
		t.Fatal("no column left: no error")
	}
}
