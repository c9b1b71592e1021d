package main_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// import_records: a column a record leaves out keeps its value on update and takes
// its default on insert; an explicit null is NULL.
func TestImportRecordsOperationLeavesUnmentionedColumnsAlone(t *testing.T) {
	s := startSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE prefs (id int PRIMARY KEY, theme text DEFAULT 'light', lang text NOT NULL DEFAULT 'en', note text);
		INSERT INTO prefs VALUES (1, 'dark', 'fr', 'kept')`)
	var res importer.Result
	err := s.call(t, "import_records", map[string]any{"table": "prefs", "strategy": "overwrite",
		"records": []map[string]any{{"id": "1", "theme": "blue"}, {"id": "2", "note": nil}}}, &res)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 1 || res.Updated != 1 || res.Failed != 0 {
		t.Fatalf("%+v", res)
	}
	var got []string
	rows, err := s.pool.Query(context.Background(), `SELECT concat_ws('|', id, theme, lang, coalesce(note, '∅')) FROM prefs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || got[0] != "1|blue|fr|kept" || got[1] != "2|light|en|∅" {
		t.Fatalf("rows %q", got)
	}
}
