package main_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// hostileValue would run script if a page made markup of it.
const hostileValue = `<img src=x onerror=alert(1)>`

// pageRows reads a live table's rows in tab: each row's cells' text, by the row's
// data-key.
func pageRows(t *testing.T, tab context.Context) map[string][]string {
	t.Helper()
	var rows map[string][]string
	js := `Object.fromEntries(Array.from(document.querySelectorAll('#rows tbody tr')).map(tr =>
		[tr.dataset.key, Array.from(tr.children).map(td => td.textContent)]))`
	if err := chromedp.Run(tab, chromedp.Evaluate(js, &rows)); err != nil {
		t.Fatal(err)
	}
	return rows
}

// rowKey is the key of row id of public.table in a stream.
func rowKey(table, id string) string { return `"public"."` + table + `"/"` + id + `"` }

// jsString is s as a JavaScript string literal.
func jsString(s string) string { return fmt.Sprintf("%q", s) }

// rowJS is a JavaScript expression: the cells' text of the row with key, joined by
// "|" (empty when there is no such row).
func rowJS(key string) string {
	return `(() => { const tr = Array.from(document.querySelectorAll('#rows tbody tr')).find(tr => tr.dataset.key === ` + jsString(key) +
		`); return tr ? Array.from(tr.children).map(td => td.textContent).join('|') : ''; })()`
}

// The admin's shape page: View on the Live page opens it with the snapshot's rows;
// an insert, update and delete in the database show within seconds; a hostile value
// is text; a dropped shape reloads under its new handle; leaving the page ends its
// stream.
func TestLiveShapePageFollowsRows(t *testing.T) {
	s := liveSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, v text, n int)`)
	s.exec(t, `INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, $1, NULL)`, hostileValue)
	// A module's stream makes the shape (and keeps reading it).
	k := s.stream(t, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "items"}})
	first, err := k.until(t, isUpToDate)
	if err != nil {
		t.Fatal(err)
	}
	handle := first[len(first)-1].Handle

	tab := browsertest.New(t, nil)
	pageText(t, tab, s, livePage, "#shapes")
	if err := chromedp.Run(tab, chromedp.Click(`tr[data-handle="`+handle+`"] a.view`, chromedp.ByQuery),
		chromedp.WaitReady(`#rows`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, tab, "snapshot up to date", `document.getElementById('shape-state').textContent.includes('up to date')`, 30*time.Second)
	var loc string
	if err := chromedp.Run(tab, chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(loc, livePage+"/"+handle) {
		t.Fatalf("View opened %s", loc)
	}
	var head []string
	if err := chromedp.Run(tab, chromedp.Evaluate(`Array.from(document.querySelectorAll('#rows thead th')).map(th => th.textContent)`, &head)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(head, ",") != "id,v,n" {
		t.Fatalf("columns %v", head)
	}
	rows := pageRows(t, tab)
	if len(rows) != 3 || strings.Join(rows[rowKey("items", "1")], "|") != "1|one|1" ||
		strings.Join(rows[rowKey("items", "3")], "|") != "3|"+hostileValue+"|null" {
		t.Fatalf("snapshot on the page: %q", rows)
	}
	// The hostile value is text: no element was made of it.
	if evalBool(t, tab, `document.querySelectorAll('#rows img, #rows [onerror]').length > 0`) {
		t.Fatal("a row value became markup")
	}

	// Changes made in the database show within seconds.
	s.exec(t, `INSERT INTO items VALUES (4, 'four', 4)`)
	waitJS(t, tab, "insert", rowJS(rowKey("items", "4"))+` === '4|four|4'`, 10*time.Second)
	s.exec(t, `UPDATE items SET v = 'uno', n = NULL WHERE id = 1`)
	waitJS(t, tab, "update", rowJS(rowKey("items", "1"))+` === '1|uno|null'`, 10*time.Second)
	s.exec(t, `DELETE FROM items WHERE id = 2`)
	waitJS(t, tab, "delete", rowJS(rowKey("items", "2"))+` === ''`, 10*time.Second)
	s.exec(t, `UPDATE items SET v = $1 WHERE id = 4`, hostileValue+"!")
	waitJS(t, tab, "hostile update", rowJS(rowKey("items", "4"))+` === `+jsString("4|"+hostileValue+"!|4"), 10*time.Second)
	if evalBool(t, tab, `document.querySelectorAll('#rows img, #rows [onerror]').length > 0`) {
		t.Fatal("an updated value became markup")
	}
	if got := len(pageRows(t, tab)); got != 3 {
		t.Fatalf("%d rows on the page after insert, update, delete", got)
	}

	// Dropped: the page is told to refetch and reloads under the new handle.
	var was bool
	if err := s.call(t, syncapi.OpDropShape, syncapi.HandleRef{Handle: handle}, &was); err != nil || !was {
		t.Fatalf("drop_shape: %v %v", was, err)
	}
	waitJS(t, tab, "refetch", `document.getElementById('rows').dataset.handle !== `+jsString(handle)+
		` && document.getElementById('shape-state').textContent.includes('3 rows · up to date')`, 30*time.Second)
	var newHandle, notice string
	if err := chromedp.Run(tab, chromedp.Evaluate(`document.getElementById('rows').dataset.handle`, &newHandle),
		chromedp.Text(`#shape-notice`, &notice, chromedp.ByQuery), chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(notice, "replaced") || !strings.HasSuffix(loc, livePage+"/"+newHandle) {
		t.Fatalf("after a drop: notice %q at %s (new handle %s)", notice, loc, newHandle)
	}
	if rows := pageRows(t, tab); strings.Join(rows[rowKey("items", "1")], "|") != "1|uno|null" || len(rows) != 3 {
		t.Fatalf("rows after the refetch: %q", rows)
	}

	// Leaving the page ends its stream: only the module's reader is left.
	subscribers := func() int {
		var shapes []syncapi.ShapeInfo
		if err := s.call(t, syncapi.OpListShapes, struct{}{}, &shapes); err != nil {
			t.Fatal(err)
		}
		for _, sh := range shapes {
			if sh.Handle == newHandle {
				return sh.Subscribers
			}
		}
		return -1
	}
	waitReaders := func(want int, when string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); subscribers() != want; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d readers of the shape %s, want %d", subscribers(), when, want)
			}
		}
	}
	waitReaders(2, "with the page open")
	pageText(t, tab, s, livePage, "#shapes")
	waitReaders(1, "after the page went")

	// A handle no live shape has: the page says so.
	if got := pageText(t, tab, s, livePage+"/no-such-handle", "#shape-missing"); !strings.Contains(got, "no-such-handle") {
		t.Fatalf("unknown handle: %q", got)
	}
}

