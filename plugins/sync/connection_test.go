package main_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

type conn struct {
	ID     string `json:"id"`
	Token  string `json:"token"`
	Status string `json:"status"`
}

func (s *site) newConnection(t *testing.T, l connection.Limits, approve bool) conn {
	t.Helper()
	var c conn
	if err := s.call(t, "create_connection", map[string]any{"name": "dev laptop", "site_url": "http://dev.example", "limits": l}, &c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Token, "fkc_") || c.Status != "pending" {
		t.Fatalf("new connection %+v", c)
	}
	if approve {
		s.setStatus(t, c.ID, "active")
	}
	return c
}

func (s *site) setStatus(t *testing.T, id, status string) {
	t.Helper()
	if err := s.call(t, "set_connection_status", map[string]string{"id": id, "status": status}, nil); err != nil {
		t.Fatal(err)
	}
}

func remoteCode(err error) string {
	var re *client.RemoteError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func dialToken(t *testing.T, s *site, token string) (*client.Client, error) {
	t.Helper()
	c, err := client.Connect(context.Background(), s.url, "", client.Options{Token: token})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func TestConnectionLifecycleAndTokenAtRest(t *testing.T) {
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	ctx := context.Background()
	c := a.newConnection(t, connection.Limits{}, false)
	// Pending: refused until approved.
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("pending connection: %v", err)
	}
	a.setStatus(t, c.ID, "active")
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.TransferAll(ctx, b.pool, client.TransferAllOptions{Strategy: importer.Skip, TransferOptions: client.TransferOptions{CreateMissing: true}})
	if err != nil || res["order_items"].Created != 15000 {
		t.Fatalf("transfer over a connection: %v %+v", err, res["order_items"])
	}
	sameData(t, a, b)
	// The token is nowhere in plain text.
	var hits int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT t::text AS row FROM fiberkit_sync_connections t UNION ALL SELECT t::text FROM fiberkit_sync_transfers t
		UNION ALL SELECT t::text FROM fiberkit_audit t UNION ALL SELECT t::text FROM fiberkit_sync_attempts t) r WHERE row LIKE '%' || $1 || '%'`,
		strings.TrimPrefix(c.Token, "fkc_")).Scan(&hits); err != nil || hits != 0 {
		t.Fatalf("token found in %d rows (%v)", hits, err)
	}
	if strings.Contains(a.logs.String(), c.Token) || strings.Contains(b.logs.String(), c.Token) {
		t.Fatal("the token appears in a log")
	}
	// Suspend, reactivate, regenerate, revoke.
	a.setStatus(t, c.ID, "suspended")
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("suspended: %v", err)
	}
	a.setStatus(t, c.ID, "active")
	var regen conn
	if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, &regen); err != nil || regen.Token == c.Token {
		t.Fatalf("regenerate: %v", err)
	}
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "invalid_token" {
		t.Fatalf("old token after regeneration: %v", err)
	}
	if _, err := dialToken(t, a, regen.Token); err != nil {
		t.Fatalf("new token: %v", err)
	}
	a.setStatus(t, c.ID, "revoked")
	if _, err := dialToken(t, a, regen.Token); remoteCode(err) != "connection_inactive" {
		t.Fatalf("revoked: %v", err)
	}
	if err := a.call(t, "set_connection_status", map[string]string{"id": c.ID, "status": "active"}, nil); err == nil {
		t.Fatal("a revoked connection was reactivated")
	}
}

func TestRevokingCutsAnOpenTransfer(t *testing.T) {
	a := bigSender(t)
	b := startSite(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{}, true)
	cl, err := dialToken(t, a, c.Token)
	if err != nil {
		t.Fatal(err)
	}
	revoked := false
	res, err := cl.Transfer(context.Background(), b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
		if p.Batches == 3 && !revoked {
			revoked = true
			a.setStatus(t, c.ID, "revoked")
		}
	}})
	if err == nil || res.Rows >= 60000 {
		t.Fatalf("transfer went on after revocation: %+v", res)
	}
	if code := remoteCode(err); code != "connection_inactive" && !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revocation error: %v", err)
	}
}

// Every way a connection stops standing ends a transfer already running on it.
func TestOpenTransferEndsWhenTheConnectionStopsStanding(t *testing.T) {
	a := bigSender(t)
	past := time.Now().Add(-time.Minute)
	otherHour := (time.Now().UTC().Hour() + 12) % 24
	cases := map[string]func(t *testing.T, c conn){
		"suspended": func(t *testing.T, c conn) { a.setStatus(t, c.ID, "suspended") },
		"expired": func(t *testing.T, c conn) {
			if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{ExpiresAt: &past}}, nil); err != nil {
				t.Fatal(err)
			}
		},
		"outside its hours": func(t *testing.T, c conn) {
			if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{AllowedHours: []int{otherHour}}}, nil); err != nil {
				t.Fatal(err)
			}
		},
		"token regenerated": func(t *testing.T, c conn) {
			if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, nil); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, stop := range cases {
		t.Run(name, func(t *testing.T) {
			b := startSite(t, siteOptions{})
			c := a.newConnection(t, connection.Limits{}, true)
			cl, err := dialToken(t, a, c.Token)
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			res, err := cl.Transfer(context.Background(), b.pool, "big", client.TransferOptions{CreateMissing: true, BatchSize: 1000, Progress: func(p client.Progress) {
				if p.Batches == 3 && !stopped {
					stopped = true
					stop(t, c)
				}
			}})
			if err == nil || res.Rows >= 60000 {
				t.Fatalf("transfer went on: %+v %v", res, err)
			}
			if code := remoteCode(err); code != "connection_inactive" && code != "connection_expired" && code != "outside_allowed_hours" {
				t.Fatalf("unclear error: %v", err)
			}
		})
	}
}

// An expired connection is reactivated only once its expiry is moved on.
func TestExpiredConnectionReactivatesOnlyWithANewExpiry(t *testing.T) {
	a := seeded(t, siteOptions{})
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	c := a.newConnection(t, connection.Limits{ExpiresAt: &past}, true)
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "connection_expired" {
		t.Fatalf("expired: %v", err)
	}
	if err := a.call(t, "set_connection_status", map[string]string{"id": c.ID, "status": "active"}, nil); err == nil || !strings.Contains(err.Error(), "still_expired") {
		t.Fatalf("reactivated while still expired: %v", err)
	}
	if err := a.call(t, "set_connection_limits", map[string]any{"id": c.ID, "limits": connection.Limits{ExpiresAt: &future}}, nil); err != nil {
		t.Fatal(err)
	}
	a.setStatus(t, c.ID, "active")
	if _, err := dialToken(t, a, c.Token); err != nil {
		t.Fatalf("after a new expiry: %v", err)
	}
}
