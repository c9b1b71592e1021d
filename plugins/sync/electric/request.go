// Package electric serves live shapes over Electric's HTTP API
// (https://electric-sql.com/docs/api/http), so that @electric-sql/client's
// ShapeStream and Shape sync them unchanged: a request's query becomes a
// live.PollRequest (ParseRequest), a live.PollResult becomes the response — status,
// electric-* headers, caching headers, a JSON array of messages (Respond) — and
// Serve runs both for one request, long-poll or server-sent events.
package electric

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// LongPollWait is how long a live request waits for changes before answering
// up-to-date (Electric's long-poll timeout).
const LongPollWait = 20 * time.Second

// Request is a parsed shape request.
type Request struct {
	// Poll is what to ask the live engine.
	Poll live.PollRequest
	// SSE answers with server-sent events (live_sse, or experimental_live_sse,
	// with live).
	SSE bool
	// Cursor is the cursor the client sent (live requests).
	Cursor string
	// Initial says the request starts from the beginning (offset -1).
	Initial bool
}

// BadRequest is a request that cannot be served as sent; Param names the query
// parameter at fault ("" when none does).
type BadRequest struct {
	Param, Msg string
}

func (e *BadRequest) Error() string {
	if e.Param == "" {
		return e.Msg
	}
	return e.Param + ": " + e.Msg
}

func bad(param, format string, args ...any) *BadRequest {
	return &BadRequest{Param: param, Msg: fmt.Sprintf(format, args...)}
}

var offsetRe = regexp.MustCompile(`^[0-9]+_[0-9]+$`)

// ParseRequest reads a request's query for the shape spec. With clientShape the
// query's where, params[n] and columns fill in those spec leaves empty; whatever
// spec sets the query may repeat but not change (a client never widens a shape it
// was given). replica may be chosen when spec sets none. The query's table, when
// sent, must name spec's table.
func ParseRequest(q url.Values, spec syncapi.ShapeSpec, clientShape bool) (Request, error) {
	var r Request
	if spec.Table == "" {
		return r, bad("", "the endpoint's shape names no table")
	}
	if t := q.Get("table"); t != "" && t != spec.Table && t != spec.Namespace+"."+spec.Table &&
		!(spec.Namespace == "" && t == "public."+spec.Table) {
		return r, bad("table", "this endpoint serves table %q, not %q", spec.Table, t)
	}
	for k := range q {
		if strings.HasPrefix(k, "subset__") {
			return r, bad(k, "subset snapshots are not supported")
		}
	}
	if m := q.Get("log"); m != "" && m != "full" {
		return r, bad("log", "only log=full is supported")
	}

	// The shape: where, params, columns, replica.
	where := q.Get("where")
	params, err := parseParams(q)
	if err != nil {
		return r, err
	}
	cols, err := parseColumns(q.Get("columns"))
	if err != nil {
		return r, err
	}
	switch {
	case spec.Where != "" || !clientShape:
		if q.Has("where") && strings.TrimSpace(where) != strings.TrimSpace(spec.Where) {
			return r, bad("where", "this endpoint's shape has its own where clause; a request may not change it")
		}
		if len(params) > 0 && !slices.Equal(params, spec.Params) {
			return r, bad("params", "this endpoint's shape has its own params; a request may not change them")
		}
	default:
		if where == "" && len(params) > 0 {
			return r, bad("params", "params given without a where clause")
		}
		spec.Where, spec.Params = where, params
	}
	switch {
	case len(cols) == 0:
	case len(spec.Columns) > 0 || !clientShape:
		if !sameSet(cols, spec.Columns) {
			return r, bad("columns", "this endpoint's shape has its own columns; a request may not change them")
		}
	default:
		spec.Columns = cols
	}
	if rep := q.Get("replica"); rep != "" {
		if rep != syncapi.ReplicaDefault && rep != syncapi.ReplicaFull {
			return r, bad("replica", "must be %q or %q", syncapi.ReplicaDefault, syncapi.ReplicaFull)
		}
		switch {
		case spec.Replica == "":
			spec.Replica = rep
		case rep != spec.Replica:
			return r, bad("replica", "this endpoint's shape is replica %q", spec.Replica)
		}
	}

	// The position: offset, handle, live, live_sse.
	offset := q.Get("offset")
	handle := q.Get("handle")
	switch {
	case offset == "" || offset == syncapi.OffsetBeginning:
		offset, r.Initial = syncapi.OffsetBeginning, true
		// A handle with offset -1 only busts caches (Electric's clients add one after a
		// 409): every such request starts afresh.
		handle = ""
	case offset == syncapi.OffsetNow:
		handle = ""
	case !offsetRe.MatchString(offset):
		return r, bad("offset", "%q is not -1, now or <lsn>_<op>", offset)
	case handle == "":
		return r, bad("handle", "required when offset is not -1 or now")
	}
	liveReq, err := boolParam(q, "live")
	if err != nil {
		return r, err
	}
	sse, err := boolParam(q, "live_sse")
	if err != nil {
		return r, err
	}
	if !sse {
		if sse, err = boolParam(q, "experimental_live_sse"); err != nil {
			return r, err
		}
	}
	if sse && !liveReq {
		return r, bad("live_sse", "needs live=true")
	}
	if liveReq && handle == "" && offset == syncapi.OffsetBeginning {
		return r, bad("live", "a live request needs the shape's handle and an offset")
	}
	r.SSE, r.Cursor = sse, q.Get("cursor")
	r.Poll = live.PollRequest{Shape: spec, Handle: handle, Offset: offset, Live: liveReq}
	if liveReq {
		r.Poll.Wait = LongPollWait
	}
	return r, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	switch v := q.Get(name); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, bad(name, "%q is not true or false", v)
	}
}

// parseParams reads params[1]=…&params[2]=… (Electric's exploded object) into
// $1, $2, … in order; the numbers must run from 1 without a gap.
func parseParams(q url.Values) ([]string, error) {
	byN := map[int]string{}
	for k, v := range q {
		if k == "params" {
			return nil, bad("params", "send each as params[n]=value")
		}
		rest, ok := strings.CutPrefix(k, "params[")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(rest, "]")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 || n > 1000 {
			return nil, bad(k, "want params[n] with n from 1")
		}
		byN[n] = v[len(v)-1]
	}
	ns := make([]int, 0, len(byN))
	for n := range byN {
		ns = append(ns, n)
	}
	sort.Ints(ns)
	out := make([]string, len(ns))
	for i, n := range ns {
		if n != i+1 {
			return nil, bad("params", "params[%d] is missing", i+1)
		}
		out[i] = byN[n]
	}
	return out, nil
}

// parseColumns reads a comma-separated column list whose names may be quoted as
// SQL identifiers ("Status-Check", "a,b", "say ""hi""").
func parseColumns(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for i := 0; i <= len(s); {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		var name strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			closed := false
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						name.WriteByte('"')
						i += 2
						continue
					}
					i++
					closed = true
					break
				}
				name.WriteByte(s[i])
				i++
			}
			if !closed {
				return nil, bad("columns", "unterminated quoted name")
			}
			for i < len(s) && s[i] == ' ' {
				i++
			}
		} else {
			j := strings.IndexByte(s[i:], ',')
			if j < 0 {
				j = len(s) - i
			}
			name.WriteString(strings.TrimSpace(s[i : i+j]))
			i += j
		}
		if name.Len() == 0 {
			return nil, bad("columns", "an empty column name")
		}
		out = append(out, name.String())
		if i < len(s) && s[i] != ',' {
			return nil, bad("columns", "a quoted name must be followed by a comma")
		}
		i++
	}
	return out, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
