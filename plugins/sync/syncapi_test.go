package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

func TestAnotherPluginUsesSyncThroughTheSDK(t *testing.T) {
	s := seeded(t, siteOptions{report: true})
	code, body := testsupport.Get(t, s.url+"/fiberkit/sync-report/tables")
	if code != 200 || !strings.Contains(body, `"name":"customers"`) {
		t.Fatalf("tables through the SDK: %d %s", code, body)
	}
	code, body = testsupport.Get(t, s.url+"/fiberkit/sync-report/code")
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

// A disabled Sync refuses everything: its WebSocket and the SDK calls of other
// modules.
func TestDisabledSyncRefusesEverything(t *testing.T) {
	s := seeded(t, siteOptions{report: true})
	code := s.newCode(t).Code
	// The config file turns Sync off.
	s.disableSync(t)
	_, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.url, "http")+"/fiberkit/sync/websocket?code="+code, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("websocket of a disabled module: %v %v", err, resp)
	}
	if status, body := testsupport.Get(t, s.url+"/fiberkit/sync-report/tables"); status != http.StatusServiceUnavailable || !strings.Contains(body, "module_disabled") {
		t.Fatalf("SDK call to a disabled Sync: %d %s", status, body)
	}
}
