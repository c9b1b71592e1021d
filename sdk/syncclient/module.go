package syncclient

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/sdk"
)

// Module is a typed handle on this site's Sync module for another plugin: every call
// goes through the host, which tells Sync which plugin is calling.
//
//	sync := syncclient.Via(env.Host)
//	tables, err := sync.ListTables(ctx)
type Module struct {
	host *sdk.Host
}

// Via returns a handle on the Sync module reached through host.
func Via(host *sdk.Host) *Module { return &Module{host: host} }

// Config is the Sync module's state.
type Config struct {
	Enabled        bool   `json:"enabled"`
	IncomingMode   string `json:"incoming_mode"`
	PasswordSet    bool   `json:"password_set"`
	ActiveSessions int    `json:"active_sessions"`
}

// Session is a sending session made by CreateSession.
type Session struct {
	ID   string `json:"id"`
	Code string `json:"code"`
	// Owner is the calling plugin (plus the handle); the session lives while the
	// owner renews it with TouchSessions.
	Owner string `json:"owner"`
	URL   string `json:"url"`
}

// PullRequest asks this site to pull tables from a sender.
type PullRequest struct {
	URL           string            `json:"url"`
	Code          string            `json:"code"`
	Password      string            `json:"password,omitempty"`
	Tables        []string          `json:"tables,omitempty"`
	Strategy      importer.Strategy `json:"strategy,omitempty"`
	Strategies    map[string]string `json:"strategies,omitempty"`
	CreateMissing bool              `json:"create_missing,omitempty"`
	// IgnoreMissingColumns imports without the sender's columns a local table lacks
	// (the results name them in DroppedColumns).
	IgnoreMissingColumns bool `json:"ignore_missing_columns,omitempty"`
	BatchSize            int  `json:"batch_size,omitempty"`
	// TimeoutSeconds bounds connecting, approval included (default 30).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

func (m *Module) call(ctx context.Context, op string, in, out any) error {
	if in == nil {
		in = struct{}{}
	}
	return m.host.Call(ctx, "sync", op, in, out)
}

// Config returns the module's state.
func (m *Module) Config(ctx context.Context) (Config, error) {
	var c Config
	return c, m.call(ctx, "config", nil, &c)
}

// ListTables lists this site's tables with row counts.
func (m *Module) ListTables(ctx context.Context) ([]catalog.Table, error) {
	var t []catalog.Table
	return t, m.call(ctx, "list_tables", nil, &t)
}

// GetSchema returns a local table's definition.
func (m *Module) GetSchema(ctx context.Context, table string) (*catalog.Schema, error) {
	var s catalog.Schema
	return &s, m.call(ctx, "get_schema", map[string]string{"table": table}, &s)
}

// GetCount returns a local table's row count.
func (m *Module) GetCount(ctx context.Context, table string) (int64, error) {
	var n int64
	return n, m.call(ctx, "get_count", map[string]string{"table": table}, &n)
}

// ExportRecords returns a page of a local table's rows.
func (m *Module) ExportRecords(ctx context.Context, table string, offset, limit int) (exporter.Page, error) {
	var p exporter.Page
	return p, m.call(ctx, "export_records", map[string]any{"table": table, "offset": offset, "limit": limit}, &p)
}

// ImportRecords imports rows into a local table with a strategy.
func (m *Module) ImportRecords(ctx context.Context, table string, strategy importer.Strategy, records []map[string]*string) (importer.Result, error) {
	var r importer.Result
	return r, m.call(ctx, "import_records", map[string]any{"table": table, "strategy": strategy, "records": records}, &r)
}

// CreateSession makes a sending session and its one-time code, owned by the calling
// plugin (and handle). Renew it with TouchSessions at least every 30 s.
func (m *Module) CreateSession(ctx context.Context, handle string) (Session, error) {
	var s Session
	return s, m.call(ctx, "create_session", map[string]string{"handle": handle}, &s)
}

// TouchSessions renews the caller's sessions under handle.
func (m *Module) TouchSessions(ctx context.Context, handle string) error {
	return m.call(ctx, "touch_sessions", map[string]string{"handle": handle}, nil)
}

// ReleaseSessions ends the caller's sessions under handle; their codes stop working.
func (m *Module) ReleaseSessions(ctx context.Context, handle string) error {
	return m.call(ctx, "release_sessions", map[string]string{"handle": handle}, nil)
}

// Pull connects to a sender and transfers tables into this site. It returns every
// table's result it got back; when some tables failed, with a *PullError naming
// them (the results still hold what the others did). An error from the operation
// itself (could not connect, refused) comes with whatever results it carried (none
// today).
func (m *Module) Pull(ctx context.Context, r PullRequest) (map[string]Result, error) {
	var out map[string]Result
	if err := m.call(ctx, "pull", r, &out); err != nil {
		return out, err
	}
	if failed := FailedTables(out); len(failed) > 0 {
		e := &PullError{Failed: map[string]string{}}
		for _, t := range failed {
			e.Failed[t] = out[t].Error
		}
		return out, e
	}
	return out, nil
}

// PullError says which tables of a pull failed, and why.
type PullError struct {
	Failed map[string]string // table → its Result.Error
}

// Error implements error.
func (e *PullError) Error() string {
	names := make([]string, 0, len(e.Failed))
	for t := range e.Failed {
		names = append(names, t)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, t := range names {
		parts[i] = t + ": " + e.Failed[t]
	}
	return fmt.Sprintf("pull: %d of the tables failed: %s", len(names), strings.Join(parts, "; "))
}

// FailedTables returns, sorted, the tables whose result says they failed.
func FailedTables(results map[string]Result) []string {
	var out []string
	for t, r := range results {
		if r.Error != "" {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}
