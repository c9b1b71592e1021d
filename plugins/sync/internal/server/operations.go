package server

import (
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"

	"context"
	"errors"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
)

// owner names who owns sessions made through an operation: the caller, as the host
// stamped it, plus an optional handle.
func owner(ctx context.Context, handle string) string {
	c := sdk.CallerFrom(ctx)
	o := "user:" + c.User
	if c.Plugin != "" {
		o = "plugin:" + c.Plugin
	}
	if handle != "" {
		o += "#" + handle
	}
	return o
}

func (s *Server) operations() sdk.Operations {
	return sdk.Operations{
		"config": sdk.Op(func(ctx context.Context, _ struct{}) (syncapi.Config, error) {
			st, err := s.state()
			if err != nil {
				return syncapi.Config{}, err
			}
			sessions, err := st.sessions.List(ctx)
			if err != nil {
				return syncapi.Config{}, err
			}
			return syncapi.Config{Enabled: st.settings.Enabled(), IncomingMode: st.settings.String("incoming_mode"),
				PasswordSet: st.settings.SecretSet("incoming_password"), ActiveSessions: len(sessions)}, nil
		}),
		"set_incoming_mode": sdk.Op(func(ctx context.Context, in syncapi.ModeRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.host.SetSettings(ctx, map[string]string{"incoming_mode": in.Mode})
		}),
		"set_password": sdk.Op(func(ctx context.Context, in syncapi.PasswordRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			if in.Password == "" {
				return false, sdk.Errorf(sdk.CodeInvalidInput, "password must not be empty")
			}
			return true, st.host.SetSettings(ctx, map[string]string{"incoming_password": in.Password})
		}),
		"validate_password": sdk.Op(func(ctx context.Context, in syncapi.PasswordRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return st.settings.SecretMatches("incoming_password", in.Password), nil
		}),
		"list_tables": sdk.Op(func(ctx context.Context, in syncapi.ListTablesRequest) ([]catalog.Table, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return catalog.ListTables(ctx, st.pool, catalog.ListOptions{Schemas: in.Schemas, Exclude: in.Exclude, IncludeKit: in.IncludeKit, Exact: in.Exact})
		}),
		"get_schema": sdk.Op(func(ctx context.Context, in syncapi.TableRequest) (*catalog.Schema, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return tableErr(catalog.GetSchema(ctx, st.pool, in.Table))
		}),
		"get_count": sdk.Op(func(ctx context.Context, in syncapi.TableRequest) (int64, error) {
			st, err := s.state()
			if err != nil {
				return 0, err
			}
			return tableErr(catalog.Count(ctx, st.pool, in.Table))
		}),
		"table_exists": sdk.Op(func(ctx context.Context, in syncapi.TableRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return catalog.Exists(ctx, st.pool, in.Table)
		}),
		"export_records": sdk.Op(func(ctx context.Context, in syncapi.RecordsRequest) (exporter.Page, error) {
			st, err := s.state()
			if err != nil {
				return exporter.Page{}, err
			}
			snap, err := exporter.Begin(ctx, st.pool)
			if err != nil {
				return exporter.Page{}, err
			}
			defer snap.Close(ctx)
			sch, err := tableErr(catalog.GetSchema(ctx, snap.Querier(), in.Table))
			if err != nil {
				return exporter.Page{}, err
			}
			if in.Limit <= 0 {
				in.Limit = syncapi.DefaultRecordsLimit
			}
			return snap.Records(ctx, sch, in.Offset, min(in.Limit, syncapi.MaxRecordsLimit))
		}),
		"import_records": sdk.Op(func(ctx context.Context, in syncapi.ImportRequest) (importer.Result, error) {
			st, err := s.state()
			if err != nil {
				return importer.Result{}, err
			}
			strategy, err := importer.ParseStrategy(string(in.Strategy))
			if err != nil {
				return importer.Result{}, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
			}
			im, err := importer.New(ctx, st.pool, in.Table, importer.Options{Strategy: strategy})
			if err != nil {
				return importer.Result{}, importErr(err)
			}
			res, err := im.ImportRecords(ctx, in.Records)
			if err != nil {
				return importer.Result{}, importErr(err)
			}
			return res, im.Finish(ctx)
		}),
		"create_table": sdk.Op(func(ctx context.Context, in syncapi.CreateTableRequest) (ddl.Result, error) {
			st, err := s.state()
			if err != nil {
				return ddl.Result{}, err
			}
			if in.Schema == nil {
				return ddl.Result{}, sdk.Errorf(sdk.CodeInvalidInput, "schema is required")
			}
			// Warnings name what of a peer's definition was not recreated.
			return ddl.Create(ctx, st.pool, in.Schema)
		}),
		"create_session": sdk.Op(func(ctx context.Context, in syncapi.HandleRequest) (syncapi.Session, error) {
			st, err := s.state()
			if err != nil {
				return syncapi.Session{}, err
			}
			o := owner(ctx, in.Handle)
			sess, code, err := st.sessions.Create(ctx, "send", o)
			if err != nil {
				return syncapi.Session{}, err
			}
			return syncapi.Session{ID: sess.ID, Code: code, Owner: o, URL: st.public, LeaseSeconds: int(time.Until(sess.LeaseUntil).Seconds())}, nil
		}),
		"touch_sessions": sdk.Op(func(ctx context.Context, in syncapi.HandleRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.sessions.Touch(ctx, owner(ctx, in.Handle))
		}),
		"release_sessions": sdk.Op(func(ctx context.Context, in syncapi.HandleRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.sessions.ReleaseOwner(ctx, owner(ctx, in.Handle))
		}),
		"get_session": sdk.Op(func(ctx context.Context, in syncapi.SessionRef) (session.Session, error) {
			st, err := s.state()
			if err != nil {
				return session.Session{}, err
			}
			sess, err := st.sessions.Get(ctx, in.ID)
			if errors.Is(err, session.ErrNotFound) {
				return sess, sdk.Errorf(syncapi.CodeNotFound, "no session %s", in.ID)
			}
			return sess, err
		}),
		"list_sessions": sdk.Op(func(ctx context.Context, _ struct{}) ([]session.Session, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return st.sessions.List(ctx)
		}),
		"validate_code": sdk.Op(func(ctx context.Context, in syncapi.CodeRequest) (syncapi.CodeValidation, error) {
			st, err := s.state()
			if err != nil {
				return syncapi.CodeValidation{}, err
			}
			_, err = st.sessions.Validate(ctx, in.Code)
			switch {
			case errors.Is(err, session.ErrInvalidCode):
				return syncapi.CodeValidation{Valid: false, Error: "invalid_code"}, nil
			case errors.Is(err, session.ErrAlreadyUsed):
				return syncapi.CodeValidation{Valid: false, Error: "already_used"}, nil
			case err != nil:
				return syncapi.CodeValidation{}, err
			}
			return syncapi.CodeValidation{Valid: true}, nil
		}),
		"update_session": sdk.Op(func(ctx context.Context, in syncapi.UpdateSessionRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			switch in.Status {
			case session.StatusPending, session.StatusConnected, session.StatusTransferring, session.StatusDone:
			default:
				return false, sdk.Errorf(sdk.CodeInvalidInput, "status %q (want pending, connected, transferring or done)", in.Status)
			}
			return true, notFound(st.sessions.Update(ctx, in.ID, in.Status, in.Progress))
		}),
		"delete_session": sdk.Op(func(ctx context.Context, in syncapi.SessionRef) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.sessions.Delete(ctx, in.ID)
		}),
		"pending_approvals": sdk.Op(func(ctx context.Context, _ struct{}) ([]session.Approval, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return st.sessions.Pending(ctx)
		}),
		"approve": sdk.Op(func(ctx context.Context, in syncapi.ApprovalRef) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, notFound(st.sessions.Approve(ctx, in.ID, owner(ctx, "")))
		}),
		"deny": sdk.Op(func(ctx context.Context, in syncapi.ApprovalRef) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, notFound(st.sessions.Deny(ctx, in.ID, owner(ctx, "")))
		}),
		"create_connection": sdk.Op(func(ctx context.Context, in syncapi.CreateConnectionRequest) (syncapi.ConnectionWithToken, error) {
			st, err := s.state()
			if err != nil {
				return syncapi.ConnectionWithToken{}, err
			}
			c, token, err := st.conns.Create(ctx, in.Name, in.SiteURL, in.Limits, owner(ctx, ""))
			if err != nil {
				return syncapi.ConnectionWithToken{}, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
			}
			return syncapi.ConnectionWithToken{Connection: c, Token: token}, nil
		}),
		"list_connections": sdk.Op(func(ctx context.Context, _ struct{}) ([]connection.Connection, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return st.conns.List(ctx)
		}),
		"get_connection": sdk.Op(func(ctx context.Context, in syncapi.ConnectionRef) (connection.Connection, error) {
			st, err := s.state()
			if err != nil {
				return connection.Connection{}, err
			}
			c, err := st.conns.Get(ctx, in.ID)
			return c, connNotFound(err)
		}),
		"set_connection_status": sdk.Op(func(ctx context.Context, in syncapi.ConnectionStatusRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, connNotFound(st.conns.SetStatus(ctx, in.ID, in.Status, owner(ctx, "")))
		}),
		"set_connection_limits": sdk.Op(func(ctx context.Context, in syncapi.ConnectionLimitsRequest) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, connNotFound(st.conns.SetLimits(ctx, in.ID, in.Limits))
		}),
		"regenerate_token": sdk.Op(func(ctx context.Context, in syncapi.ConnectionRef) (syncapi.ConnectionWithToken, error) {
			st, err := s.state()
			if err != nil {
				return syncapi.ConnectionWithToken{}, err
			}
			return s.regenerate(ctx, st, in.ID)
		}),
		"add_remote": sdk.Op(func(ctx context.Context, in syncapi.AddRemoteRequest) (remote.Remote, error) {
			st, err := s.state()
			if err != nil {
				return remote.Remote{}, err
			}
			if _, err := importer.ParseStrategy(string(in.Strategy)); err != nil {
				return remote.Remote{}, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
			}
			if _, err := st.outgoing(in.URL, client.Options{}); err != nil {
				return remote.Remote{}, sdk.Errorf(syncapi.CodeRefusedURL, "%v", err)
			}
			r, err := st.remotes.Add(ctx, remote.Remote{Name: in.Name, URL: in.URL, Tables: in.Tables, Strategy: in.Strategy, Interval: in.Interval}, in.Token, owner(ctx, ""))
			if err != nil {
				return remote.Remote{}, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
			}
			return r, nil
		}),
		"list_remotes": sdk.Op(func(ctx context.Context, _ struct{}) ([]remote.Remote, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return st.remotes.List(ctx)
		}),
		"run_remote": sdk.Op(func(ctx context.Context, in syncapi.RemoteRef) (map[string]client.Result, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			var res map[string]client.Result
			err = st.remotes.RunNow(ctx, in.ID, func(ctx context.Context, r remote.Remote, token string) error {
				var perr error
				res, perr = s.pullRemote(ctx, r, token)
				return perr
			})
			return transferOutcome(res, err)
		}),
		"update_remote": sdk.Op(func(ctx context.Context, in syncapi.UpdateRemoteRequest) (remote.Remote, error) {
			st, err := s.state()
			if err != nil {
				return remote.Remote{}, err
			}
			r, err := st.remotes.Update(ctx, in.ID, in.Schedule)
			if errors.Is(err, remote.ErrNotFound) {
				return r, sdk.Errorf(syncapi.CodeNotFound, "%v", err)
			}
			if err != nil {
				return r, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
			}
			return r, nil
		}),
		"delete_remote": sdk.Op(func(ctx context.Context, in syncapi.RemoteRef) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.remotes.Delete(ctx, in.ID)
		}),
		"transfer_history": sdk.Op(func(ctx context.Context, in syncapi.HistoryRequest) ([]history.Transfer, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			if in.Limit <= 0 || in.Limit > 1000 {
				in.Limit = 100
			}
			return st.history.Find(ctx, in.HistoryFilter, in.Limit)
		}),
		"pull": sdk.Op(func(ctx context.Context, in syncapi.PullRequest) (map[string]client.Result, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return s.pull(ctx, st, in)
		}),
	}
}

