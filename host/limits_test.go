package host_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

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
