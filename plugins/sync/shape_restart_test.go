package main_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// An Electric client's handle and offset stay good across a restart of the whole
// host (a new host process on the same database): the next request gets exactly
// the changes made meanwhile, with no refetch.
func TestShapeResumesAfterAHostRestart(t *testing.T) {
	a := startSite(t, siteOptions{})
	a.setLive(t, true)
	a.waitLive(t, true)
	a.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'one'), (2, 'two')`)
	spec := syncapi.ShapeSpec{Table: "items"}
	_, originA := startShapeOrigin(t, a.kit, spec)
	code, h, body := cacheGet(t, originA+"/shape?offset=-1")
	if code != 200 || h.Get("electric-up-to-date") == "" {
		t.Fatalf("initial: %d %s", code, body)
	}
	handle, offset := h.Get("electric-handle"), h.Get("electric-offset")

	// The host goes; writes happen while none runs; a new host starts.
	if err := a.kit.Close(); err != nil {
		t.Fatal(err)
	}
	a.exec(t, `UPDATE items SET v = 'uno' WHERE id = 1; INSERT INTO items VALUES (3, 'three')`)
	b := startSite(t, siteOptions{db: a.db})
	b.liveOffAtEnd(t)
	b.setLive(t, true)
	b.waitLive(t, true)
	_, originB := startShapeOrigin(t, b.kit, spec)
	q := url.Values{"offset": {offset}, "handle": {handle}, "live": {"true"}}
	code, h, body = cacheGet(t, originB+"/shape?"+q.Encode())
	if code != 200 || h.Get("electric-handle") != handle {
		t.Fatalf("after the restart: %d handle %q (was %q) %s", code, h.Get("electric-handle"), handle, body)
	}
	var ms []syncapi.Message
	if err := json.Unmarshal([]byte(body), &ms); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		if m.Headers.Operation != "" {
			got = append(got, m.Headers.Operation+" "+m.Key)
		}
	}
	if len(got) != 2 || got[0] != `update "public"."items"/"1"` || got[1] != `insert "public"."items"/"3"` {
		t.Fatalf("after the restart: %v", got)
	}
}
