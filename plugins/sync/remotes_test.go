package main_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
)

// A remote's schedule is edited through the update_remote operation.
func TestUpdateRemoteOperation(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "update-remote-test-key")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	c := a.newConnection(t, connection.Limits{}, true)
	var r struct {
		ID       string   `json:"id"`
		Tables   []string `json:"tables"`
		Strategy string   `json:"strategy"`
		Interval int      `json:"interval_seconds"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "prod", "url": a.url, "token": c.Token}, &r); err != nil {
		t.Fatal(err)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": r.ID, "tables": []string{"products"}, "strategy": "overwrite", "interval_seconds": 3600}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Tables) != 1 || r.Tables[0] != "products" || r.Strategy != "overwrite" || r.Interval != 3600 {
		t.Fatalf("after update: %+v", r)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": r.ID, "strategy": "shred"}, nil); err == nil || !strings.Contains(err.Error(), "invalid_input") {
		t.Fatalf("bad strategy: %v", err)
	}
	if err := b.call(t, "update_remote", map[string]any{"id": "00000000-0000-0000-0000-000000000000"}, nil); err == nil || !strings.Contains(err.Error(), "not_found") {
		t.Fatalf("unknown remote: %v", err)
	}
}

func TestRegeneratedTokenIsPassedToTheOtherSide(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "key-for-the-regeneration-test-123")
	a := seeded(t, siteOptions{})
	b := startSite(t, siteOptions{})
	var c conn
	if err := a.call(t, "create_connection", map[string]any{"name": "B", "site_url": b.url, "limits": connection.Limits{AllowedTables: []string{"products"}}}, &c); err != nil {
		t.Fatal(err)
	}
	a.setStatus(t, c.ID, "active")
	var r struct {
		ID string `json:"id"`
	}
	if err := b.call(t, "add_remote", map[string]any{"name": "A", "url": a.url, "token": c.Token, "tables": []string{"products"}}, &r); err != nil {
		t.Fatal(err)
	}
	var regen struct {
		Token     string `json:"token"`
		Told      bool   `json:"told"`
		TellError string `json:"tell_error"`
	}
	if err := a.call(t, "regenerate_token", map[string]string{"id": c.ID}, &regen); err != nil || !regen.Told {
		t.Fatalf("regenerate: %v %+v", err, regen)
	}
	// B pulls with the token it was told; the old one is dead.
	var res map[string]client.Result
	if err := b.call(t, "run_remote", map[string]string{"id": r.ID}, &res); err != nil || res["products"].Created != 300 {
		t.Fatalf("pull with the new token: %v %+v", err, res["products"])
	}
	if _, err := dialToken(t, a, c.Token); remoteCode(err) != "invalid_token" {
		t.Fatalf("old token: %v", err)
	}
}

// The public token-change endpoint is rate-limited per client address.
func TestRemoteTokenEndpointIsRateLimited(t *testing.T) {
	b := startSite(t, siteOptions{})
	codes := map[int]int{}
	for range 30 {
		resp, err := http.Post(b.url+"/fiberkit/sync/api/remote-token", "application/json",
			strings.NewReader(`{"old_hash":"`+strings.Repeat("ab", 32)+`","new_token":"fkc_x"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] == 0 || codes[http.StatusNotFound] == 0 {
		t.Fatalf("30 rapid requests: %v (want some 404 unknown token, then 429)", codes)
	}
}
