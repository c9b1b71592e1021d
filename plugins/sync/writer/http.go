package writer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
)

// MaxBody is the largest request body Handler reads (1 MiB).
const MaxBody = 1 << 20

// Response is the body of a successful write: the transaction's id, a number as
// TanStack DB's awaitTxId wants it ({ txid } from an onInsert/onUpdate/onDelete
// handler), to wait for in the shape stream's headers.txids.
type Response struct {
	Txid int64 `json:"txid"`
}

// ErrorResponse is the body of a refused write. Error is "invalid" (400),
// "unauthenticated" (401), "forbidden" (403), "conflict" (409), "too_large" (413),
// "unsupported_media_type" (415), "method_not_allowed" (405) or "internal" (500, the
// cause logged, not sent). Mutation names the mutation at fault, when one is.
type ErrorResponse struct {
	Error    string        `json:"error"`
	Message  string        `json:"message"`
	Mutation *MutationInfo `json:"mutation,omitempty"`
}

// MutationInfo names a mutation in an ErrorResponse.
type MutationInfo struct {
	Index int            `json:"index"`
	Type  string         `json:"type,omitempty"`
	Table string         `json:"table,omitempty"`
	Key   map[string]any `json:"key,omitempty"`
}

// Handler serves writes over HTTP: a POST of a JSON body in the format Parse reads
// (Content-Type application/json, at most MaxBody bytes) is applied by w, and the
// answer is 200 with a Response ({"txid": 123}) or an ErrorResponse with the status
// its class gives. caller turns the request into the context Apply and the rules see
// (who is writing — from a session or a token); an error from it is 401. A nil caller
// uses the request's context.
func Handler(w *Writer, caller func(r *http.Request) (context.Context, error)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			reply(rw, http.StatusMethodNotAllowed, ErrorResponse{Error: "method_not_allowed", Message: "only POST"})
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			reply(rw, http.StatusUnsupportedMediaType, ErrorResponse{Error: "unsupported_media_type", Message: "the body must be application/json"})
			return
		}
		ctx := r.Context()
		if caller != nil {
			c, err := caller(r)
			if err != nil {
				reply(rw, http.StatusUnauthorized, ErrorResponse{Error: "unauthenticated", Message: err.Error()})
				return
			}
			ctx = c
		}
		body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxBody))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				reply(rw, http.StatusRequestEntityTooLarge, ErrorResponse{Error: "too_large", Message: "the body is over " + strconv.Itoa(MaxBody) + " bytes"})
				return
			}
			reply(rw, http.StatusBadRequest, ErrorResponse{Error: "invalid", Message: "read the body: " + err.Error()})
			return
		}
		mutations, err := Parse(body)
		if err != nil {
			replyError(ctx, rw, err)
			return
		}
		txid, err := w.Apply(ctx, mutations)
		if err != nil {
			replyError(ctx, rw, err)
			return
		}
		reply(rw, http.StatusOK, Response{Txid: txid})
	})
}

// replyError answers with err's class.
func replyError(ctx context.Context, rw http.ResponseWriter, err error) {
	var resp ErrorResponse
	var me *MutationError
	if errors.As(err, &me) {
		resp.Mutation = &MutationInfo{Index: me.Index, Type: me.Type, Table: me.Table, Key: me.Key}
	}
	status := http.StatusInternalServerError
	switch classOf(err) {
	case ErrInvalid:
		status, resp.Error = http.StatusBadRequest, "invalid"
	case ErrForbidden:
		status, resp.Error = http.StatusForbidden, "forbidden"
	case ErrConflict:
		status, resp.Error = http.StatusConflict, "conflict"
	}
	if status == http.StatusInternalServerError {
		slog.ErrorContext(ctx, "writer: apply", "err", err)
		resp.Error, resp.Message = "internal", "internal error"
		if me != nil {
			resp.Mutation.Key = nil
		}
	} else {
		resp.Message = err.Error()
	}
	reply(rw, status, resp)
}

func reply(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}
