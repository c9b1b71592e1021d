package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
	"github.com/fiberkit/fiberkit/sdk"
)

// The operations on the sending side's settings, code sessions and approvals.

func config(ctx context.Context, st *site.Site, _ struct{}) (syncapi.Config, error) {
	sessions, err := st.Sessions.List(ctx)
	if err != nil {
		return syncapi.Config{}, err
	}
	return syncapi.Config{Enabled: st.Settings.Enabled(), IncomingMode: st.IncomingMode(),
		PasswordSet: st.Settings.SecretSet("incoming_password"), ActiveSessions: len(sessions)}, nil
}

func (h handlers) setIncomingMode(ctx context.Context, st *site.Site, in syncapi.ModeRequest) (bool, error) {
	switch in.Mode {
	case session.AutoAccept, session.RequireApproval, session.RequirePassword, session.DenyAll:
	default:
		return false, sdk.Errorf(sdk.CodeInvalidInput, "incoming mode %q (want %s, %s, %s or %s)", in.Mode,
			session.AutoAccept, session.RequireApproval, session.RequirePassword, session.DenyAll)
	}
	return done(h.setSettings(ctx, st, map[string]string{"incoming_mode": in.Mode}))
}

// setPassword sets the incoming password; "" clears it (the seed's
// set_incoming_password(nil)): the host clears a secret set to "".
func (h handlers) setPassword(ctx context.Context, st *site.Site, in syncapi.PasswordRequest) (bool, error) {
	return done(h.setSettings(ctx, st, map[string]string{"incoming_password": in.Password}))
}

// configuredWait bounds how long a settings operation waits for the module to be
// configured with what it saved.
const configuredWait = 10 * time.Second

// setSettings saves changes through the host and waits until the module runs with
// them (the host configures it with the new revision), so what the caller does
// next — validate_password, a receiver's connection — sees them. The change is
// saved even when the wait runs out.
func (h handlers) setSettings(ctx context.Context, st *site.Site, changes map[string]string) error {
	if err := st.Host.SetSettings(ctx, changes); err != nil {
		return err
	}
	_, rev, err := st.Host.Settings(ctx)
	if err != nil {
		return fmt.Errorf("read settings back: %w", err)
	}
	wait := time.NewTimer(configuredWait)
	defer wait.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cur, err := h.current(); err == nil && cur.Revision >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait.C:
			h.log.Warn("settings saved, but the module was not configured with them in time", "revision", rev)
			return nil
		case <-tick.C:
		}
	}
}

func validatePassword(_ context.Context, st *site.Site, in syncapi.PasswordRequest) (bool, error) {
	return st.Settings.SecretMatches("incoming_password", in.Password), nil
}

func createSession(ctx context.Context, st *site.Site, in syncapi.HandleRequest) (syncapi.Session, error) {
	o := owner(ctx, in.Handle)
	sess, code, err := st.Sessions.Create(ctx, "send", o)
	if err != nil {
		return syncapi.Session{}, err
	}
	return syncapi.Session{ID: sess.ID, Code: code, Owner: o, URL: st.Public, LeaseSeconds: int(time.Until(sess.LeaseUntil).Seconds())}, nil
}

func touchSessions(ctx context.Context, st *site.Site, in syncapi.HandleRequest) (bool, error) {
	return done(st.Sessions.Touch(ctx, owner(ctx, in.Handle)))
}

func releaseSessions(ctx context.Context, st *site.Site, in syncapi.HandleRequest) (bool, error) {
	return done(st.Sessions.ReleaseOwner(ctx, owner(ctx, in.Handle)))
}

func getSession(ctx context.Context, st *site.Site, in syncapi.SessionRef) (session.Session, error) {
	sess, err := st.Sessions.Get(ctx, in.ID)
	if errors.Is(err, session.ErrNotFound) {
		return sess, sdk.Errorf(syncapi.CodeNotFound, "no session %s", in.ID)
	}
	return sess, err
}

func listSessions(ctx context.Context, st *site.Site, _ struct{}) ([]session.Session, error) {
	return st.Sessions.List(ctx)
}

func validateCode(ctx context.Context, st *site.Site, in syncapi.CodeRequest) (syncapi.CodeValidation, error) {
	_, err := st.Sessions.Validate(ctx, in.Code)
	switch {
	case errors.Is(err, session.ErrInvalidCode):
		return syncapi.CodeValidation{Valid: false, Error: wire.ErrInvalidCode}, nil
	case errors.Is(err, session.ErrAlreadyUsed):
		return syncapi.CodeValidation{Valid: false, Error: wire.ErrAlreadyUsed}, nil
	case err != nil:
		return syncapi.CodeValidation{}, err
	}
	return syncapi.CodeValidation{Valid: true}, nil
}

func updateSession(ctx context.Context, st *site.Site, in syncapi.UpdateSessionRequest) (bool, error) {
	switch in.Status {
	case session.StatusPending, session.StatusConnected, session.StatusTransferring, session.StatusDone:
	default:
		return false, sdk.Errorf(sdk.CodeInvalidInput, "status %q (want pending, connected, transferring or done)", in.Status)
	}
	return done(sessionErr(st.Sessions.Update(ctx, in.ID, in.Status, in.Progress)))
}

func deleteSession(ctx context.Context, st *site.Site, in syncapi.SessionRef) (bool, error) {
	return done(st.Sessions.Delete(ctx, in.ID))
}

func pendingApprovals(ctx context.Context, st *site.Site, _ struct{}) ([]session.Approval, error) {
	return st.Sessions.Pending(ctx)
}

func approve(ctx context.Context, st *site.Site, in syncapi.ApprovalRef) (bool, error) {
	return done(sessionErr(st.Sessions.Approve(ctx, in.ID, owner(ctx, ""))))
}

func deny(ctx context.Context, st *site.Site, in syncapi.ApprovalRef) (bool, error) {
	return done(sessionErr(st.Sessions.Deny(ctx, in.ID, owner(ctx, ""))))
}
