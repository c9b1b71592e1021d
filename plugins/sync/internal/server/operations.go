package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/sdk"
	"github.com/fiberkit/fiberkit/sdk/syncclient"
)

// Operation payloads. The SDK's syncclient.Local wraps these for other plugins.

type tableIn struct {
	Table string `json:"table"`
}

type listIn struct {
	Schemas    []string `json:"schemas,omitempty"`
	Exclude    []string `json:"exclude,omitempty"`
	IncludeKit bool     `json:"include_kit,omitempty"`
	Exact      bool     `json:"exact,omitempty"`
}

type recordsIn struct {
	Table  string `json:"table"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
}

type importIn struct {
	Table    string               `json:"table"`
	Strategy string               `json:"strategy"`
	Records  []map[string]*string `json:"records"`
}

type createIn struct {
	Schema *catalog.Schema `json:"schema"`
}

type sessionIn struct {
	ID string `json:"id"`
}

type createSessionIn struct {
	// Handle distinguishes several sessions of one caller; the owner is the caller.
	Handle string `json:"handle,omitempty"`
}

type createSessionOut struct {
	ID        string `json:"id"`
	Code      string `json:"code"`
	Owner     string `json:"owner"`
	URL       string `json:"url"`
	LeaseSecs int    `json:"lease_seconds"`
}

type codeIn struct {
	Code string `json:"code"`
}

type validateOut struct {
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

type updateSessionIn struct {
	ID       string         `json:"id"`
	Status   string         `json:"status"`
	Progress map[string]any `json:"progress,omitempty"`
}

type configOut struct {
	Enabled        bool   `json:"enabled"`
	IncomingMode   string `json:"incoming_mode"`
	PasswordSet    bool   `json:"password_set"`
	ActiveSessions int    `json:"active_sessions"`
}

type modeIn struct {
	Mode string `json:"mode"`
}

type passwordIn struct {
	Password string `json:"password"`
}

// PullIn asks this site to pull tables from a sender.
type pullIn struct {
	URL           string            `json:"url"`
	Code          string            `json:"code"`
	Password      string            `json:"password,omitempty"`
	Tables        []string          `json:"tables,omitempty"`
	Strategy      string            `json:"strategy,omitempty"`
	Strategies    map[string]string `json:"strategies,omitempty"`
	CreateMissing bool              `json:"create_missing,omitempty"`
	// IgnoreMissingColumns imports without the sender's columns a local table lacks.
	IgnoreMissingColumns bool `json:"ignore_missing_columns,omitempty"`
	BatchSize            int  `json:"batch_size,omitempty"`
	TimeoutSecs          int  `json:"timeout_seconds,omitempty"`
}

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
		"config": sdk.Op(func(ctx context.Context, _ struct{}) (configOut, error) {
			st, err := s.state()
			if err != nil {
				return configOut{}, err
			}
			sessions, err := st.sessions.List(ctx)
			if err != nil {
				return configOut{}, err
			}
			return configOut{Enabled: st.settings.Enabled(), IncomingMode: st.settings.String("incoming_mode"),
				PasswordSet: st.settings.SecretSet("incoming_password"), ActiveSessions: len(sessions)}, nil
		}),
		"set_incoming_mode": sdk.Op(func(ctx context.Context, in modeIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.host.SetSettings(ctx, map[string]string{"incoming_mode": in.Mode})
		}),
		"set_password": sdk.Op(func(ctx context.Context, in passwordIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			if in.Password == "" {
				return false, sdk.Errorf("invalid_input", "password must not be empty")
			}
			return true, st.host.SetSettings(ctx, map[string]string{"incoming_password": in.Password})
		}),
		"validate_password": sdk.Op(func(ctx context.Context, in passwordIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return st.settings.SecretMatches("incoming_password", in.Password), nil
		}),
		"list_tables": sdk.Op(func(ctx context.Context, in listIn) ([]catalog.Table, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return catalog.ListTables(ctx, st.pool, catalog.ListOptions{Schemas: in.Schemas, Exclude: in.Exclude, IncludeKit: in.IncludeKit, Exact: in.Exact})
		}),
		"get_schema": sdk.Op(func(ctx context.Context, in tableIn) (*catalog.Schema, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return tableErr(catalog.GetSchema(ctx, st.pool, in.Table))
		}),
		"get_count": sdk.Op(func(ctx context.Context, in tableIn) (int64, error) {
			st, err := s.state()
			if err != nil {
				return 0, err
			}
			return tableErr(catalog.Count(ctx, st.pool, in.Table))
		}),
		"table_exists": sdk.Op(func(ctx context.Context, in tableIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return catalog.Exists(ctx, st.pool, in.Table)
		}),
		"export_records": sdk.Op(func(ctx context.Context, in recordsIn) (exporter.Page, error) {
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
				in.Limit = 500
			}
			return snap.Records(ctx, sch, in.Offset, min(in.Limit, maxRecordsLimit))
		}),
		"import_records": sdk.Op(func(ctx context.Context, in importIn) (importer.Result, error) {
			st, err := s.state()
			if err != nil {
				return importer.Result{}, err
			}
			strategy, err := importer.ParseStrategy(in.Strategy)
			if err != nil {
				return importer.Result{}, sdk.Errorf("invalid_input", "%v", err)
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
		"create_table": sdk.Op(func(ctx context.Context, in createIn) (ddl.Result, error) {
			st, err := s.state()
			if err != nil {
				return ddl.Result{}, err
			}
			if in.Schema == nil {
				return ddl.Result{}, sdk.Errorf("invalid_input", "schema is required")
			}
			// Warnings name what of a peer's definition was not recreated.
			return ddl.Create(ctx, st.pool, in.Schema)
		}),
		"create_session": sdk.Op(func(ctx context.Context, in createSessionIn) (createSessionOut, error) {
			st, err := s.state()
			if err != nil {
				return createSessionOut{}, err
			}
			o := owner(ctx, in.Handle)
			sess, code, err := st.sessions.Create(ctx, "send", o)
			if err != nil {
				return createSessionOut{}, err
			}
			return createSessionOut{ID: sess.ID, Code: code, Owner: o, URL: st.public, LeaseSecs: int(time.Until(sess.LeaseUntil).Seconds())}, nil
		}),
		"touch_sessions": sdk.Op(func(ctx context.Context, in createSessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.sessions.Touch(ctx, owner(ctx, in.Handle))
		}),
		"release_sessions": sdk.Op(func(ctx context.Context, in createSessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.sessions.ReleaseOwner(ctx, owner(ctx, in.Handle))
		}),
		"get_session": sdk.Op(func(ctx context.Context, in sessionIn) (session.Session, error) {
			st, err := s.state()
			if err != nil {
				return session.Session{}, err
			}
			sess, err := st.sessions.Get(ctx, in.ID)
			if errors.Is(err, session.ErrNotFound) {
				return sess, sdk.Errorf("not_found", "no session %s", in.ID)
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
		"validate_code": sdk.Op(func(ctx context.Context, in codeIn) (validateOut, error) {
			st, err := s.state()
			if err != nil {
				return validateOut{}, err
			}
			_, err = st.sessions.Validate(ctx, in.Code)
			switch {
			case errors.Is(err, session.ErrInvalidCode):
				return validateOut{Valid: false, Error: "invalid_code"}, nil
			case errors.Is(err, session.ErrAlreadyUsed):
				return validateOut{Valid: false, Error: "already_used"}, nil
			case err != nil:
				return validateOut{}, err
			}
			return validateOut{Valid: true}, nil
		}),
		"update_session": sdk.Op(func(ctx context.Context, in updateSessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			switch in.Status {
			case session.StatusPending, session.StatusConnected, session.StatusTransferring, session.StatusDone:
			default:
				return false, sdk.Errorf("invalid_input", "status %q (want pending, connected, transferring or done)", in.Status)
			}
			return true, notFound(st.sessions.Update(ctx, in.ID, in.Status, in.Progress))
		}),
		"delete_session": sdk.Op(func(ctx context.Context, in sessionIn) (bool, error) {
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
		"approve": sdk.Op(func(ctx context.Context, in sessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, notFound(st.sessions.Approve(ctx, in.ID, owner(ctx, "")))
		}),
		"deny": sdk.Op(func(ctx context.Context, in sessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, notFound(st.sessions.Deny(ctx, in.ID, owner(ctx, "")))
		}),
		"create_connection": sdk.Op(func(ctx context.Context, in connectionIn) (connectionOut, error) {
			st, err := s.state()
			if err != nil {
				return connectionOut{}, err
			}
			c, token, err := st.conns.Create(ctx, in.Name, in.SiteURL, in.Limits, owner(ctx, ""))
			if err != nil {
				return connectionOut{}, sdk.Errorf("invalid_input", "%v", err)
			}
			return connectionOut{Connection: c, Token: token}, nil
		}),
		"list_connections": sdk.Op(func(ctx context.Context, _ struct{}) ([]connection.Connection, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return st.conns.List(ctx)
		}),
		"get_connection": sdk.Op(func(ctx context.Context, in sessionIn) (connection.Connection, error) {
			st, err := s.state()
			if err != nil {
				return connection.Connection{}, err
			}
			c, err := st.conns.Get(ctx, in.ID)
			return c, connNotFound(err)
		}),
		"set_connection_status": sdk.Op(func(ctx context.Context, in statusIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, connNotFound(st.conns.SetStatus(ctx, in.ID, in.Status, owner(ctx, "")))
		}),
		"set_connection_limits": sdk.Op(func(ctx context.Context, in limitsIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, connNotFound(st.conns.SetLimits(ctx, in.ID, in.Limits))
		}),
		"regenerate_token": sdk.Op(func(ctx context.Context, in sessionIn) (connectionOut, error) {
			st, err := s.state()
			if err != nil {
				return connectionOut{}, err
			}
			return s.regenerate(ctx, st, in.ID)
		}),
		"add_remote": sdk.Op(func(ctx context.Context, in remoteIn) (remote.Remote, error) {
			st, err := s.state()
			if err != nil {
				return remote.Remote{}, err
			}
			if _, err := importer.ParseStrategy(in.Strategy); err != nil {
				return remote.Remote{}, sdk.Errorf("invalid_input", "%v", err)
			}
			if _, err := st.outgoing(in.URL, syncclient.Options{}); err != nil {
				return remote.Remote{}, sdk.Errorf("refused_url", "%v", err)
			}
			r, err := st.remotes.Add(ctx, remote.Remote{Name: in.Name, URL: in.URL, Tables: in.Tables, Strategy: in.Strategy, Interval: in.Interval}, in.Token, owner(ctx, ""))
			if err != nil {
				return remote.Remote{}, sdk.Errorf("invalid_input", "%v", err)
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
		"run_remote": sdk.Op(func(ctx context.Context, in sessionIn) (map[string]syncclient.Result, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			var res map[string]syncclient.Result
			err = st.remotes.RunNow(ctx, in.ID, func(ctx context.Context, r remote.Remote, token string) error {
				var perr error
				res, perr = s.pullRemote(ctx, r, token)
				return perr
			})
			return transferOutcome(res, err)
		}),
		"update_remote": sdk.Op(func(ctx context.Context, in updateRemoteIn) (remote.Remote, error) {
			st, err := s.state()
			if err != nil {
				return remote.Remote{}, err
			}
			r, err := st.remotes.Update(ctx, in.ID, in.Schedule)
			if errors.Is(err, remote.ErrNotFound) {
				return r, sdk.Errorf("not_found", "%v", err)
			}
			if err != nil {
				return r, sdk.Errorf("invalid_input", "%v", err)
			}
			return r, nil
		}),
		"delete_remote": sdk.Op(func(ctx context.Context, in sessionIn) (bool, error) {
			st, err := s.state()
			if err != nil {
				return false, err
			}
			return true, st.remotes.Delete(ctx, in.ID)
		}),
		"transfer_history": sdk.Op(func(ctx context.Context, in historyIn) ([]history.Transfer, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			if in.Limit <= 0 || in.Limit > 1000 {
				in.Limit = 100
			}
			return st.history.Find(ctx, in.Filter, in.Limit)
		}),
		"pull": sdk.Op(func(ctx context.Context, in pullIn) (map[string]syncclient.Result, error) {
			st, err := s.state()
			if err != nil {
				return nil, err
			}
			return s.pull(ctx, st, in)
		}),
	}
}

// pull connects to a sender and transfers tables into this site's database.
func (s *Server) pull(ctx context.Context, st *state, in pullIn) (map[string]syncclient.Result, error) {
	timeout := time.Duration(in.TimeoutSecs) * time.Second
	opts, err := st.outgoing(in.URL, syncclient.Options{
		Password: in.Password, Timeout: timeout,
		ReceiverInfo: map[string]any{"site": st.public, "via": "sync operation", "caller": owner(ctx, "")},
	})
	if err != nil {
		return nil, sdk.Errorf("refused_url", "%v", err)
	}
	c, err := syncclient.Connect(ctx, in.URL, in.Code, opts)
	if errors.Is(err, errInternalURL) {
		return nil, sdk.Errorf("refused_url", "%v", err)
	}
	if err != nil {
		recordPull(st, in.URL, owner(ctx, ""), "", nil, nil, err)
		return nil, sdk.Errorf("connect_failed", "%v", err)
	}
	defer c.Close()
	strategies := map[string]importer.Strategy{}
	for t, name := range in.Strategies {
		sv, err := importer.ParseStrategy(name)
		if err != nil {
			return nil, sdk.Errorf("invalid_input", "%s: %v", t, err)
		}
		strategies[t] = sv
	}
	def, err := importer.ParseStrategy(in.Strategy)
	if err != nil {
		return nil, sdk.Errorf("invalid_input", "%v", err)
	}
	res, err := c.TransferAll(ctx, st.pool, syncclient.TransferAllOptions{
		Tables: in.Tables, Strategy: def, Strategies: strategies,
		TransferOptions: syncclient.TransferOptions{CreateMissing: in.CreateMissing, BatchSize: in.BatchSize,
			IgnoreMissingColumns: in.IgnoreMissingColumns},
	})
	recordPull(st, in.URL, owner(ctx, ""), def, strategies, res, err)
	return transferOutcome(res, err)
}

// transferOutcome is what pull and run_remote answer: once tables were transferred,
// a result per table (a failed one says why in Error) — an operation error would
// drop them; before that, the error alone.
func transferOutcome(res map[string]syncclient.Result, err error) (map[string]syncclient.Result, error) {
	if err != nil && len(res) == 0 {
		return nil, sdk.Errorf("transfer_failed", "%v", err)
	}
	return res, nil
}

type remoteIn struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Token    string   `json:"token"`
	Tables   []string `json:"tables,omitempty"`
	Strategy string   `json:"strategy,omitempty"`
	Interval int      `json:"interval_seconds,omitempty"`
}

// updateRemoteIn changes a remote's schedule: its tables, strategy and interval.
type updateRemoteIn struct {
	ID string `json:"id"`
	remote.Schedule
}

type historyIn struct {
	history.Filter
	Limit int `json:"limit,omitempty"`
}

type connectionIn struct {
	Name    string            `json:"name"`
	SiteURL string            `json:"site_url"`
	Limits  connection.Limits `json:"limits"`
}

// connectionOut carries the token only when it was just made: it is never shown again.
type connectionOut struct {
	connection.Connection
	Token string `json:"token,omitempty"`
	// Told says whether the other site took the new token; TellError why not.
	Told      bool   `json:"told,omitempty"`
	TellError string `json:"tell_error,omitempty"`
}

// regenerate makes a new token and tells the other site (its remote is found by the
// old token's hash), so its scheduled pulls go on.
func (s *Server) regenerate(ctx context.Context, st *state, id string) (connectionOut, error) {
	token, oldHash, err := st.conns.RegenerateToken(ctx, id)
	if err != nil {
		return connectionOut{}, connNotFound(err)
	}
	c, err := st.conns.Get(ctx, id)
	if err != nil {
		return connectionOut{}, err
	}
	out := connectionOut{Connection: c, Token: token}
	if c.SiteURL == "" {
		out.TellError = "the connection has no site URL to tell"
		return out, nil
	}
	opts, err := st.outgoing(c.SiteURL, syncclient.Options{})
	if err == nil {
		err = syncclient.NotifyTokenChange(ctx, c.SiteURL, syncclient.TokenChange{OldHash: oldHash, NewToken: token}, opts.CheckAddr)
	}
	if err != nil {
		out.TellError = err.Error()
	} else {
		out.Told = true
	}
	return out, nil
}

type statusIn struct {
	ID     string `json:"id"`
	Status string `json:"status"` // active (approve, reactivate), suspended, revoked
}

type limitsIn struct {
	ID     string            `json:"id"`
	Limits connection.Limits `json:"limits"`
}

func connNotFound(err error) error {
	if errors.Is(err, connection.ErrNotFound) {
		return sdk.Errorf("not_found", "%v", err)
	}
	if errors.Is(err, connection.ErrInvalidStatus) {
		return sdk.Errorf("invalid_input", "%v", err)
	}
	if errors.Is(err, connection.ErrStillExpired) {
		return sdk.Errorf("still_expired", "%v", err)
	}
	return err
}

func tableErr[T any](v T, err error) (T, error) {
	if errors.Is(err, catalog.ErrUnknownTable) {
		return v, sdk.Errorf("unknown_table", "%v", err)
	}
	return v, err
}

func importErr(err error) error {
	for _, e := range []error{importer.ErrStrategyNotApplicable, importer.ErrNoKeyDefault, importer.ErrUnknownColumn, importer.ErrMalformedBatch, catalog.ErrUnknownTable} {
		if errors.Is(err, e) {
			return sdk.Errorf("invalid_input", "%v", err)
		}
	}
	return err
}

func notFound(err error) error {
	if errors.Is(err, session.ErrNotFound) {
		return sdk.Errorf("not_found", "%s", strings.TrimSpace(err.Error()))
	}
	return err
}

// recordPulls writes a history row for each table a pull touched.
func recordPulls(st *state, peer, by string, def importer.Strategy, strategies map[string]importer.Strategy, results map[string]syncclient.Result) {
	recordPull(st, peer, by, def, strategies, results, nil)
}

// recordPull writes a history row for each table a pull touched, tables stopped
// by a cancellation as cancelled; a pull that failed before any table (refused,
// unreachable) gets one row saying why.
func recordPull(st *state, peer, by string, def importer.Strategy, strategies map[string]importer.Strategy, results map[string]syncclient.Result, pullErr error) {
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
