// Package tokenchange carries a permanent connection's new token between the two
// sites: Regenerate makes one on the sending site and tells the receiving site;
// Routes serves the public endpoint where a sending site tells this one, so the
// remote's scheduled pulls go on.
package tokenchange

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/ratelimit"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Regenerate makes a new token for connection id and tells the other site (its
// remote is found by the old token's hash). Failing to tell is no error: the
// answer says so in TellError, for the admin to pass the token on by hand.
func Regenerate(ctx context.Context, st *site.Site, id string) (syncapi.ConnectionWithToken, error) {
	token, oldHash, err := st.Conns.RegenerateToken(ctx, id)
	if err != nil {
		return syncapi.ConnectionWithToken{}, fmt.Errorf("regenerate token: %w", err)
	}
	c, err := st.Conns.Get(ctx, id)
	if err != nil {
		return syncapi.ConnectionWithToken{}, fmt.Errorf("regenerate token: %w", err)
	}
	out := syncapi.ConnectionWithToken{Connection: c, Token: token}
	if c.SiteURL == "" {
		out.TellError = "the connection has no site URL to tell"
		return out, nil
	}
	opts, err := st.Outgoing(ctx, c.SiteURL, client.Options{})
	if err == nil {
		err = client.NotifyTokenChange(ctx, c.SiteURL, client.TokenChange{OldHash: oldHash, NewToken: token}, opts.CheckAddr)
	}
	if err != nil {
		out.TellError = err.Error()
	} else {
		out.Told = true
	}
	return out, nil
}

// maxBody bounds a token notice (bytes).
const maxBody = 4 << 10

// Routes adds the public endpoint POST /api/remote-token to mux: a sending site
// tells this one that it regenerated a token. It is unauthenticated, so limited
// per client address; the remote is found by its token's stored hash.
func Routes(mux *http.ServeMux, current site.Current, limiter *ratelimit.Limiter) {
	mux.HandleFunc("POST /api/remote-token", func(w http.ResponseWriter, r *http.Request) {
		if !limiter.Allow(r.RemoteAddr, time.Now()) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		st, err := current()
		if err != nil {
			http.Error(w, "sync is starting", http.StatusServiceUnavailable)
			return
		}
		var ch client.TokenChange
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&ch); err != nil {
			http.Error(w, "malformed request", http.StatusBadRequest)
			return
		}
		ok, err := st.Remotes.ReplaceToken(r.Context(), ch.OldHash, ch.NewToken)
		switch {
		case err != nil:
			http.Error(w, "malformed request", http.StatusBadRequest)
		case !ok:
			http.Error(w, "unknown token", http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
}
