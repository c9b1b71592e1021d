package main_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// TestReceiverRejoinsWithoutANewApproval: issue 10 §3 — a receiver whose
// connection dropped comes back with the code it used, within the grace, and is
// let in without asking the admin again.
func TestReceiverRejoinsWithoutANewApproval(t *testing.T) {
	a := seeded(t, siteOptions{mode: "require_approval"})
	ctx := context.Background()
	code := a.newCode(t).Code
	waiting := make(chan struct{})
	done := make(chan error, 1)
	var c *client.Client
	go func() {
		var err error
		c, err = client.Connect(ctx, a.url, code, client.Options{Timeout: 30 * time.Second, OnAwaitingApproval: func() { close(waiting) }})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("connected without approval: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("never told to wait")
	}
	var pending []struct {
		ID string `json:"id"`
	}
	for deadline := time.Now().Add(5 * time.Second); len(pending) == 0 && time.Now().Before(deadline); {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("pending %+v", pending)
	}
	if err := a.call(t, "approve", map[string]string{"id": pending[0].ID}, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := c.GetCount(ctx, "customers"); err != nil || n != 2000 {
		t.Fatalf("count %d %v", n, err)
	}
	c.Close() // the connection drops

	// The same receiver comes back (as a client's reconnect would, retrying while
	// the sender notes it left): let in at once, nobody asked.
	var again *client.Client
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		again, err = client.Connect(ctx, a.url, code, client.Options{Timeout: 5 * time.Second,
			OnAwaitingApproval: func() { t.Error("asked to wait for approval again") }})
		if err == nil || !errors.Is(err, client.ErrAlreadyUsed) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	defer again.Close()
	if n, err := again.GetCount(ctx, "orders"); err != nil || n == 0 {
		t.Fatalf("count after rejoining %d %v", n, err)
	}
	if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil || len(pending) != 0 {
		t.Fatalf("pending after rejoining %+v %v", pending, err)
	}
	var outcomes int
	_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM fiberkit_sync_attempts WHERE outcome = 'rejoined'`).Scan(&outcomes)
	if outcomes != 1 {
		t.Fatalf("%d attempts recorded as rejoined", outcomes)
	}
}
