package main_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gofiber/fiber/v2"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/browsertest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
)

// demoApp serves the kit from a second Fiber app whose auth middleware takes the
// user from an X-Demo-User header (the test's stand-in for a session), as a host
// app's own auth would set Locals(host.UserLocal).
func demoApp(t *testing.T, kit *host.Kit) string {
	t.Helper()
	app := fiber.New(host.FiberConfig())
	app.Use(func(c *fiber.Ctx) error {
		if u := c.Get("X-Demo-User"); u != "" {
			c.Locals(host.UserLocal, u)
		}
		return c.Next()
	})
	kit.Mount(app)
	return testsupport.Serve(t, app)
}

// waitText waits up to 20 s for the text of sel in tab to contain want.
func waitText(t *testing.T, tab context.Context, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tab, 2*time.Second)
		err := chromedp.Run(ctx, chromedp.Text(sel, &got, chromedp.ByQuery))
		cancel()
		if err == nil && strings.Contains(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %q, want it to contain %q", sel, got, want)
}

// The todo example: the real @electric-sql/client keeps each user's list live in
// the browser, writes go through the write path. A todo added in one tab appears in
// the other tab of the same user, not in another user's; ticking it in the second
// shows in the first; another user cannot touch it.
func TestTodoPageSyncsBetweenTabsThroughElectricClient(t *testing.T) {
	s := startSite(t, siteOptions{todo: true})
	s.liveOffAtEnd(t)
	s.setLive(t, true)
	s.waitLive(t, true)
	testsupport.Eventually(t, "the todo module running", func() bool {
		st, _ := s.kit.Module("todo")
		return st.State == host.StateRunning
	})
	url := demoApp(t, s.kit) + "/fiberkit/todo/"

	ann1 := browsertest.New(t, map[string]any{"X-Demo-User": "ann"})
	ann2 := browsertest.New(t, map[string]any{"X-Demo-User": "ann"})
	bob := browsertest.New(t, map[string]any{"X-Demo-User": "bob"})
	for _, tab := range []context.Context{ann1, ann2, bob} {
		if err := chromedp.Run(tab, chromedp.Navigate(url)); err != nil {
			t.Fatal(err)
		}
		waitText(t, tab, "#status", "0 todos · live")
	}

	title := `water the <b>plants</b>`
	if err := chromedp.Run(ann1, chromedp.SendKeys("#title", title, chromedp.ByQuery), chromedp.Click("#add button", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ann2, "#list", title)
	waitText(t, ann2, "#status", "1 todo · live")
	var bold int
	if err := chromedp.Run(ann2, chromedp.Evaluate(`document.querySelectorAll('#list b').length`, &bold)); err != nil || bold != 0 {
		t.Fatalf("the title was rendered as HTML (%d <b> elements, %v)", bold, err)
	}

	if err := chromedp.Run(ann2, chromedp.Click(`#list li input[type=checkbox]`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var done bool
		if err := chromedp.Run(ann1, chromedp.Evaluate(`!!document.querySelector('#list li.done')`, &done)); err == nil && done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ticking the todo in one tab did not show in the other")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var done bool
	if err := s.pool.QueryRow(context.Background(), `SELECT done FROM todos WHERE owner = 'ann'`).Scan(&done); err != nil || !done {
		t.Fatalf("the database: done %v %v", done, err)
	}

	// Bob sees none of it, and cannot delete Ann's todo through the write path.
	time.Sleep(300 * time.Millisecond)
	waitText(t, bob, "#status", "0 todos · live")
	var id string
	if err := s.pool.QueryRow(context.Background(), `SELECT id::text FROM todos WHERE owner = 'ann'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	body := `[{"type":"delete","original":{"id":"` + id + `","owner":"ann"},"syncMetadata":{"relation":["public","todos"]}}]`
	req, _ := http.NewRequest("POST", url+"write", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Demo-User", "bob")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob deleting ann's todo: %d", resp.StatusCode)
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM todos`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d todos after bob's refused delete (%v)", n, err)
	}
	// Without a user, neither the page nor the shape answers.
	if code, _ := testsupport.Get(t, url+"shape?offset=-1"); code != http.StatusUnauthorized {
		t.Fatalf("the shape without a user: %d", code)
	}
	browsertest.Screenshot(t, ann1, "todo.png")
}
