package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func getBody(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAnotherPluginUsesSyncThroughTheSDK(t *testing.T) {
	s := seeded(t, siteOptions{report: true})
	code, body := getBody(t, s.url+"/fiberkit/sync-report/tables")
	if code != 200 || !strings.Contains(body, `"name":"customers"`) {
		t.Fatalf("tables through the SDK: %d %s", code, body)
	}
	code, body = getBody(t, s.url+"/fiberkit/sync-report/code")
	var sess struct{ Code, Owner string }
	_ = json.Unmarshal([]byte(body), &sess)
	if code != 200 || sess.Owner != "plugin:sync-report#report" {
		t.Fatalf("code through the SDK: %d %s", code, body)
	}
	c, err := client.Connect(context.Background(), s.url, sess.Code, client.Options{})
	if err != nil {
		t.Fatalf("the plugin's code: %v", err)
	}
	c.Close()
}

func TestDisabledSyncRefusesEverything(t *testing.T) {
	s := seeded(t, siteOptions{report: true})
	code := s.newCode(t).Code
	// The config file turns Sync off.
	cfg, _ := os.ReadFile(s.cfg)
	if err := os.WriteFile(s.cfg, []byte(strings.Replace(string(cfg), "enabled: true\n    settings", "enabled: false\n    settings", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := s.kit.Module("sync")
		if !st.Enabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sync still enabled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/fiberkit/sync/websocket?code="+code, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("websocket of a disabled module: %v %v", err, resp)
	}
	if status, body := getBody(t, s.url+"/fiberkit/sync-report/tables"); status != http.StatusServiceUnavailable || !strings.Contains(body, "module_disabled") {
		t.Fatalf("SDK call to a disabled Sync: %d %s", status, body)
	}
}
