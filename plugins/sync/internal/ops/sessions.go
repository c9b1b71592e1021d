package ops

import (
	"context"
	"errors"
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

func setIncomingMode(ctx context.Context, st *site.Site, in syncapi.ModeRequest) (bool, error) {
	return done(st.Host.SetSettings(ctx, map[string]string{"incoming_mode": in.Mode}))
}

func setPassword(ctx context.Context, st *site.Site, in syncapi.PasswordRequest) (bool, error) {
	if in.Password == "" {
		return false, sdk.Errorf(sdk.CodeInvalidInput, "password must not be empty")
	}
	return done(st.Host.SetSettings(ctx, map[string]string{"incoming_password": in.Password}))
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
