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
