package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A token notice is never re-sent to where a redirect points: the new token goes to
// the site's own URL only.
func TestNotifyTokenChangeRefusesRedirects(t *testing.T) {
	var leaked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer elsewhere.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/fiberkit/sync/api/remote-token", code)
		}))
		err := NotifyTokenChange(context.Background(), site.URL, TokenChange{OldHash: strings.Repeat("ab", 32), NewToken: "fkc_new"}, nil)
		site.Close()
		if err == nil || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("HTTP %d: err %v, want a refused redirect", code, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("the redirect target got %d notices", n)
	}
	// A plain 204 still succeeds.
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fiberkit/sync/api/remote-token" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ok.Close()
	if err := NotifyTokenChange(context.Background(), ok.URL, TokenChange{OldHash: strings.Repeat("ab", 32), NewToken: "fkc_new"}, nil); err != nil {
		t.Fatal(err)
	}
}
