// Package syncweb serves live shapes from the host app's own Fiber routes over
// Electric's HTTP API, so that @electric-sql/client's ShapeStream and Shape sync
// them: mount a handler behind the app's own auth middleware,
//
//	app.Get("/shapes/todos", auth, syncweb.Shape(kit, syncapi.ShapeSpec{Table: "todos"}))
//	app.Get("/shapes/mine", auth, syncweb.ShapeFunc(kit, func(c *fiber.Ctx) (syncapi.ShapeSpec, error) {
//		return syncapi.ShapeSpec{Table: "todos", Where: "owner = $1", Params: []string{userOf(c)}}, nil
//	}))
//
// Each request is the Sync module's shape_http operation, called with
// Kit.CallStream as the user the auth middleware put in Locals(host.UserLocal).
package syncweb

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Shape serves spec, a static shape: a request's where, params[n] and columns
// are refused (400) unless identical to spec's.
//
// Its responses are public (shared caches may keep them): spec is the same for
// every caller. For a shape made per user, use ShapeFunc.
func Shape(kit *host.Kit, spec syncapi.ShapeSpec) fiber.Handler {
	return handler(kit, func(*fiber.Ctx) (syncapi.ShapeSpec, error) { return spec, nil }, false, false)
}

// ShapeFunc serves the shape fn returns for each request (one per signed-in
// user, say). An error from fn that is a *fiber.Error answers with its code; any
// other answers 400 with its message.
//
// Its responses are Cache-Control: private (syncapi.ShapeHTTPRequest.Private): the
// URL is the same for every user, the rows are not.
func ShapeFunc(kit *host.Kit, fn func(c *fiber.Ctx) (syncapi.ShapeSpec, error)) fiber.Handler {
	return handler(kit, fn, false, true)
}

// ClientShapeFunc is ShapeFunc with syncapi.ShapeHTTPRequest.ClientShape: the
// request's where, params[n] and columns fill in those the returned spec leaves
// empty (never changing those it sets).
func ClientShapeFunc(kit *host.Kit, fn func(c *fiber.Ctx) (syncapi.ShapeSpec, error)) fiber.Handler {
	return handler(kit, fn, true, true)
}

func handler(kit *host.Kit, fn func(c *fiber.Ctx) (syncapi.ShapeSpec, error), clientShape, private bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		spec, err := fn(c)
		if err != nil {
			var fe *fiber.Error
			if errors.As(err, &fe) {
				return err
			}
			return c.Status(http.StatusBadRequest).JSON(fiber.Map{"message": err.Error()})
		}
		req := syncapi.ShapeHTTPRequest{Shape: spec, ClientShape: clientShape, Private: private, Query: map[string][]string{},
			IfNoneMatch: c.Get(fiber.HeaderIfNoneMatch)}
		c.Context().QueryArgs().VisitAll(func(k, v []byte) {
			req.Query[string(k)] = append(req.Query[string(k)], string(v))
		})
		payload, err := json.Marshal(req)
		if err != nil {
			return err
		}
		user, _ := c.Locals(host.UserLocal).(string)
		// The call outlives the handler (the body is written after it returns):
		// it ends when the body is written or the client is gone.
		ctx, cancel := context.WithCancel(context.Background())
		s, err := kit.CallStream(ctx, user, syncapi.ModuleID, syncapi.OpShapeHTTP, payload)
		if err != nil {
			cancel()
			return shapeError(c, err)
		}
		var head syncapi.ShapeHTTPPart
		b, err := s.Recv()
		if err == nil {
			err = json.Unmarshal(b, &head)
		}
		if err != nil {
			s.Close()
			cancel()
			return shapeError(c, err)
		}
		c.Status(head.Status)
		for k, vs := range head.Header {
			c.Response().Header.Del(k)
			for _, v := range vs {
				c.Response().Header.Add(k, v)
			}
		}
		if head.Header["Content-Type"] == nil || head.Header["Content-Type"][0] != "text/event-stream" {
			// A long-poll: one body, sent with its length.
			defer cancel()
			defer s.Close()
			var body []byte
			for {
				b, err := s.Recv()
				if errors.Is(err, io.EOF) {
					return c.Send(body)
				}
				var p syncapi.ShapeHTTPPart
				if err == nil {
					err = json.Unmarshal(b, &p)
				}
				if err != nil {
					return shapeError(c, err)
				}
				body = append(body, p.Body...)
			}
		}
		// Server-sent events: the head at once, then each chunk as it comes.
		c.Context().Response.ImmediateHeaderFlush = true
		c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
			defer cancel()
			defer s.Close()
			for {
				b, err := s.Recv()
				if err != nil {
					return // the operation ended
				}
				var p syncapi.ShapeHTTPPart
				if json.Unmarshal(b, &p) != nil {
					return
				}
				if _, err := w.Write(p.Body); err != nil {
					return
				}
				if err := w.Flush(); err != nil {
					return // the client went: Close cancels the operation
				}
			}
		})
		return nil
	}
}

func shapeError(c *fiber.Ctx, err error) error {
	if errors.Is(err, io.EOF) {
		err = errors.New("shape_http ended without a response")
	}
	status, body := syncapi.ShapeErrorResponse(err)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(body)
}
