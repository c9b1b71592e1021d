package electric

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/live"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func TestTypeOf(t *testing.T) {
	for in, want := range map[string]string{
		"integer":                     `{"type":"int4"}`,
		"bigint[]":                    `{"type":"int8","dims":1}`,
		"text[][]":                    `{"type":"text","dims":2}`,
		"numeric(12,2)":               `{"type":"numeric","precision":12,"scale":2}`,
		"numeric":                     `{"type":"numeric"}`,
		"character varying(20)":       `{"type":"varchar","max_length":20}`,
		"character(3)":                `{"type":"bpchar","length":3}`,
		"timestamp(3) with time zone": `{"type":"timestamptz","precision":3}`,
		"timestamp without time zone": `{"type":"timestamp"}`,
		"interval day to second":      `{"type":"interval","fields":"DAY TO SECOND"}`,
		"bit(5)":                      `{"type":"bit","length":5}`,
		"public.mood":                 `{"type":"mood"}`,
		"double precision":            `{"type":"float8"}`,
		"boolean":                     `{"type":"bool"}`,
		"jsonb":                       `{"type":"jsonb"}`,
	} {
		b, _ := json.Marshal(TypeOf(in))
		if string(b) != want {
			t.Errorf("TypeOf(%q) = %s, want %s", in, b, want)
		}
	}
}

func TestParseColumns(t *testing.T) {
	got, err := parseColumns(`id, "Status-Check","a,b" ,"say ""hi""",title`)
	if err != nil || !slices.Equal(got, []string{"id", "Status-Check", "a,b", `say "hi"`, "title"}) {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{`"open`, `a,,b`, `"a"b`} {
		if _, err := parseColumns(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseRequestNeverWidensAGivenShape(t *testing.T) {
	spec := syncapi.ShapeSpec{Table: "todos", Where: "owner = $1", Params: []string{"ann"}, Columns: []string{"id", "title"}}
	for _, q := range []string{
		"offset=-1&where=true",
		"offset=-1&where=owner+%3D+%241&params[1]=bob",
		"offset=-1&columns=id,title,secret",
		"offset=-1&table=other",
		"offset=-1&subset__limit=1",
		"offset=1_2",
		"offset=x&handle=h",
		"offset=-1&live=true",
		"offset=1_2&handle=h&live_sse=true",
		"offset=-1&params[2]=x",
	} {
		v, _ := url.ParseQuery(q)
		for _, client := range []bool{false, true} {
			if _, err := ParseRequest(v, spec, client); err == nil {
				t.Errorf("%s (client shape %v) accepted", q, client)
			}
		}
	}
	v, _ := url.ParseQuery("offset=1_2&handle=h&live=true&live_sse=true&where=owner+%3D+%241&params[1]=ann&columns=title,id&replica=full&cursor=5")
	r, err := ParseRequest(v, spec, false)
	if err != nil || !r.SSE || r.Cursor != "5" || r.Poll.Wait != LongPollWait || r.Poll.Shape.Replica != "full" || r.Poll.Handle != "h" {
		t.Fatalf("%+v %v", r, err)
	}
	v, _ = url.ParseQuery("offset=-1&handle=old&where=done&columns=id")
	r, err = ParseRequest(v, syncapi.ShapeSpec{Table: "todos"}, true)
	if err != nil || r.Poll.Shape.Where != "done" || !slices.Equal(r.Poll.Shape.Columns, []string{"id"}) || r.Poll.Handle != "" || !r.Initial {
		t.Fatalf("client shape: %+v %v", r, err)
	}
}

func TestNextCursor(t *testing.T) {
	now := cursorEpoch.Add(1005 * time.Second)
	if c := NextCursor("", now); c != "1020" {
		t.Fatalf("cursor %s", c)
	}
	if c := NextCursor("1020", now); c == "1020" || len(c) < 4 {
		t.Fatalf("a repeated cursor is not moved on: %s", c)
	}
}

func TestRespond(t *testing.T) {
	req := Request{Initial: true, Poll: live.PollRequest{Offset: "-1"}}
	res := live.PollResult{Handle: "h", Offset: "-1", UpToDate: true}
	r := Respond(req, res, "{}", "")
	if r.Status != 200 || string(r.Body) != `[{"headers":{"control":"up-to-date"}}]` || r.Header.Get(HeaderOffset) != "0_0" || r.Header.Get("ETag") != `"h:-1:0_0"` {
		t.Fatalf("%d %s %v", r.Status, r.Body, r.Header)
	}
	if r := Respond(req, res, "{}", `W/"h:-1:0_0"`); r.Status != 304 || len(r.Body) != 0 {
		t.Fatalf("If-None-Match: %d", r.Status)
	}
	if r := Respond(req, live.PollResult{Handle: "new", MustRefetch: true}, "", ""); r.Status != 409 || r.Header.Get(HeaderHandle) != "new" {
		t.Fatalf("must-refetch: %d %v", r.Status, r.Header)
	}
	if LastSeenLSN("-1") != "0" || LastSeenLSN("0_4") != "1" || LastSeenLSN("100_3") != "101" {
		t.Fatal("LastSeenLSN")
	}
}

func TestPrivateCache(t *testing.T) {
	for in, want := range map[string]string{
		CacheInitial: "private, max-age=604800, stale-while-revalidate=2629746",
		CacheLive:    "private, max-age=5, stale-while-revalidate=5",
		CacheRefetch: "private, max-age=60, must-revalidate",
	} {
		if got := PrivateCache(in); got != want {
			t.Errorf("PrivateCache(%q) = %q, want %q", in, got, want)
		}
	}
}
