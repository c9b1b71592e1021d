package main_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/internal/testsupport"
)

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
