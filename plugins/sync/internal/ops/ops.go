// Package ops serves the Sync module's operations (package syncapi is their
// contract): one handler per operation name, each given the current site.
package ops

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// handlers holds what the operations share.
type handlers struct {
	log     *slog.Logger
	current site.Current
}

// Operations returns the Sync module's operations, keyed by syncapi's names, each
// answered on the site current returns.
func Operations(log *slog.Logger, current site.Current) sdk.Operations {
	h := handlers{log: log, current: current}
	ops := sdk.Operations{
		syncapi.OpConfig:              op(current, config),
		syncapi.OpSetIncomingMode:     op(current, h.setIncomingMode),
		syncapi.OpSetPassword:         op(current, h.setPassword),
		syncapi.OpValidatePassword:    op(current, validatePassword),
		syncapi.OpListTables:          op(current, listTables),
		syncapi.OpGetSchema:           op(current, getSchema),
		syncapi.OpGetCount:            op(current, getCount),
		syncapi.OpTableExists:         op(current, tableExists),
		syncapi.OpExportRecords:       op(current, exportRecords),
		syncapi.OpImportRecords:       op(current, importRecords),
		syncapi.OpCreateTable:         op(current, createTable),
		syncapi.OpCreateSession:       op(current, createSession),
		syncapi.OpTouchSessions:       op(current, touchSessions),
		syncapi.OpReleaseSessions:     op(current, releaseSessions),
		syncapi.OpGetSession:          op(current, getSession),
		syncapi.OpListSessions:        op(current, listSessions),
		syncapi.OpValidateCode:        op(current, validateCode),
		syncapi.OpUpdateSession:       op(current, updateSession),
		syncapi.OpDeleteSession:       op(current, deleteSession),
		syncapi.OpPendingApprovals:    op(current, pendingApprovals),
		syncapi.OpApprove:             op(current, approve),
		syncapi.OpDeny:                op(current, deny),
		syncapi.OpCreateConnection:    op(current, createConnection),
		syncapi.OpListConnections:     op(current, listConnections),
		syncapi.OpGetConnection:       op(current, getConnection),
		syncapi.OpSetConnectionStatus: op(current, setConnectionStatus),
		syncapi.OpSetConnectionLimits: op(current, setConnectionLimits),
		syncapi.OpRegenerateToken:     op(current, regenerateToken),
		syncapi.OpAddRemote:           op(current, addRemote),
		syncapi.OpListRemotes:         op(current, listRemotes),
		syncapi.OpRunRemote:           op(current, h.runRemote),
		syncapi.OpUpdateRemote:        op(current, updateRemote),
		syncapi.OpDeleteRemote:        op(current, deleteRemote),
		syncapi.OpTransferHistory:     op(current, h.transferHistory),
		syncapi.OpPull:                op(current, h.pull),
		syncapi.OpFollowStatus:        op(current, followStatus),
	}
	for name, o := range liveOperations(current) {
		ops[name] = o
	}
	return ops
}

// op makes an operation of fn, called with the current site (an operation before
// the first Configure fails with site.ErrNotReady).
func op[In, Out any](current site.Current, fn func(ctx context.Context, st *site.Site, in In) (Out, error)) sdk.Operation {
	return sdk.Op(func(ctx context.Context, in In) (Out, error) {
		st, err := current()
		if err != nil {
			var zero Out
			return zero, err
		}
		return fn(ctx, st, in)
	})
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

// done is the answer of the operations that answer true once they did it.
func done(err error) (bool, error) { return err == nil, err }

// invalid makes err an invalid_input error.
func invalid(err error) error { return sdk.Errorf(sdk.CodeInvalidInput, "%v", err) }

// connErr gives a connection store's errors their codes.
func connErr(err error) error {
	switch {
	case errors.Is(err, connection.ErrNotFound):
		return sdk.Errorf(syncapi.CodeNotFound, "%v", err)
	case errors.Is(err, connection.ErrInvalidStatus):
		return invalid(err)
	case errors.Is(err, connection.ErrStillExpired):
		return sdk.Errorf(syncapi.CodeStillExpired, "%v", err)
	}
	return err
}

// tableErr gives an unknown table its code.
func tableErr[T any](v T, err error) (T, error) {
	if errors.Is(err, catalog.ErrUnknownTable) {
		return v, sdk.Errorf(syncapi.CodeUnknownTable, "%v", err)
	}
	return v, err
}

// importErr makes what is wrong with an import's input invalid_input.
func importErr(err error) error {
	for _, e := range []error{importer.ErrStrategyNotApplicable, importer.ErrNoKeyDefault, importer.ErrUnknownColumn, importer.ErrMalformedBatch, catalog.ErrUnknownTable} {
		if errors.Is(err, e) {
			return invalid(err)
		}
	}
	return err
}

// sessionErr gives an unknown session or approval its code.
func sessionErr(err error) error {
	if errors.Is(err, session.ErrNotFound) {
		return sdk.Errorf(syncapi.CodeNotFound, "%s", strings.TrimSpace(err.Error()))
	}
	return err
}

// seconds is n seconds (0 and less: none).
func seconds(n int) time.Duration { return time.Duration(max(n, 0)) * time.Second }
