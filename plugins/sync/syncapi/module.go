package syncapi

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Caller calls a module's operation through the host; *sdk.Host is one.
type Caller interface {
	Call(ctx context.Context, target, op string, in, out any) error
}

// Module is a typed handle on this site's Sync module for another plugin: every
// call goes through the host, which tells Sync which plugin is calling. Errors keep
// their code (errors.Is(err, sdk.ErrModuleDisabled); sdk.Error's Code is one of the
// Code constants).
type Module struct {
	host Caller
}

// Via returns a handle on the Sync module reached through host (an *sdk.Host).
func Via(host Caller) *Module { return &Module{host: host} }

func (m *Module) call(ctx context.Context, op string, in, out any) error {
	if in == nil {
		in = struct{}{}
	}
	return m.host.Call(ctx, ModuleID, op, in, out)
}

// Config returns the module's state.
func (m *Module) Config(ctx context.Context) (Config, error) {
	var c Config
	return c, m.call(ctx, OpConfig, nil, &c)
}

// ListTables lists this site's tables with row counts.
func (m *Module) ListTables(ctx context.Context, r ListTablesRequest) ([]Table, error) {
	var t []Table
	return t, m.call(ctx, OpListTables, r, &t)
}

// GetSchema returns a local table's definition.
func (m *Module) GetSchema(ctx context.Context, table string) (*Schema, error) {
	var s Schema
	return &s, m.call(ctx, OpGetSchema, TableRequest{Table: table}, &s)
}

// GetCount returns a local table's row count.
func (m *Module) GetCount(ctx context.Context, table string) (int64, error) {
	var n int64
	return n, m.call(ctx, OpGetCount, TableRequest{Table: table}, &n)
}

// ExportRecords returns a page of a local table's rows.
func (m *Module) ExportRecords(ctx context.Context, r RecordsRequest) (Page, error) {
	var p Page
	return p, m.call(ctx, OpExportRecords, r, &p)
}

// ImportRecords imports rows into a local table with a strategy.
func (m *Module) ImportRecords(ctx context.Context, r ImportRequest) (ImportResult, error) {
	var res ImportResult
	return res, m.call(ctx, OpImportRecords, r, &res)
}

// CreateSession makes a sending session and its one-time code, owned by the calling
// plugin (and handle). Renew it with TouchSessions within Session.LeaseSeconds.
func (m *Module) CreateSession(ctx context.Context, handle string) (Session, error) {
	var s Session
	return s, m.call(ctx, OpCreateSession, HandleRequest{Handle: handle}, &s)
}

// TouchSessions renews the caller's sessions under handle.
func (m *Module) TouchSessions(ctx context.Context, handle string) error {
	return m.call(ctx, OpTouchSessions, HandleRequest{Handle: handle}, nil)
}

// ReleaseSessions ends the caller's sessions under handle; their codes stop working.
func (m *Module) ReleaseSessions(ctx context.Context, handle string) error {
	return m.call(ctx, OpReleaseSessions, HandleRequest{Handle: handle}, nil)
}

// Pull connects to a sender and transfers tables into this site. It returns every
// table's result it got back; when some tables failed, with a *PullError naming
// them (the results still hold what the others did). An error from the operation
// itself (could not connect, refused) comes without results.
func (m *Module) Pull(ctx context.Context, r PullRequest) (map[string]TableResult, error) {
	var out map[string]TableResult
	if err := m.call(ctx, OpPull, r, &out); err != nil {
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

// TransferHistory returns the newest transfers matching r, newest first.
func (m *Module) TransferHistory(ctx context.Context, r HistoryRequest) ([]Transfer, error) {
	var out []Transfer
	return out, m.call(ctx, OpTransferHistory, r, &out)
}

// PullError says which tables of a pull failed, and why.
type PullError struct {
	Failed map[string]string // table → its TableResult.Error
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
func FailedTables(results map[string]TableResult) []string {
	var out []string
	for t, r := range results {
		if r.Error != "" {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}