// pull connects to a sender and transfers tables into this site's database.
func (s *Server) pull(ctx context.Context, st *state, in syncapi.PullRequest) (map[string]client.Result, error) {
	timeout := time.Duration(in.TimeoutSeconds) * time.Second
	opts, err := st.outgoing(in.URL, client.Options{
		Password: in.Password, Timeout: timeout,
		ReceiverInfo: map[string]any{"site": st.public, "via": "sync operation", "caller": owner(ctx, "")},
	})
	if err != nil {
		return nil, sdk.Errorf(syncapi.CodeRefusedURL, "%v", err)
	}
	c, err := client.Connect(ctx, in.URL, in.Code, opts)
	if errors.Is(err, errInternalURL) {
		return nil, sdk.Errorf(syncapi.CodeRefusedURL, "%v", err)
	}
	if err != nil {
		recordPull(st, in.URL, owner(ctx, ""), "", nil, nil, err)
		return nil, sdk.Errorf(syncapi.CodeConnectFailed, "%v", err)
	}
	defer c.Close()
	strategies := map[string]importer.Strategy{}
	for t, name := range in.Strategies {
		sv, err := importer.ParseStrategy(name)
		if err != nil {
			return nil, sdk.Errorf(sdk.CodeInvalidInput, "%s: %v", t, err)
		}
		strategies[t] = sv
	}
	def, err := importer.ParseStrategy(string(in.Strategy))
	if err != nil {
		return nil, sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
	}
	res, err := c.TransferAll(ctx, st.pool, client.TransferAllOptions{
		Tables: in.Tables, Strategy: def, Strategies: strategies,
		TransferOptions: client.TransferOptions{CreateMissing: in.CreateMissing, BatchSize: in.BatchSize,
			IgnoreMissingColumns: in.IgnoreMissingColumns},
	})
	recordPull(st, in.URL, owner(ctx, ""), def, strategies, res, err)
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

// regenerate makes a new token and tells the other site (its remote is found by the
// old token's hash), so its scheduled pulls go on.
func (s *Server) regenerate(ctx context.Context, st *state, id string) (syncapi.ConnectionWithToken, error) {
	token, oldHash, err := st.conns.RegenerateToken(ctx, id)
	if err != nil {
		return syncapi.ConnectionWithToken{}, connNotFound(err)
	}
	c, err := st.conns.Get(ctx, id)
	if err != nil {
		return syncapi.ConnectionWithToken{}, err
	}
	out := syncapi.ConnectionWithToken{Connection: c, Token: token}
	if c.SiteURL == "" {
		out.TellError = "the connection has no site URL to tell"
		return out, nil
	}
	opts, err := st.outgoing(c.SiteURL, client.Options{})
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

func connNotFound(err error) error {
	if errors.Is(err, connection.ErrNotFound) {
		return sdk.Errorf(syncapi.CodeNotFound, "%v", err)
	}
	if errors.Is(err, connection.ErrInvalidStatus) {
		return sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
	}
	if errors.Is(err, connection.ErrStillExpired) {
		return sdk.Errorf(syncapi.CodeStillExpired, "%v", err)
	}
	return err
}

func tableErr[T any](v T, err error) (T, error) {
	if errors.Is(err, catalog.ErrUnknownTable) {
		return v, sdk.Errorf(syncapi.CodeUnknownTable, "%v", err)
	}
	return v, err
}

func importErr(err error) error {
	for _, e := range []error{importer.ErrStrategyNotApplicable, importer.ErrNoKeyDefault, importer.ErrUnknownColumn, importer.ErrMalformedBatch, catalog.ErrUnknownTable} {
		if errors.Is(err, e) {
			return sdk.Errorf(sdk.CodeInvalidInput, "%v", err)
		}
	}
	return err
}

func notFound(err error) error {
	if errors.Is(err, session.ErrNotFound) {
		return sdk.Errorf(syncapi.CodeNotFound, "%s", strings.TrimSpace(err.Error()))
	}
	return err
}

// recordPulls writes a history row for each table a pull touched.
func recordPulls(st *state, peer, by string, def importer.Strategy, strategies map[string]importer.Strategy, results map[string]client.Result) {
	recordPull(st, peer, by, def, strategies, results, nil)
}

// recordPull writes a history row for each table a pull touched, tables stopped
// by a cancellation as cancelled; a pull that failed before any table (refused,
// unreachable) gets one row saying why.
func recordPull(st *state, peer, by string, def importer.Strategy, strategies map[string]importer.Strategy, results map[string]client.Result, pullErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if pullErr != nil && len(results) == 0 {
		status := "failed"
		if errors.Is(pullErr, context.Canceled) {
			status = "cancelled"
		}
		_, _ = st.history.Record(ctx, history.Transfer{Direction: "receive", Peer: peer, Table: "(pull)", Strategy: string(def),
			Status: status, Error: pullErr.Error(), StartedBy: by})
		return
	}
	for table, r := range results {
		strategy := def
		if s, ok := strategies[table]; ok {
			strategy = s
		}
		rec := history.Transfer{Direction: "receive", Peer: peer, Table: table, Strategy: string(strategy), Requested: r.Requested, Rows: r.Rows, Bytes: r.Bytes,
			Created: r.Created, Updated: r.Updated, Skipped: r.Skipped, Failed: r.Failed, Duration: r.Duration, Status: "done", StartedBy: by}
		if r.Error != "" {
			rec.Status, rec.Error = "failed", r.Error
			if errors.Is(pullErr, context.Canceled) {
				rec.Status = "cancelled"
			}
		}
		_, _ = st.history.Record(ctx, rec)
	}
}
