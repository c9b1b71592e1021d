package main_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func TestApprovalOnOneReplicaReleasesReceiverOnAnother(t *testing.T) {
	ctx := context.Background()
	a1 := startSite(t, siteOptions{mode: "require_approval"})
	a2 := startSite(t, siteOptions{mode: "require_approval", db: a1.db}) // a replica: same database
	for _, decision := range []string{"approve", "deny"} {
		t.Run(decision, func(t *testing.T) {
			code := a1.newCode(t).Code // made on replica 1
			waiting := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				c, err := client.Connect(ctx, a2.url, code, client.Options{ // connected through replica 2
					Timeout: 30 * time.Second, ReceiverInfo: map[string]any{"who": "dev laptop"},
					OnAwaitingApproval: func() { close(waiting) },
				})
				if err == nil {
					_, err = c.ListTables(ctx)
					c.Close()
				}
				done <- err
			}()
			select {
			case <-waiting:
			case err := <-done:
				t.Fatalf("connect finished before approval: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("receiver never told to wait")
			}
			var pending []struct {
				ID           string         `json:"id"`
				ReceiverInfo map[string]any `json:"receiver_info"`
				Address      string         `json:"address"`
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(pending) == 0 && time.Now().Before(deadline) {
				if err := a1.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
					t.Fatal(err)
				}
			}
			if len(pending) != 1 || pending[0].ReceiverInfo["who"] != "dev laptop" || pending[0].Address == "" {
				t.Fatalf("pending approvals on replica 1: %+v", pending)
			}
			select {
			case err := <-done:
				t.Fatalf("receiver released before a decision: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := a1.call(t, decision, map[string]string{"id": pending[0].ID}, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if decision == "approve" && err != nil {
					t.Fatalf("approved receiver: %v", err)
				}
				if decision == "deny" && !errors.Is(err, client.ErrDenied) {
					t.Fatalf("denied receiver: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the decision on replica 1 did not release the receiver on replica 2")
			}
			// The history shows the request and its outcome.
			want := map[string]string{"approve": "approved", "deny": "denied"}[decision]
			var n int
			_ = a1.pool.QueryRow(ctx, `SELECT count(*) FROM fiberkit_sync_transfers WHERE table_name = '(connection request)' AND status = $1`, want).Scan(&n)
			if n != 1 {
				t.Fatalf("history rows with status %s: %d", want, n)
			}
		})
	}
}

// A receiver that leaves while waiting for approval disappears from the pending
// list, and the history says it was abandoned.
func TestAbandonedApprovalRequestIsWithdrawn(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	code := a.newCode(t).Code
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := client.Connect(ctx, a.url, code, client.Options{
			Timeout: 30 * time.Second, OnAwaitingApproval: func() { close(waiting) },
		})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("connect finished before approval: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("receiver never told to wait")
	}
	var pending []struct {
		ID string `json:"id"`
	}
	if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil || len(pending) != 1 {
		t.Fatalf("pending before leaving: %+v %v", pending, err)
	}
	cancel()
	<-done
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
		var status string
		_ = a.pool.QueryRow(context.Background(), `SELECT status FROM fiberkit_sync_transfers WHERE table_name = '(connection request)'`).Scan(&status)
		if len(pending) == 0 && status == "abandoned" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the receiver left: pending %+v, history status %q", pending, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Receivers waiting for approval do not hold the sender's database pool: with more
// of them than the pool has connections, the Send page's list and the decisions
// still work and release every one.
func TestManyWaitingApprovalsDoNotStarveThePool(t *testing.T) {
	a := startSite(t, siteOptions{mode: "require_approval"})
	const n = 6 // the plugin's pool holds max(4, CPUs) connections
	ctx := context.Background()
	done := make(chan error, n)
	waiting := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		code := a.newCode(t).Code
		go func() {
			c, err := client.Connect(ctx, a.url, code, client.Options{
				Timeout: 60 * time.Second, OnAwaitingApproval: func() { waiting <- struct{}{} },
			})
			if err == nil {
				c.Close()
			}
			done <- err
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-waiting:
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d receivers were told to wait", i)
		}
	}
	var pending []struct {
		ID string `json:"id"`
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(pending) < n && cctx.Err() == nil {
		if err := a.call(t, "pending_approvals", struct{}{}, &pending); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != n {
		t.Fatalf("pending approvals: %d of %d", len(pending), n)
	}
	for _, p := range pending {
		if err := a.call(t, "approve", map[string]string{"id": p.ID}, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("approved receiver: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d approved receivers still waiting", n-i, n)
		}
	}
}
