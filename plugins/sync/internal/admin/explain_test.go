package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/urlguard"
)

// The reasons a sender closes with (4004, 4005) get sentences of their own.
func TestExplainCloseReasons(t *testing.T) {
	for reason, want := range map[string]string{
		"session ended by the sending site":                          "session_ended",
		"connection revoked":                                         "connection_revoked",
		"the connection is revoked":                                  "connection_revoked",
		"the connection was deleted":                                 "connection_revoked",
		"the connection is suspended":                                "connection_suspended",
		"the connection's token was regenerated":                     "token_regenerated",
		"expired at 2024-01-01T00:00:00Z":                            "connection_expired",
		"all 3 downloads used":                                       "connection_limit",
		"more than 5 requests this minute":                           "connection_limit",
		"requests are accepted only in the UTC hours [1 2] (now 05)": "connection_limit",
	} {
		code, msg := explain(&client.RemoteError{Code: reason}, false)
		if code != want || strings.Contains(msg, "refused: ") {
			t.Errorf("%q: %s %q, want %s", reason, code, msg, want)
		}
	}
	if code, _ := explain(&client.RemoteError{Code: "something_new"}, false); code != "something_new" {
		t.Errorf("unknown reason: %s", code)
	}
}

// Failures are told apart by their types, however they were wrapped.
func TestExplainTypedErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("connect: %w", &client.HTTPError{URL: "http://x", Status: http.StatusNotFound, Reason: "Not Found"}), "sender_disabled"},
		{&client.HTTPError{URL: "http://x", Status: http.StatusBadGateway}, "failed"},
		{fmt.Errorf("dial: %w", urlguard.ErrSelfURL), "refused_url"},
		{fmt.Errorf("%w 10.0.0.1 refused", urlguard.ErrInternalURL), "refused_url"},
		{fmt.Errorf("read: %w", client.ErrClosed), "sender_vanished"},
		{context.Canceled, "cancelled"},
		{fmt.Errorf("waiting: %w", client.ErrDenied), "approval_denied"},
	} {
		if code, _ := explain(c.err, true); code != c.want {
			t.Errorf("explain(%v) = %s, want %s", c.err, code, c.want)
		}
	}
}
