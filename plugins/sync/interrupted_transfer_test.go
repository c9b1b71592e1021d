package main_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

func TestSenderKilledMidTransferLeavesWholeBatchesAndRerunCompletes(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.connect(t)
	st, _ := a.kit.Module("sync")
	killed := false
	res, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
		if p.Batches == 3 && !killed {
			killed = true
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
		}
	}})
	c.Close()
	if err == nil {
		t.Fatal("transfer finished although the sender was killed")
	}
	if !errors.Is(err, client.ErrClosed) {
		t.Fatalf("error %v, want it to say the connection closed", err)
	}
	var n int64
	_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM big`).Scan(&n)
	if n != res.Rows || n%1000 != 0 || n == 0 || n == 60000 {
		t.Fatalf("receiver has %d rows, result says %d: want whole batches only", n, res.Rows)
	}
	// The host restarts the plugin; a new code and a rerun with skip complete the table.
	deadline := time.Now().Add(20 * time.Second)
	for {
		now, _ := a.kit.Module("sync")
		if now.State == host.StateRunning && now.PID != st.PID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync plugin not restarted: %+v", now)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2 := a.connect(t)
	defer c2.Close()
	res2, err := c2.Transfer(ctx, b.pool, "big", client.TransferOptions{Strategy: importer.Skip, BatchSize: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if int64(res2.Created) != 60000-n || int64(res2.Skipped) != n {
		t.Fatalf("rerun: %+v", res2)
	}
	sameTable(t, a, b, "big", "id", "after the rerun")
}

func TestCutConnectionResumesFromLastAcknowledgedKey(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.connect(t)
	res, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 2000, Progress: func(p client.Progress) {
		if p.Batches == 5 {
			c.Close() // the network goes away
		}
	}})
	if err == nil || len(res.LastKey) != 1 {
		t.Fatalf("cut transfer: %+v, %v", res, err)
	}
	c2 := a.connect(t)
	defer c2.Close()
	res2, err := c2.Transfer(ctx, b.pool, "big", client.TransferOptions{AfterKey: res.LastKey, BatchSize: 2000})
	if err != nil {
		t.Fatal(err)
	}
	// Resumed after the key: nothing already applied was sent again.
	if res2.Skipped != 0 || int64(res2.Created) != 60000-res.Rows {
		t.Fatalf("resume: %+v after %d rows", res2, res.Rows)
	}
	sameTable(t, a, b, "big", "id", "after resuming")
}

func TestSenderHostGoneMidTransferThenANewHostFinishesIt(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.connect(t)
	stopped := false
	res, err := c.Transfer(ctx, b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
		if p.Batches == 4 && !stopped {
			stopped = true
			// The whole sending host goes away: its server and its plugins.
			go func() { _ = a.app.ShutdownWithTimeout(0); _ = a.kit.Close() }()
		}
	}})
	c.Close()
	if err == nil {
		t.Fatal("transfer finished although the sender host went away")
	}
	var n int64
	_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM big`).Scan(&n)
	if n != res.Rows || n%1000 != 0 || n == 60000 {
		t.Fatalf("receiver has %d rows, result says %d: want whole batches only", n, res.Rows)
	}
	// The sender comes back (a new host on the same database) and a rerun completes.
	a2 := startSite(t, siteOptions{db: a.db})
	c2 := a2.connect(t)
	defer c2.Close()
	if _, err := c2.Transfer(ctx, b.pool, "big", client.TransferOptions{Strategy: importer.Skip}); err != nil {
		t.Fatal(err)
	}
	sameTable(t, a2, b, "big", "id", "after the rerun")
}
