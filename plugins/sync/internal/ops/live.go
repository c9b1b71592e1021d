package ops

import (
	"context"
	"errors"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// liveOperations are the unary live sync operations.
func liveOperations(current site.Current) sdk.Operations {
	return sdk.Operations{
		syncapi.OpInterrupt:   op(current, withLive(interrupt)),
		syncapi.OpListShapes:  op(current, withLive(listShapes)),
		syncapi.OpDropShape:   op(current, withLive(dropShape)),
		syncapi.OpLiveStatus:  op(current, liveStatus),
		syncapi.OpEnableLive:  op(current, enableLive),
		syncapi.OpDisableLive: op(current, disableLive),
	}
}

// withLive runs fn with the site's live engine, or answers live_disabled.
func withLive[In, Out any](fn func(ctx context.Context, e *live.Engine, in In) (Out, error)) func(context.Context, *site.Site, In) (Out, error) {
	return func(ctx context.Context, st *site.Site, in In) (Out, error) {
		if st.Live == nil {
			var zero Out
			return zero, liveOff(st)
		}
		out, err := fn(ctx, st.Live, in)
		return out, liveErr(err)
	}
}

// excludedShape refuses a shape of a table the excluded_tables setting names: no
// secret table leaves through Sync, live or not.
func excludedShape(st *site.Site, spec syncapi.ShapeSpec) error {
	name := spec.Table
	if spec.Namespace != "" && spec.Namespace != "public" {
		name = spec.Namespace + "." + spec.Table
	}
	if st.Excluded(name) || st.Excluded(spec.Table) {
		return sdk.Errorf(sdk.CodeForbidden, "table %s is excluded from sync (the excluded_tables setting)", name)
	}
	return nil
}

// liveOff is the error of a live operation while live sync is off.
func liveOff(st *site.Site) error {
	if st.LiveNotReady != "" {
		return sdk.Errorf(syncapi.CodeLiveDisabled, "live sync cannot run on this site: %s", st.LiveNotReady)
	}
	return sdk.Errorf(syncapi.CodeLiveDisabled, "live sync is off on this site (setting live, or the enable_live operation)")
}

// liveErr gives a bad shape or offset the invalid_input code, and a stream ended by
// live sync stopping live_disabled.
func liveErr(err error) error {
	var inv *live.InvalidError
	if errors.As(err, &inv) {
		return invalid(inv)
	}
	if errors.Is(err, live.ErrClosed) {
		return sdk.Errorf(syncapi.CodeLiveDisabled, "%v", err)
	}
	return err
}

func interrupt(ctx context.Context, e *live.Engine, m syncapi.ShapeMatch) (int, error) {
	return e.Interrupt(ctx, m)
}

func listShapes(ctx context.Context, e *live.Engine, _ struct{}) ([]syncapi.ShapeInfo, error) {
	return e.Shapes(ctx)
}

func dropShape(ctx context.Context, e *live.Engine, r syncapi.HandleRef) (bool, error) {
	return e.Drop(ctx, r.Handle)
}

func liveStatus(ctx context.Context, st *site.Site, _ struct{}) (syncapi.LiveStatus, error) {
	if st.Live == nil {
		return syncapi.LiveStatus{NotReady: st.LiveNotReady}, nil
	}
	return st.Live.Status(ctx)
}

// enableLive turns the live setting on, once the database can do it; the module
// starts live sync when the host delivers the setting.
func enableLive(ctx context.Context, st *site.Site, _ struct{}) (bool, error) {
	if err := capture.Check(ctx, st.Pool); err != nil {
		var nr *capture.NotReadyError
		if errors.As(err, &nr) {
			return false, sdk.Errorf(syncapi.CodeLiveDisabled, "%v", err)
		}
		return false, err
	}
	return done(st.Host.SetSettings(ctx, map[string]string{"live": "true"}))
}

func disableLive(ctx context.Context, st *site.Site, _ struct{}) (bool, error) {
	return done(st.Host.SetSettings(ctx, map[string]string{"live": "false"}))
}

// Streams returns the Sync module's streaming operations: stream, a shape's
// messages for as long as the caller reads.
func Streams(current site.Current) sdk.Streams {
	return sdk.Streams{
		syncapi.OpShapeHTTP: shapeHTTP(current),
		syncapi.OpStream: sdk.StreamOp(func(ctx context.Context, req syncapi.StreamRequest, send func(syncapi.StreamMessage) error) error {
			st, err := current()
			if err != nil {
				return err
			}
			if st.Live == nil {
				return liveOff(st)
			}
			if err := excludedShape(st, req.Shape); err != nil {
				return err
			}
			return liveErr(st.Live.Stream(ctx, req, send))
		}),
	}
}
