package electric

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/shapelog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// The response headers of Electric's HTTP API.
const (
	HeaderHandle   = "electric-handle"
	HeaderOffset   = "electric-offset"
	HeaderSchema   = "electric-schema"
	HeaderUpToDate = "electric-up-to-date"
	HeaderCursor   = "electric-cursor"
)

// ExposeHeaders is the Access-Control-Expose-Headers value a browser's client
// needs to read the protocol's headers across origins.
const ExposeHeaders = "electric-cursor, electric-handle, electric-offset, electric-schema, electric-up-to-date, etag"

// The Cache-Control values, as Electric sends them: an initial (offset -1) answer
// is kept long (a new handle comes with a 409 and the client busts caches), later
// pages a minute, live answers seconds.
const (
	CacheInitial = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746"
	CachePage    = "public, max-age=60, stale-while-revalidate=300"
	CacheLive    = "public, max-age=5, stale-while-revalidate=5"
	CacheRefetch = "public, max-age=60, must-revalidate"
	CacheNever   = "no-store"
)

// Response is an HTTP response: status, headers and body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Respond turns a poll's result into the response to req: 200 with the messages
// (and an up-to-date control message when the shape is up to date), 409 with the
// new handle and a must-refetch when the requested handle is gone, 304 when
// ifNoneMatch is the response's ETag. schema is the electric-schema header, sent
// on non-live responses.
func Respond(req Request, res live.PollResult, schema, ifNoneMatch string) Response {
	h := http.Header{}
	h.Set("Access-Control-Expose-Headers", ExposeHeaders)
	h.Set("Vary", "Authorization, Cookie")
	h.Set(HeaderHandle, res.Handle)
	if res.MustRefetch {
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", CacheRefetch)
		return Response{Status: http.StatusConflict, Header: h, Body: []byte(`[{"headers":{"control":"must-refetch"}}]`)}
	}
	offset := WireOffset(res.Offset)
	h.Set(HeaderOffset, offset)
	h.Set("Content-Type", "application/json")
	switch {
	case req.Poll.Live:
		h.Set("Cache-Control", CacheLive)
		h.Set(HeaderCursor, NextCursor(req.Cursor, time.Now()))
	case req.Initial:
		h.Set("Cache-Control", CacheInitial)
	default:
		h.Set("Cache-Control", CachePage)
	}
	if !req.Poll.Live {
		h.Set(HeaderSchema, schema)
	}
	if res.UpToDate {
		h.Set(HeaderUpToDate, "true")
	}
	from := req.Poll.Offset
	if from == "" {
		from = syncapi.OffsetBeginning
	}
	etag := `"` + res.Handle + ":" + from + ":" + offset + `"`
	h.Set("ETag", etag)
	if ifNoneMatch != "" && etagMatches(ifNoneMatch, etag) {
		h.Del("Content-Type")
		return Response{Status: http.StatusNotModified, Header: h}
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range res.Messages {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, _ := json.Marshal(m.Message)
		buf.Write(b)
	}
	if res.UpToDate {
		if len(res.Messages) > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(`{"headers":{"control":"up-to-date"}}`)
	}
	buf.WriteByte(']')
	return Response{Status: http.StatusOK, Header: h, Body: buf.Bytes()}
}

// etagMatches reports whether an If-None-Match value names etag (a list, W/ weak
// tags, or *).
func etagMatches(inm, etag string) bool {
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag || `"`+t+`"` == etag {
			return true
		}
	}
	return false
}

// ErrorResponse is the response to a request that cannot be served: status and
// {"message": …, "errors": {param: [msg]}}.
func ErrorResponse(status int, err error) Response {
	body := map[string]any{"message": err.Error()}
	if br, ok := err.(*BadRequest); ok && br.Param != "" {
		body["errors"] = map[string][]string{br.Param: {br.Msg}}
	}
	b, _ := json.Marshal(body)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", CacheNever)
	h.Set("Access-Control-Expose-Headers", ExposeHeaders)
	return Response{Status: status, Header: h, Body: b}
}

// WireOffset is a poll's offset as the client is given it: the beginning of a log
// is 0_0 (the client sends -1 only to start afresh).
func WireOffset(o string) string {
	if o == "" || o == syncapi.OffsetBeginning {
		return "0_0"
	}
	return o
}

// LastSeenLSN is the up-to-date message's global_last_seen_lsn for a stream at
// offset o. Electric's client resumes a server-sent event stream from
// "<global_last_seen_lsn>_0", so this is one past the commit LSN of o: that offset
// lies after every entry sent (ops of a transaction are numbered from 1, and no
// commit record is one byte after another) and before every later one.
func LastSeenLSN(o string) string {
	off, err := shapelog.ParseOffset(o)
	if err != nil || off == shapelog.Start {
		return "0"
	}
	return strconv.FormatUint(off.LSN+1, 10)
}

// cursorEpoch and cursorInterval are Electric's: a live response's cursor is the
// end of the current 20-second interval since 2024-10-09, in seconds.
var cursorEpoch = time.Date(2024, 10, 9, 0, 0, 0, 0, time.UTC)

const cursorInterval = int64(LongPollWait / time.Second)

// NextCursor is the electric-cursor of a live response at now: the end of the
// current interval, in seconds since Electric's epoch, so that a CDN which keys on
// the cursor query parameter never serves one live response twice across intervals.
// When the client already sent that cursor (two live requests in one interval),
// it is moved on by a random number of intervals (up to an hour), as Electric does,
// so the next request's URL differs.
func NextCursor(prev string, now time.Time) string {
	secs := int64(now.Sub(cursorEpoch) / time.Second)
	next := (secs + cursorInterval - 1) / cursorInterval * cursorInterval
	if p, err := strconv.ParseInt(prev, 10, 64); err == nil && p >= next {
		next = p + (1+rand.Int64N(3600/cursorInterval))*cursorInterval
	}
	return strconv.FormatInt(next, 10)
}
