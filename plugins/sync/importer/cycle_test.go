package importer_test

import (
	"context"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// storeStaff is pagila's cycle in small, on the receiver, with one store and its
// manager there: store.manager_staff_id → staff and staff.store_id → store, both NOT
// NULL and neither deferrable (a schema the receiver's app owns, not Sync).
const storeStaff = `
DROP TABLE IF EXISTS store, staff CASCADE;
CREATE TABLE store (store_id serial PRIMARY KEY, manager_staff_id int NOT NULL, name text NOT NULL);
CREATE TABLE staff (staff_id serial PRIMARY KEY, store_id int NOT NULL, name text);
INSERT INTO store VALUES (1, 1, 'old store');
INSERT INTO staff VALUES (1, 1, 'old staff');
ALTER TABLE staff ADD FOREIGN KEY (store_id) REFERENCES store ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE store ADD FOREIGN KEY (manager_staff_id) REFERENCES staff ON UPDATE CASCADE ON DELETE RESTRICT;
SELECT setval('store_store_id_seq', 1), setval('staff_staff_id_seq', 1);`

var (
	storeCols = []string{"store_id", "manager_staff_id", "name"}
	staffCols = []string{"staff_id", "store_id", "name"}
)

// The incoming rows: store 1 now managed by new staff 2; new store 2 managed by new
// staff 3, who works at store 2 — a cycle of new rows; staff 1 with a NULL name.
const (
	storeBatch = "1\t2\tstore one\n2\t3\tstore two\n"
	staffBatch = "1\t1\t\\N\n2\t1\tsecond\n3\t2\tthird\n"
	// Append: the keys are new, so the rows reference rows already there.
	storeAppend = "1\t1\tappended store\n"
	staffAppend = "1\t1\tappended staff\n"
)

const (
	storeRows = `SELECT store_id || ':' || manager_staff_id || ':' || name FROM store ORDER BY store_id`
	staffRows = `SELECT staff_id || ':' || store_id || ':' || coalesce(name, '∅') FROM staff ORDER BY staff_id`
)

// staged is one batch for a group: the importer of its table and its rows.
type staged struct {
	im   *importer.Importer
	data string
}

// storeStaffGroup makes store's and staff's importers with strategy and a group.
func storeStaffGroup(t *testing.T, s *site, strategy importer.Strategy) (g *importer.Group, store, staff *importer.Importer) {
	t.Helper()
	ctx := context.Background()
	store, err := importer.New(ctx, s.pool, "store", importer.Options{Strategy: strategy, Columns: storeCols})
	if err != nil {
		t.Fatal(err)
	}
	staff, err = importer.New(ctx, s.pool, "staff", importer.Options{Strategy: strategy, Columns: staffCols})
	if err != nil {
		t.Fatal(err)
	}
	if g, err = importer.NewGroup(ctx, s.pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	return g, store, staff
}

// commitGroup stages the batches in g, as they arrive, and commits it.
func commitGroup(t *testing.T, g *importer.Group, batches ...staged) []importer.Result {
	t.Helper()
	ctx := context.Background()
	for _, b := range batches {
		if err := g.Add(ctx, b.im, []byte(b.data)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := g.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Two existing tables whose foreign keys form a cycle import together with every
// strategy: one at a time, neither's new rows could go first.
func TestCyclicForeignKeysIntoExistingTables(t *testing.T) {
	s := newSite(t)
	ctx := context.Background()
	for _, tc := range []struct {
		strategy             importer.Strategy
		storeData, staffData string
		store, staff         [3]int // created, updated, skipped
		storeWant, staffWant []string
	}{
		{importer.Skip, storeBatch, staffBatch, [3]int{1, 0, 1}, [3]int{2, 0, 1},
			[]string{"1:1:old store", "2:3:store two"}, []string{"1:1:old staff", "2:1:second", "3:2:third"}},
		{importer.Overwrite, storeBatch, staffBatch, [3]int{1, 1, 0}, [3]int{2, 1, 0},
			[]string{"1:2:store one", "2:3:store two"}, []string{"1:1:∅", "2:1:second", "3:2:third"}},
		{importer.Merge, storeBatch, staffBatch, [3]int{1, 1, 0}, [3]int{2, 1, 0},
			[]string{"1:2:store one", "2:3:store two"}, []string{"1:1:old staff", "2:1:second", "3:2:third"}},
		{importer.Append, storeAppend, staffAppend, [3]int{1, 0, 0}, [3]int{1, 0, 0},
			[]string{"1:1:old store", "2:1:appended store"}, []string{"1:1:old staff", "2:1:appended staff"}},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			s.exec(t, storeStaff)
			g, store, staff := storeStaffGroup(t, s, tc.strategy)
			// Staged batch by batch, one table after the other.
			res := commitGroup(t, g, staged{staff, tc.staffData}, staged{store, tc.storeData})
			checkResult(t, res[0], tc.staff[0], tc.staff[1], tc.staff[2], 0)
			checkResult(t, res[1], tc.store[0], tc.store[1], tc.store[2], 0)
			checkRows(t, s, storeRows, tc.storeWant...)
			checkRows(t, s, staffRows, tc.staffWant...)
			for _, im := range []*importer.Importer{store, staff} {
				if err := im.Finish(ctx); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The rows of one table that arrive in several batches, with a key repeated across
// them, are one import: the last row of a key wins, as within a batch.
func TestGroupBatchesAndDuplicateKeys(t *testing.T) {
	s := newSite(t)
	s.exec(t, storeStaff)
	g, store, staff := storeStaffGroup(t, s, importer.Overwrite)
	res := commitGroup(t, g, staged{store, "2\t3\tfirst two\n"}, staged{staff, "3\t2\tthird\n"},
		staged{store, "2\t3\tstore two\n3\t1\tstore three\n"})
	checkResult(t, res[0], 2, 0, 1, 0)
	checkResult(t, res[1], 1, 0, 0, 0)
	checkRows(t, s, storeRows, "1:1:old store", "2:3:store two", "3:1:store three")
}

// When the one statement is refused, each table's rows are replayed one by one: rows
// that stand on their own land, the bad one is reported with its key, and the rows of
// a cycle that needed each other are reported too, none half-written.
func TestGroupRefusedFallsBackRowByRow(t *testing.T) {
	s := newSite(t)
	s.exec(t, storeStaff)
	g, store, staff := storeStaffGroup(t, s, importer.Skip)
	// staff 4 points at a store nowhere; staff 2 stands on its own; store 2 ↔ staff 3.
	res := commitGroup(t, g, staged{staff, "2\t1\tsecond\n3\t2\tthird\n4\t99\tnowhere\n"}, staged{store, "2\t3\tstore two\n"})
	checkResult(t, res[0], 1, 0, 0, 2)
	checkResult(t, res[1], 0, 0, 0, 1)
	checkRows(t, s, staffRows, "1:1:old staff", "2:1:second")
	checkRows(t, s, storeRows, "1:1:old store")
}
