package host_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/browsertest"
)

// The module list stays live without a reload: the state, the restart count, the
// toggle button (label and the value it posts) and "locked by config" all follow the
// module's status.
func TestAdminModuleListLiveStatusInBrowser(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "fiberkit.yaml")
	writeConfig(t, cfg, "modules:\n  tm:\n    settings:\n      mode: a\n")
	s := startSite(t, kitOptions{configFile: cfg})
	ctx := browsertest.New(t, map[string]any{"Authorization": adminAuthHeader})
	waitFor := func(what, js string) {
		t.Helper()
		var ok bool
		if err := chromedp.Run(ctx, chromedp.Poll(js, &ok, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil || !ok {
			var html string
			_ = chromedp.Run(ctx, chromedp.OuterHTML(`#module-tm`, &html, chromedp.ByQuery))
			t.Fatalf("page never showed %s: %v\n%s", what, err, html)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(s.url+"/admin/fiberkit/"), chromedp.WaitVisible(`#toggle-tm`, chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	waitFor("the Enable button", `document.querySelector('#toggle-tm').textContent === 'Enable'`)

	// Enabled from elsewhere (code, another admin, another replica).
	if err := s.kit.SetEnabled(context.Background(), "tm", true, "test"); err != nil {
		t.Fatal(err)
	}
	waitFor("running with a Disable button", `(() => {
		const tr = document.querySelector('#module-tm');
		const b = tr.querySelector('#toggle-tm');
		return tr.querySelector('.state-running') !== null && b.textContent === 'Disable' &&
			b.getAttribute('aria-pressed') === 'true' &&
			tr.querySelector('form[data-field=toggle] input[name=enabled]').value === 'false' &&
			!tr.querySelector('[data-field=open]').hidden;
	})()`)

	// The plugin dies and is restarted.
	st := s.waitState(t, "tm", host.StateRunning)
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("the restart count", `(() => {
		const r = document.querySelector('#module-tm [data-field=restarts]');
		return !r.hidden && r.textContent === 'restarted 1×';
	})()`)

	// The config file takes over the enabled flag.
	writeConfig(t, cfg, "modules:\n  tm:\n    enabled: false\n")
	waitFor("locked by config, without a toggle", `(() => {
		const tr = document.querySelector('#module-tm');
		const l = tr.querySelector('[data-field=locked]');
		return !l.hidden && l.textContent.includes('off') && l.textContent.includes('locked by config') &&
			tr.querySelector('form[data-field=toggle]').hidden && tr.querySelector('[data-field=open]').hidden &&
			tr.querySelector('[data-field=state]').textContent === 'disabled';
	})()`)
	browsertest.Screenshot(t, ctx, "admin-modules-locked.png")

	// And released again.
	writeConfig(t, cfg, "modules:\n  tm:\n    settings:\n      mode: a\n")
	waitFor("the toggle back", `(() => {
		const tr = document.querySelector('#module-tm');
		return tr.querySelector('[data-field=locked]').hidden && !tr.querySelector('form[data-field=toggle]').hidden;
	})()`)
}
