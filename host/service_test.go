package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/sdk"
)

func TestPluginCallsAnotherThroughTheHost(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b", "off"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	out, err := s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"b","Op":"whoami"}`))
	if err != nil {
		t.Fatal(err)
	}
	var seen sdk.Caller
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if seen.Plugin != "a" || seen.User != "" {
		t.Fatalf("b saw caller %+v, want plugin a", seen)
	}
	_, err = s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"off","Op":"whoami"}`))
	if !errors.Is(err, sdk.ErrModuleDisabled) {
		t.Fatalf("calling a disabled module: %v, want ErrModuleDisabled", err)
	}
	_, err = s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"nope","Op":"whoami"}`))
	if !errors.Is(err, sdk.ErrUnknownModule) {
		t.Fatalf("calling an unknown module: %v, want ErrUnknownModule", err)
	}
	_, err = s.kit.Call(ctx, "tester", "b", "no-such-op", nil)
	if !errors.Is(err, sdk.ErrUnknownOperation) {
		t.Fatalf("unknown operation: %v, want ErrUnknownOperation", err)
	}
	// The host app calling directly is seen as its user.
	out, err = s.kit.Call(ctx, "alice", "b", "whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	seen = sdk.Caller{}
	_ = json.Unmarshal(out, &seen)
	if seen.User != "alice" || seen.Plugin != "" {
		t.Fatalf("direct call seen as %+v", seen)
	}
}

// An operation whose manifest lists its callers answers only those modules (and
// the host app's own code); any other module is refused before it is reached.
func TestOperationCallersListedInTheManifest(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	out, err := s.kit.Call(ctx, "tester", "a", "call", []byte(`{"Target":"b","Op":"whoami-guarded"}`))
	if err != nil {
		t.Fatalf("a, a listed caller: %v", err)
	}
	var seen sdk.Caller
	if err := json.Unmarshal(out, &seen); err != nil || seen.Plugin != "a" {
		t.Fatalf("b saw %+v (%v)", seen, err)
	}
	_, err = s.kit.Call(ctx, "tester", "b", "call", []byte(`{"Target":"a","Op":"whoami-guarded"}`))
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), "may not call a.whoami-guarded") {
		t.Fatalf("b, not listed: %v, want ErrForbidden naming the operation", err)
	}
	// Other operations stay open to every module, and the host app may call all.
	if _, err := s.kit.Call(ctx, "tester", "b", "call", []byte(`{"Target":"a","Op":"whoami"}`)); err != nil {
		t.Fatalf("an operation without a callers list: %v", err)
	}
	if _, err := s.kit.Call(ctx, "alice", "a", "whoami-guarded", nil); err != nil {
		t.Fatalf("the host app: %v", err)
	}
}

// A module may turn another on or off (PhoenixKit's enable_system / disable_system)
// only when that module's manifest lists it; whether a module is on, any may ask.
// The host answers these itself: a disabled module has no process to answer.
func TestModulesToggleOthersOnlyWhenListed(t *testing.T) {
	s := startSite(t, kitOptions{ids: []string{"a", "b", "c"}, enabled: []string{"a", "b"}})
	ctx := context.Background()
	call := func(from, target, op string) (string, error) {
		out, err := s.kit.Call(ctx, "tester", from, "call", []byte(`{"Target":"`+target+`","Op":"`+op+`"}`))
		return string(out), err
	}
	if out, err := call("b", "c", "enabled"); err != nil || out != "false" {
		t.Fatalf("b asks whether c is on: %s, %v", out, err)
	}
	if _, err := call("b", "c", "enable_system"); !errors.Is(err, sdk.ErrForbidden) {
		t.Fatalf("b, not listed, enables c: %v", err)
	}
	if out, err := call("a", "c", "enable_system"); err != nil || out != "true" {
		t.Fatalf("a enables c: %s, %v", out, err)
	}
	s.waitState(t, "c", host.StateRunning)
	if out, _ := call("b", "c", "enabled"); out != "true" {
		t.Fatalf("c after enable_system: enabled = %s", out)
	}
	if _, err := call("b", "c", "disable_system"); !errors.Is(err, sdk.ErrForbidden) {
		t.Fatalf("b disables c: %v", err)
	}
	if _, err := call("a", "c", "disable_system"); err != nil {
		t.Fatalf("a disables c: %v", err)
	}
	s.waitState(t, "c", host.StateDisabled)
	// The host app's own code may always.
	if _, err := s.kit.Call(ctx, "alice", "c", "enable_system", nil); err != nil {
		t.Fatalf("the host app enables c: %v", err)
	}
	s.waitState(t, "c", host.StateRunning)
}

// The audit log records the plugin that wrote an entry, whatever actor it claims.
func TestPluginAuditActorIsThePlugin(t *testing.T) {
	s := startSite(t, kitOptions{enabled: []string{"tm"}})
	ctx := context.Background()
	for _, actor := range []string{"admin:alice", ""} {
		in, _ := json.Marshal(map[string]string{"Action": "probe", "Actor": actor})
		if _, err := s.kit.Call(ctx, "u", "tm", "audit", in); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT actor FROM fiberkit_audit WHERE action = 'probe' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	actors, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"plugin:tm for admin:alice", "plugin:tm"}
	if strings.Join(actors, "|") != strings.Join(want, "|") {
		t.Fatalf("audit actors %q, want %q", actors, want)
	}
}