// A shape page holds at most 10,000 rows: past them the socket says so and stops.
func TestLiveShapeSocketStopsAtTheRowLimit(t *testing.T) {
	s := liveSite(t, siteOptions{})
	s.exec(t, `CREATE TABLE many (id int PRIMARY KEY, v text);
		INSERT INTO many SELECT i, 'v' || i FROM generate_series(1, 10050) i`)
	k := s.stream(t, syncapi.StreamRequest{Shape: syncapi.ShapeSpec{Table: "many"}})
	first, err := k.until(t, isUpToDate)
	if err != nil {
		t.Fatal(err)
	}
	lc := liveSocket(t, s, map[string]any{"op": "hello", "page": "shape"})
	lc.send(t, map[string]any{"op": "subscribe", "handle": first[len(first)-1].Handle})
	head := lc.waitFor(t, "the shape's header", 30*time.Second, func(m map[string]any) bool { return m["type"] == "shape" })
	if fmt.Sprint(head["columns"]) != "[id v]" || fmt.Sprint(head["key"]) != "[id]" || head["table"] != "public.many" {
		t.Fatalf("header %v", head)
	}
	rows := 0
	lc.waitFor(t, "the limit", 60*time.Second, func(m map[string]any) bool {
		if m["type"] == "rows" {
			rows += len(m["changes"].([]any))
		}
		if m["type"] == "error" {
			t.Fatalf("error instead of the limit: %v", m)
		}
		return m["type"] == "limit"
	})
	if rows != 10000 {
		t.Fatalf("%d rows sent before the limit, want 10000", rows)
	}
}

// The sync-report example's /notices page, open in two tabs: both show the rows, and
// a row inserted in the database appears in both, as text.
func TestNoticesPageInTwoTabs(t *testing.T) {
	s := liveSite(t, siteOptions{report: true})
	s.exec(t, `CREATE TABLE notices (id int PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false);
		INSERT INTO notices VALUES (1, 'milk', false)`)
	first, second := browserTabs(t)
	for _, tab := range []context.Context{first, second} {
		if err := chromedp.Run(tab, chromedp.Navigate(s.url+"/fiberkit/sync-report/notices"), chromedp.WaitReady(`#rows`, chromedp.ByQuery)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tab := range []context.Context{first, second} {
		waitJS(t, tab, "the snapshot", `document.getElementById('state').textContent === '1 row · live'`, 30*time.Second)
		if got := strings.Join(pageRows(t, tab)[rowKey("notices", "1")], "|"); got != "1|milk|f" {
			t.Fatalf("snapshot row: %q", got)
		}
	}
	s.exec(t, `INSERT INTO notices VALUES (2, $1, true)`, hostileValue)
	for _, tab := range []context.Context{first, second} {
		waitJS(t, tab, "the inserted row", rowJS(rowKey("notices", "2"))+` === `+jsString("2|"+hostileValue+"|t"), 10*time.Second)
		if evalBool(t, tab, `document.querySelectorAll('#rows img, #rows [onerror]').length > 0`) {
			t.Fatal("a todo's title became markup")
		}
	}
	s.exec(t, `UPDATE notices SET done = true WHERE id = 1; DELETE FROM notices WHERE id = 2`)
	for _, tab := range []context.Context{first, second} {
		waitJS(t, tab, "update and delete", rowJS(rowKey("notices", "1"))+` === '1|milk|t' && `+rowJS(rowKey("notices", "2"))+` === ''`, 10*time.Second)
	}
}
