package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/fasthttp/websocket"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/host/manifest"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/sdk"
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

// kitCaller lets a test call Sync's operations as the host app does, through the
// typed syncapi handle another module uses.
type kitCaller struct{ s *site }

func (k kitCaller) Call(ctx context.Context, target, op string, in, out any) error {
	payload, err := json.Marshal(in)
	if err != nil {
		return err
	}
	res, err := k.s.kit.Call(ctx, "admin", target, op, payload)
	if err != nil || out == nil || len(res) == 0 {
		return err
	}
	return json.Unmarshal(res, out)
}

// TestSyncAPICoversEveryOperation drives every operation through its typed call,
// with the seed's shapes where they differ from ours (create_table's
// {columns, primary_key}, export_records' default page of 100, set_password("")
// clearing the password).
func TestSyncAPICoversEveryOperation(t *testing.T) {
	t.Setenv("FIBERKIT_SECRET_KEY", "sync-api-test-key-for-remote-tokens")
	s := seeded(t, siteOptions{unlocked: true})
	ctx := context.Background()
	m := syncapi.Via(kitCaller{s})
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// On and off (answered by the host), then settings.
	if on, err := m.Enabled(ctx); !on || err != nil {
		t.Fatalf("enabled: %v %v", on, err)
	}
	must("disable", m.DisableSystem(ctx))
	if on, err := m.Enabled(ctx); on || err != nil {
		t.Fatalf("enabled after disable_system: %v %v", on, err)
	}
	if _, err := m.Config(ctx); !errors.Is(err, sdk.ErrModuleDisabled) {
		t.Fatalf("config of a disabled Sync: %v", err)
	}
	s.waitState(t, host.StateDisabled)
	must("enable", m.EnableSystem(ctx))
	s.waitState(t, host.StateRunning)
	must("set mode", m.SetIncomingMode(ctx, "require_password"))
	must("set password", m.SetPassword(ctx, "s3cret"))
	cfg, err := m.Config(ctx)
	must("config", err)
	if !cfg.Enabled || cfg.IncomingMode != "require_password" || !cfg.PasswordSet {
		t.Fatalf("config %+v", cfg)
	}
	if ok, err := m.ValidatePassword(ctx, "s3cret"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if ok, _ := m.ValidatePassword(ctx, "nope"); ok {
		t.Fatal("wrong password validated")
	}
	must("clear password", m.SetPassword(ctx, ""))
	if cfg, _ := m.Config(ctx); cfg.PasswordSet {
		t.Fatal(`set_password("") left a password set`)
	}
	if err := m.SetIncomingMode(ctx, "sometimes"); !errors.Is(err, sdk.ErrInvalidInput) {
		t.Fatalf("unknown mode: %v", err)
	}

	// Tables.
	tables, err := m.ListTables(ctx, syncapi.ListTablesRequest{})
	must("list tables", err)
	counts := map[string]int64{}
	for _, tb := range tables {
		counts[tb.Name] = tb.Rows
	}
	if counts["customers"] != 2000 || counts["order_items"] != 15000 {
		t.Fatalf("exact counts %v", counts)
	}
	if ok, err := m.TableExists(ctx, "customers"); !ok || err != nil {
		t.Fatalf("table exists: %v %v", ok, err)
	}
	if ok, _ := m.TableExists(ctx, "nope"); ok {
		t.Fatal("a missing table exists")
	}
	sch, err := m.GetSchema(ctx, "products")
	must("schema", err)
	if len(sch.PrimaryKey) != 1 || len(sch.Columns) < 5 {
		t.Fatalf("schema %+v", sch)
	}
	if n, err := m.GetCount(ctx, "products"); n != 300 || err != nil {
		t.Fatalf("count %d %v", n, err)
	}
	page, err := m.ExportRecords(ctx, syncapi.RecordsRequest{Table: "customers"})
	must("export", err)
	if len(page.Records) != 100 || !page.HasMore {
		t.Fatalf("export_records without a limit: %d records, has_more %v (want the seed's 100)", len(page.Records), page.HasMore)
	}
	if _, err := m.GetCount(ctx, "nope"); !errors.Is(err, &sdk.Error{Code: syncapi.CodeUnknownTable}) {
		t.Fatalf("count of a missing table: %v", err)
	}
	// The seed's create_table(name, {columns, primary_key}).
	var seedShape syncapi.CreateTableRequest
	must("decode", json.Unmarshal([]byte(`{"table":"users_copy","schema":{"columns":[
		{"name":"id","type":"bigint","nullable":false,"primary_key":true},
		{"name":"email","type":"character varying","nullable":false}],"primary_key":["id"]}}`), &seedShape))
	_, err = m.CreateTable(ctx, seedShape)
	must("create table (seed shape)", err)
	one, two := "a@example.com", "b@example.com"
	res, err := m.ImportRecords(ctx, syncapi.ImportRequest{Table: "users_copy", Strategy: syncapi.Skip,
		Records: []map[string]*string{{"id": ptr("1"), "email": &one}, {"id": ptr("2"), "email": &two}}})
	must("import", err)
	if res.Created != 2 {
		t.Fatalf("import %+v", res)
	}

	// Sessions.
	sess, err := m.CreateSession(ctx, "api-test")
	must("create session", err)
	if v, err := m.ValidateCode(ctx, sess.Code); !v.Valid || err != nil {
		t.Fatalf("validate code: %+v %v", v, err)
	}
	got, err := m.GetSession(ctx, sess.ID)
	must("get session", err)
	if got.ID != sess.ID || got.Owner != sess.Owner {
		t.Fatalf("session %+v, made %+v", got, sess)
	}
	list, err := m.ListSessions(ctx)
	must("list sessions", err)
	if len(list) == 0 {
		t.Fatal("no sessions listed")
	}
	must("update session", m.UpdateSession(ctx, syncapi.UpdateSessionRequest{ID: sess.ID, Status: "transferring", Progress: map[string]any{"table": "x"}}))
	if got, _ := m.GetSession(ctx, sess.ID); got.Status != "transferring" {
		t.Fatalf("after update: %+v", got)
	}
	must("delete session", m.DeleteSession(ctx, sess.ID))
	if v, _ := m.ValidateCode(ctx, sess.Code); v.Valid || v.Error != "invalid_code" {
		t.Fatalf("a deleted session's code: %+v", v)
	}
	if a, err := m.PendingApprovals(ctx); len(a) != 0 || err != nil {
		t.Fatalf("pending approvals %v %v", a, err)
	}
	if err := m.Approve(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, &sdk.Error{Code: syncapi.CodeNotFound}) {
		t.Fatalf("approve an unknown request: %v", err)
	}
	if err := m.Deny(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, &sdk.Error{Code: syncapi.CodeNotFound}) {
		t.Fatalf("deny an unknown request: %v", err)
	}

	// Connections.
	c, err := m.CreateConnection(ctx, syncapi.CreateConnectionRequest{Name: "staging", Limits: syncapi.Limits{ExcludedTables: []string{"public.orders"}}})
	must("create connection", err)
	if c.Token == "" || c.Status != "pending" || len(c.Limits.ExcludedTables) != 1 || c.Limits.ExcludedTables[0] != "orders" {
		t.Fatalf("connection %+v", c)
	}
	must("approve connection", m.SetConnectionStatus(ctx, c.ID, "active"))
	must("limits", m.SetConnectionLimits(ctx, c.ID, syncapi.Limits{MaxDownloads: 3}))
	gc, err := m.GetConnection(ctx, c.ID)
	must("get connection", err)
	if gc.Status != "active" || gc.Limits.MaxDownloads != 3 {
		t.Fatalf("connection after changes %+v", gc)
	}
	if cs, err := m.ListConnections(ctx); len(cs) != 1 || err != nil {
		t.Fatalf("connections %v %v", cs, err)
	}
	rc, err := m.RegenerateToken(ctx, c.ID)
	must("regenerate", err)
	if rc.Token == "" || rc.Token == c.Token {
		t.Fatal("no new token")
	}

	// Remotes (this site pulling from itself is refused by the URL guard, so an
	// address elsewhere; it is never dialled).
	r, err := m.AddRemote(ctx, syncapi.AddRemoteRequest{Name: "prod", URL: "https://prod.example.com", Token: rc.Token})
	if err != nil {
		t.Fatalf("add remote: %v", err)
	}
	if rs, err := m.ListRemotes(ctx); len(rs) != 1 || err != nil {
		t.Fatalf("remotes %v %v", rs, err)
	}
	upd, err := m.UpdateRemote(ctx, syncapi.UpdateRemoteRequest{ID: r.ID, Schedule: syncapi.Schedule{Tables: []string{"products"}, Strategy: "overwrite", Interval: 3600}})
	must("update remote", err)
	if upd.Interval != 3600 || upd.Strategy != "overwrite" {
		t.Fatalf("remote after update %+v", upd)
	}
	must("delete remote", m.DeleteRemote(ctx, r.ID))
	if rs, _ := m.ListRemotes(ctx); len(rs) != 0 {
		t.Fatalf("remotes after delete %v", rs)
	}
	if _, err := m.RunRemote(ctx, r.ID); err == nil {
		t.Fatal("ran a deleted remote")
	}
	if _, err := m.TransferHistory(ctx, syncapi.HistoryRequest{Limit: 10}); err != nil {
		t.Fatalf("history: %v", err)
	}
}

func ptr(s string) *string { return &s }

// Sync's manifest keeps the operations that change settings or connections, or
// write data into the site, to the host app: another module reading tables or
// making a code is fine, one pulling data into the site or setting the password is
// not (unless the app lists it).
func TestManifestKeepsWritingOperationsToTheHost(t *testing.T) {
	data, err := os.ReadFile("../../module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "executable: bin/fiberkit-sync", "executable: "+testsupport.Binary(t, pluginPackage), 1))
	m, err := manifest.Parse(data, "module.yaml", ".", "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{syncapi.OpEnableSystem, syncapi.OpDisableSystem, syncapi.OpPull, syncapi.OpSetPassword, syncapi.OpSetIncomingMode, syncapi.OpCreateConnection,
		syncapi.OpImportRecords, syncapi.OpCreateTable, syncapi.OpApprove, syncapi.OpAddRemote, syncapi.OpRunRemote} {
		if m.MayCall(op, "sync-report") {
			t.Errorf("any module may call %s", op)
		}
	}
	for _, op := range []string{syncapi.OpListTables, syncapi.OpCreateSession, syncapi.OpGetSchema, syncapi.OpExportRecords} {
		if !m.MayCall(op, "sync-report") {
			t.Errorf("modules may not call %s", op)
		}
	}
}
