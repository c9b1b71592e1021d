package ops

import (
	"context"
	"errors"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/pull"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/tokenchange"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/urlguard"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// The operations between two sites: permanent connections (sending side), remotes
// and pulls (receiving side), and the history of both.

func createConnection(ctx context.Context, st *site.Site, in syncapi.CreateConnectionRequest) (syncapi.ConnectionWithToken, error) {
	c, token, err := st.Conns.Create(ctx, in.Name, in.SiteURL, in.Limits, owner(ctx, ""))
	if err != nil {
		return syncapi.ConnectionWithToken{}, invalid(err)
	}
	return syncapi.ConnectionWithToken{Connection: c, Token: token}, nil
}

func listConnections(ctx context.Context, st *site.Site, _ struct{}) ([]connection.Connection, error) {
	return st.Conns.List(ctx)
}

func getConnection(ctx context.Context, st *site.Site, in syncapi.ConnectionRef) (connection.Connection, error) {
	c, err := st.Conns.Get(ctx, in.ID)
	return c, connErr(err)
}

func setConnectionStatus(ctx context.Context, st *site.Site, in syncapi.ConnectionStatusRequest) (bool, error) {
	if err := st.Conns.SetStatus(ctx, in.ID, in.Status, owner(ctx, "")); err != nil {
		return false, connErr(err)
	}
	if in.Status == connection.Revoked {
		st.Metrics.ForgetConnection(in.ID) // a revoked connection asks for nothing more
	}
	return true, nil
}

func setConnectionLimits(ctx context.Context, st *site.Site, in syncapi.ConnectionLimitsRequest) (bool, error) {
	return done(connErr(st.Conns.SetLimits(ctx, in.ID, in.Limits)))
}

func regenerateToken(ctx context.Context, st *site.Site, in syncapi.ConnectionRef) (syncapi.ConnectionWithToken, error) {
	out, err := tokenchange.Regenerate(ctx, st, in.ID)
	return out, connErr(err)
}

func addRemote(ctx context.Context, st *site.Site, in syncapi.AddRemoteRequest) (remote.Remote, error) {
	if _, err := importer.ParseStrategy(in.Strategy); err != nil {
		return remote.Remote{}, invalid(err)
	}
	if _, err := st.Outgoing(ctx, in.URL, client.Options{}); err != nil {
		return remote.Remote{}, sdk.Errorf(syncapi.CodeRefusedURL, "%v", err)
	}
	r, err := st.Remotes.Add(ctx, remote.Remote{Name: in.Name, URL: in.URL, Tables: in.Tables, Strategy: in.Strategy, Interval: in.Interval, Follow: in.Follow}, in.Token, owner(ctx, ""))
	if err != nil {
		return remote.Remote{}, invalid(err)
	}
	return r, nil
}

func followStatus(ctx context.Context, st *site.Site, _ struct{}) (syncapi.FollowReport, error) {
	var r syncapi.FollowReport
	var err error
	if r.Follows, err = st.Follows.List(ctx); err != nil {
		return r, err
	}
	r.Followers, err = st.Conns.Followers(ctx)
	return r, err
}

func listRemotes(ctx context.Context, st *site.Site, _ struct{}) ([]remote.Remote, error) {
	return st.Remotes.List(ctx)
}

func (h handlers) runRemote(ctx context.Context, st *site.Site, in syncapi.RemoteRef) (map[string]client.Result, error) {
	var res map[string]client.Result
	err := st.Remotes.RunNow(ctx, in.ID, func(ctx context.Context, r remote.Remote, token string) error {
		var perr error
		res, perr = pull.Remote(ctx, h.log, st, r, token)
		return perr
	})
	return transferOutcome(res, err)
}

func updateRemote(ctx context.Context, st *site.Site, in syncapi.UpdateRemoteRequest) (remote.Remote, error) {
	r, err := st.Remotes.Update(ctx, in.ID, in.Schedule)
	if errors.Is(err, remote.ErrNotFound) {
		return r, sdk.Errorf(syncapi.CodeNotFound, "%v", err)
	}
	if err != nil {
		return r, invalid(err)
	}
	return r, nil
}

func deleteRemote(ctx context.Context, st *site.Site, in syncapi.RemoteRef) (bool, error) {
	return done(st.Remotes.Delete(ctx, in.ID))
}

// History limits of transfer_history.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

// transferHistory answers from the history as it is, pulls a stopped plugin left
// running marked interrupted first (pull.Recover).
func (h handlers) transferHistory(ctx context.Context, st *site.Site, in syncapi.HistoryRequest) ([]history.Transfer, error) {
	if err := pull.Recover(ctx, h.log, st); err != nil {
		h.log.Warn("transfer history", "err", err)
	}
	if in.Limit <= 0 || in.Limit > maxHistoryLimit {
		in.Limit = defaultHistoryLimit
	}
	return st.History.Find(ctx, in.HistoryFilter, in.Limit)
}

// pull connects to a sender and transfers tables into this site's database.
func (h handlers) pull(ctx context.Context, st *site.Site, in syncapi.PullRequest) (map[string]client.Result, error) {
	caller := owner(ctx, "")
	res, err := pull.Run(ctx, h.log, st,
		pull.Target{URL: in.URL, Code: in.Code, Password: in.Password, Timeout: seconds(in.TimeoutSeconds), Via: "sync operation", Caller: caller},
		pull.Plan{Tables: in.Tables, Strategy: string(in.Strategy), Strategies: in.Strategies, CreateMissing: in.CreateMissing,
			IgnoreMissingColumns: in.IgnoreMissingColumns, BatchSize: in.BatchSize, SplitWorkers: in.SplitWorkers, StartedBy: caller})
	var connectErr *pull.ConnectError
	switch {
	case errors.Is(err, importer.ErrBadStrategy):
		return nil, invalid(err)
	case urlguard.Refused(err):
		return nil, sdk.Errorf(syncapi.CodeRefusedURL, "%v", err)
	case errors.As(err, &connectErr):
		return nil, sdk.Errorf(syncapi.CodeConnectFailed, "%v", err)
	}
	return transferOutcome(res, err)
}

// transferOutcome is what pull and run_remote answer: once tables were transferred,
// a result per table (a failed one says why in Error) — an operation error would
// drop them; before that, the error alone.
func transferOutcome(res map[string]client.Result, err error) (map[string]client.Result, error) {
	if err != nil && len(res) == 0 {
		return nil, sdk.Errorf(syncapi.CodeTransferFailed, "%v", err)
	}
	return res, nil
}
