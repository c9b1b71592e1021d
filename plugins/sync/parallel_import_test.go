package main_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// Two workers import a table's batches at once, and commit them in order: when one
// of the receiving database's connections is killed mid-transfer, the table holds
// exactly the rows up to the result's last key — no batch after a missing one —
// and a resume from that key completes the table.
func TestParallelImportKeepsARunOfBatches(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.connect(t)
	defer c.Close()
	type outcome struct {
		res client.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 500, Workers: 2})
		done <- outcome{res, err}
	}()
	// Kill a connection that is writing rows, once some batches are in.
	deadline := time.Now().Add(30 * time.Second)
	for killed := false; !killed; {
		if time.Now().After(deadline) {
			t.Fatal("no import to interrupt")
		}
		var n int64
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM big`).Scan(&n)
		if n > 5000 {
			_ = b.pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'COPY%'`).Scan(&killed)
		}
		time.Sleep(5 * time.Millisecond)
	}
	o := <-done
	if o.err == nil {
		t.Fatalf("the transfer survived the kill of a connection writing its rows: %+v", o.res)
	}
	var n, maxID int64
	if err := b.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(id), 0) FROM big`).Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	last, _ := strconv.ParseInt(o.res.LastKey[0], 10, 64)
	if n != maxID || maxID != last || o.res.Rows != n || o.res.Created != int(n) {
		t.Fatalf("after the kill: %d rows up to id %d; result says %d rows up to %s (%v)", n, maxID, o.res.Rows, o.res.LastKey, o.err)
	}
	if errors.Is(o.err, context.Canceled) {
		t.Fatalf("unexpected error %v", o.err)
	}
	// Resume from the key: the table is whole.
	c2 := a.connect(t)
	defer c2.Close()
	res, err := c2.Transfer(ctx, b.pool, "big", client.TransferOptions{AfterKey: o.res.LastKey, Workers: 2})
	if err != nil || res.Created != int(60000-n) {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	sameTable(t, a, b, "big", "id", "after the resume")
}

// Overwrite by two workers into a table with a unique column whose values move
// between rows of neighbouring batches: a batch may wait on the next one's
// uncommitted rows while that one waits for it to commit. The transfer neither
// hangs nor fails: the outcome is the one a single worker gives (the row whose
// value is still held by a committed row is refused, the rest land).
func TestParallelOverwriteWithMovingUniqueValues(t *testing.T) {
	a := startSite(t, siteOptions{})
	ctx := context.Background()
	schema := `CREATE TABLE u (id int PRIMARY KEY, email text NOT NULL UNIQUE, v text);`
	a.exec(t, schema+`INSERT INTO u SELECT g, 'e' || g, 'new' FROM generate_series(1, 4000) g`)
	// Here each row of an odd hundred holds the email that the sender gives to a
	// row of the hundred before: the batches of 100 take them from each other.
	stale := schema + `INSERT INTO u SELECT g, CASE WHEN (g - 1) / 100 % 2 = 1 THEN 'e' || (g - 100) ELSE 'x' || g END, 'old' FROM generate_series(1, 4000) g`
	pull := func(workers int) (client.Result, string) {
		t.Helper()
		b := startSite(t, siteOptions{})
		b.exec(t, stale)
		c := a.connect(t)
		defer c.Close()
		tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		res, err := c.Transfer(tctx, b.pool, "u", client.TransferOptions{Strategy: "overwrite", BatchSize: 100, Workers: workers})
		if err != nil {
			t.Fatalf("%d workers: %v", workers, err)
		}
		var sum string
		if err := b.pool.QueryRow(ctx, `SELECT md5(string_agg(id || ':' || email || ':' || v, ',' ORDER BY id)) FROM u`).Scan(&sum); err != nil {
			t.Fatal(err)
		}
		return res, sum
	}
	one, sumOne := pull(1)
	two, sumTwo := pull(2)
	if one.Failed == 0 || one.Failed != two.Failed || one.Updated != two.Updated || sumOne != sumTwo {
		t.Fatalf("one worker: %d updated, %d refused, sum %s; two: %d updated, %d refused, sum %s",
			one.Updated, one.Failed, sumOne, two.Updated, two.Failed, sumTwo)
	}
}
