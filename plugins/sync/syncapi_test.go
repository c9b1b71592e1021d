package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

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
