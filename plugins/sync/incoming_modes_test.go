package main_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func TestIncomingModesAndCodes(t *testing.T) {
	ctx := context.Background()
	t.Run("deny_all", func(t *testing.T) {
		a := startSite(t, siteOptions{mode: "deny_all"})
		_, err := client.Connect(ctx, a.url, a.newCode(t).Code, client.Options{})
		if !errors.Is(err, client.ErrDenied) {
			t.Fatalf("deny_all: %v", err)
		}
	})
	t.Run("require_password", func(t *testing.T) {
		a := startSite(t, siteOptions{mode: "require_password", password: "open-sesame"})
		code := a.newCode(t).Code
		if _, err := client.Connect(ctx, a.url, code, client.Options{}); !errors.Is(err, client.ErrPasswordRequired) {
			t.Fatalf("no password: %v", err)
		}
		if _, err := client.Connect(ctx, a.url, code, client.Options{Password: "wrong"}); !errors.Is(err, client.ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
		c, err := client.Connect(ctx, a.url, code, client.Options{Password: "open-sesame"})
		if err != nil {
			t.Fatalf("right password: %v", err)
		}
		c.Close()
	})
	t.Run("codes", func(t *testing.T) {
		a := startSite(t, siteOptions{})
		code := a.newCode(t).Code
		validate := func(c string) (v struct {
			Valid bool   `json:"valid"`
			Error string `json:"error"`
		}) {
			if err := a.call(t, "validate_code", map[string]string{"code": c}, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		if v := validate(code); !v.Valid {
			t.Fatalf("fresh code not valid: %+v", v)
		}
		if v := validate("NOPE2345"); v.Valid || v.Error != "invalid_code" {
			t.Fatalf("unknown code: %+v", v)
		}
		c, err := client.Connect(ctx, a.url, code, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if v := validate(code); v.Valid || v.Error != "already_used" {
			t.Fatalf("used code: %+v", v)
		}
		// While its receiver is connected, a used code is refused (after a drop, the
		// same receiver may rejoin within the grace: see TestReceiverRejoins…).
		if _, err := client.Connect(ctx, a.url, code, client.Options{}); !errors.Is(err, client.ErrAlreadyUsed) {
			t.Fatalf("reused code: %v", err)
		}
		c.Close()
		// Owner gone → code invalid.
		code2 := a.newCode(t).Code
		if err := a.call(t, "release_sessions", map[string]any{}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Connect(ctx, a.url, code2, client.Options{}); !errors.Is(err, client.ErrInvalidCode) {
			t.Fatalf("code of a released session: %v", err)
		}
		// Wrong codes: invalid, then locked out (this address only).
		good := a.newCode(t).Code
		for i := 0; i < 4; i++ { // 1 failure above (a reused code is not a guess) + 4 = 5
			if _, err := client.Connect(ctx, a.url, "WRONG234", client.Options{}); !errors.Is(err, client.ErrInvalidCode) {
				t.Fatalf("wrong code %d: %v", i, err)
			}
		}
		if _, err := client.Connect(ctx, a.url, good, client.Options{}); !errors.Is(err, client.ErrRateLimited) {
			t.Fatalf("after 5 failures even a good code is refused: %v", err)
		}
	})
}

// Codes are accepted as a person types them: lower case, with spaces or a line
// break around.
func TestCodeTypedLooselyConnects(t *testing.T) {
	a := seeded(t, siteOptions{})
	for _, typed := range []func(code string) string{
		func(code string) string { return "  " + strings.ToLower(code) + " " },
		func(code string) string { return "  " + strings.ToLower(code) + "\n" },
	} {
		code := typed(a.newCode(t).Code)
		c, err := client.Connect(context.Background(), a.url, code, client.Options{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("connect with %q: %v", code, err)
		}
		if _, err := c.ListTables(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// A refused attempt still says who tried: the receiver info the client sends at
// the upgrade is recorded with the attempt.
func TestRefusedAttemptRecordsReceiverInfo(t *testing.T) {
	a := startSite(t, siteOptions{})
	_, err := client.Connect(context.Background(), a.url, "ABCDEFGH", client.Options{
		Timeout: 10 * time.Second, ReceiverInfo: map[string]any{"who": "nightly job"},
	})
	if !errors.Is(err, client.ErrInvalidCode) {
		t.Fatalf("wrong code: %v", err)
	}
	var who, outcome string
	if err := a.pool.QueryRow(context.Background(), `SELECT coalesce(receiver_info->>'who', ''), outcome FROM fiberkit_sync_attempts ORDER BY id DESC LIMIT 1`).Scan(&who, &outcome); err != nil {
		t.Fatal(err)
	}
	if who != "nightly job" || outcome == "" {
		t.Fatalf("attempt recorded as who=%q outcome=%q", who, outcome)
	}
}

// The password may come in the query string (?password=, for PhoenixKit-style
// clients) as well as the X-Sync-Password header; either way it is accepted and
// never written to a log.
func TestPasswordInTheQueryIsAcceptedAndNeverLogged(t *testing.T) {
	const secret = "Query-Pw-7f3a91"
	a := startSite(t, siteOptions{mode: "require_password", password: secret})
	base := "ws" + strings.TrimPrefix(a.url, "http") + "/fiberkit/sync/websocket?vsn=2.0.0&code="
	conn, resp, err := websocket.DefaultDialer.Dial(base+a.newCode(t).Code+"&password="+secret, nil)
	if err != nil {
		t.Fatalf("right password in the query: %v (%v)", err, resp)
	}
	conn.Close()
	if _, resp, err := websocket.DefaultDialer.Dial(base+a.newCode(t).Code+"&password=wrong-"+secret, nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong password in the query: %v (%v)", err, resp)
	}
	time.Sleep(300 * time.Millisecond) // let the plugin's log lines reach the host
	if strings.Contains(a.logs.String(), secret) {
		t.Fatal("the password from the query string was logged")
	}
}
