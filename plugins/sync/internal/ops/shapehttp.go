package ops

import (
	"context"
	"net/http"

	"github.com/fiberkit/fiberkit/plugins/sync/electric"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
)

// shapeHTTP is the shape_http operation: one request of Electric's HTTP API for a
// shape the caller's endpoint chose, answered as HTTP parts (the head, then body
// chunks). What the client got wrong, a table the excluded_tables setting names,
// and live sync being off are answered as HTTP responses (400, 403, 503), so that
// every endpoint serving shapes answers them alike.
func shapeHTTP(current site.Current) sdk.StreamOperation {
	return sdk.StreamOp(func(ctx context.Context, req syncapi.ShapeHTTPRequest, send func(syncapi.ShapeHTTPPart) error) error {
		st, err := current()
		if err != nil {
			return err
		}
		reply := func(status int, err error) error {
			r := electric.ErrorResponse(status, err)
			if err := send(syncapi.ShapeHTTPPart{Status: r.Status, Header: r.Header}); err != nil {
				return err
			}
			return send(syncapi.ShapeHTTPPart{Body: r.Body})
		}
		if st.Live == nil {
			return reply(http.StatusServiceUnavailable, liveOff(st))
		}
		if err := excludedShape(st, req.Shape); err != nil {
			return reply(http.StatusForbidden, err)
		}
		return liveErr(electric.Serve(ctx, st.Live, st.Pool, req, send))
	})
}
