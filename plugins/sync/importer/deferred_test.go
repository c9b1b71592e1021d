package importer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// ImportCopyDeferred keeps batches in one transaction until CommitBytes, says
// which calls committed, and a failure rolls back exactly the batches not yet
// committed: what it reported committed stays.
func TestImportCopyDeferredCommitsInGroups(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	s.exec(t, `CREATE TABLE d (id int PRIMARY KEY, v text)`)
	im, err := importer.New(ctx, s.pool, "d", importer.Options{Strategy: importer.Skip, Columns: []string{"id", "v"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(im.Rollback) // a failed test must not leave a connection in a transaction
	// 100 batches of 100 rows of about 8 KiB each: ~800 KiB a batch, 80 MiB in all,
	// so at least one commit for CommitBytes, and batches left open in between
	// (unless every batch took CommitInterval).
	pad := strings.Repeat("x", 8<<10)
	batch := func(n int) []byte {
		var b bytes.Buffer
		for i := n * 100; i < (n+1)*100; i++ {
			fmt.Fprintf(&b, "%d\t%s\n", i, pad)
		}
		return b.Bytes()
	}
	count := func() (n int) {
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM d").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	committedRows, commits, open := 0, 0, 0
	for n := 0; n < 100; n++ {
		r, committed, err := im.ImportCopyDeferred(ctx, batch(n), false)
		if err != nil || r.Created != 100 {
			t.Fatalf("batch %d: %+v, %v", n, r, err)
		}
		if committed {
			committedRows = (n + 1) * 100
			commits++
		} else {
			open++
		}
		// Other connections see exactly what was reported committed.
		if got := count(); got != committedRows {
			t.Fatalf("after batch %d: %d rows visible, %d reported committed", n, got, committedRows)
		}
	}
	if commits == 0 || open == 0 {
		t.Fatalf("%d commits, %d batches left open, for 100 batches of 800 KiB (CommitBytes %d)", commits, open, importer.CommitBytes)
	}
	// A malformed batch (a line of one field for two columns) fails, and takes the
	// batches not committed with it.
	pending := 10000 - committedRows
	if _, _, err := im.ImportCopyDeferred(ctx, []byte("99999\n"), false); !errors.Is(err, importer.ErrMalformedBatch) {
		t.Fatal("a malformed batch was accepted")
	}
	if got := count(); got != committedRows {
		t.Fatalf("after the failure: %d rows, want the %d committed (the %d pending rolled back)", got, committedRows, pending)
	}
	// Going on after the failure: batches land again, and Finish commits them.
	if _, _, err := im.ImportCopyDeferred(ctx, batch(300), false); err != nil {
		t.Fatal(err)
	}
	if err := im.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != committedRows+100 {
		t.Fatalf("after Finish: %d rows, want %d", got, committedRows+100)
	}
}

// A batch COPY refuses in the straight path (a key that exists: the table was not
// empty after all) is imported the general way, in the same transaction, and the
// batches before it are kept.
func TestImportCopyDeferredFallsBackOnConflict(t *testing.T) {
	ctx := context.Background()
	s := newSite(t)
	s.exec(t, `CREATE TABLE f (id int PRIMARY KEY, v text)`)
	im, err := importer.New(ctx, s.pool, "f", importer.Options{Strategy: importer.Overwrite, Columns: []string{"id", "v"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(im.Rollback)
	if _, _, err := im.ImportCopyDeferred(ctx, []byte("1\ta\n2\tb\n"), false); err != nil {
		t.Fatal(err)
	}
	// Another writer puts key 3 in meanwhile.
	s.exec(t, `INSERT INTO f VALUES (3, 'theirs')`)
	r, _, err := im.ImportCopyDeferred(ctx, []byte("3\tours\n4\td\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Created != 1 || r.Updated != 1 {
		t.Errorf("fallback batch: %+v, want 1 created, 1 updated", r)
	}
	if err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := rows(t, s, `SELECT id || '=' || v FROM f ORDER BY id`)
	if strings.Join(got, ",") != "1=a,2=b,3=ours,4=d" {
		t.Errorf("rows %v", got)
	}
	if _, _, err := im.ImportCopyDeferred(ctx, []byte("5\n"), false); !errors.Is(err, importer.ErrMalformedBatch) {
		t.Errorf("a line of the wrong width: %v", err)
	}
}
