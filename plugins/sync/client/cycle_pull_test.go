package client

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/host"
	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// senderSite runs a real sending site — a host with the Sync module built for the
// tests, incoming connections auto-accepted — whose database first runs setup. It
// returns the site and a function making a new transfer code on it.
func senderSite(t *testing.T, setup string) (*testsupport.Site, func() string) {
	t.Helper()
	dir := t.TempDir()
	manifest, err := os.ReadFile("../../../module.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := strings.Replace(string(manifest), "executable: bin/fiberkit-sync",
		"executable: "+testsupport.Binary(t, "github.com/fiberkit/fiberkit/plugins/sync"), 1)
	if err := os.WriteFile(filepath.Join(dir, "module.yaml"), []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fiberkit.yaml")
	body := "modules:\n  sync:\n    enabled: true\n    settings:\n      incoming_mode: auto_accept\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	s := testsupport.StartSite(t, func(url string) host.Config {
		return host.Config{ConfigFile: cfg, Manifests: []string{filepath.Join(dir, "module.yaml")},
			InsecureDevAdmin: true, PublicURL: url, HealthInterval: 200 * time.Millisecond}
	})
	testsupport.Exec(t, testsupport.Pool(t, s.DB), setup)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := s.Kit.Module("sync"); st.State == host.StateRunning {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("sync module %s: %s", st.State, st.LastError)
		}
	}
	newCode := func() string {
		out, err := s.Kit.Call(context.Background(), "admin", "sync", "create_session", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var sess struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(out, &sess); err != nil || sess.Code == "" {
			t.Fatalf("create_session: %s (%v)", out, err)
		}
		return sess.Code
	}
	return s, newCode
}

// pagilaCycle is pagila's store ↔ staff cycle in small — store.manager_staff_id →
// staff and staff.store_id → store, NOT NULL and not deferrable — with customer
// depending on store. Both sites hold it; the sender has more.
const pagilaCycle = `
CREATE TABLE store (store_id serial PRIMARY KEY, manager_staff_id int NOT NULL, name text NOT NULL);
CREATE TABLE staff (staff_id serial PRIMARY KEY, store_id int NOT NULL, name text);
CREATE TABLE customer (customer_id serial PRIMARY KEY, store_id int NOT NULL REFERENCES store, name text);
INSERT INTO store VALUES (1, 1, 'old store');
INSERT INTO staff VALUES (1, 1, 'old staff');
ALTER TABLE staff ADD FOREIGN KEY (store_id) REFERENCES store ON UPDATE CASCADE ON DELETE RESTRICT;
ALTER TABLE store ADD FOREIGN KEY (manager_staff_id) REFERENCES staff ON UPDATE CASCADE ON DELETE RESTRICT;
SELECT setval('store_store_id_seq', 1), setval('staff_staff_id_seq', 1);`

// The sender's new rows: store 1 now managed by new staff 2; new store 2 managed by
// new staff 3, who works at store 2 (new rows needing each other across the cycle);
// staff 1 renamed; 3000 more stores and their managers, so several batches of each
// table are staged; a customer of store 2.
const pagilaCycleSender = pagilaCycle + `
INSERT INTO staff VALUES (2, 1, 'second'), (3, 1, 'third');
UPDATE store SET manager_staff_id = 2, name = 'store one' WHERE store_id = 1;
BEGIN;
ALTER TABLE staff DROP CONSTRAINT staff_store_id_fkey;
INSERT INTO staff SELECT i + 10, i + 10, 'staff ' || i FROM generate_series(0, 3000) i;
INSERT INTO store VALUES (2, 3, 'store two');
INSERT INTO store SELECT i + 10, i + 10, 'store ' || i FROM generate_series(0, 3000) i;
UPDATE staff SET store_id = 2 WHERE staff_id = 3;
UPDATE staff SET name = 'renamed' WHERE staff_id = 1;
ALTER TABLE staff ADD FOREIGN KEY (store_id) REFERENCES store ON UPDATE CASCADE ON DELETE RESTRICT;
COMMIT;
INSERT INTO customer VALUES (1, 2, 'customer of store two');`

// TestCyclicForeignKeysIntoExistingTables pulls, from a real sender, new rows of a
// cycle of NOT NULL, non-deferrable foreign keys into tables the receiver already
// has. Imported one table at a time, neither table's new rows could land first;
// TransferAll imports the cycle's tables together, with every strategy.
func TestCyclicForeignKeysIntoExistingTables(t *testing.T) {
	sender, newCode := senderSite(t, pagilaCycleSender)
	for _, tc := range []struct {
		strategy               syncapi.Strategy
		store, staff           [3]int // created, updated, skipped
		firstStore, firstStaff string
	}{
		{syncapi.Skip, [3]int{3002, 0, 1}, [3]int{3003, 0, 1}, "1:1:old store", "1:1:old staff"},
		{syncapi.Overwrite, [3]int{3002, 1, 0}, [3]int{3003, 1, 0}, "1:2:store one", "1:1:renamed"},
		{syncapi.Merge, [3]int{3002, 1, 0}, [3]int{3003, 1, 0}, "1:2:store one", "1:1:renamed"},
	} {
		t.Run(string(tc.strategy), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			pool := receiverSite(t, ctx)
			mustExec(t, pool, pagilaCycle)
			c, err := Connect(ctx, sender.URL, newCode(), Options{Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			results, err := c.TransferAll(ctx, pool, TransferAllOptions{Tables: []string{"customer", "staff", "store"},
				Strategy: tc.strategy, TransferOptions: TransferOptions{BatchSize: 1000}})
			if err != nil {
				t.Fatalf("pull: %v (%+v)", err, results)
			}
			for table, want := range map[string][3]int{"store": tc.store, "staff": tc.staff, "customer": {1, 0, 0}} {
				r := results[table]
				if got := [3]int{r.Created, r.Updated, r.Skipped}; got != want || r.Failed != 0 || r.Error != "" {
					first := ""
					if len(r.Errors) > 0 {
						first = r.Errors[0].Reason
					}
					t.Errorf("%s: created, updated, skipped = %v, want %v; failed %d (first: %s), error %q", table, got, want, r.Failed, first, r.Error)
				}
			}
			counts := rowsOf(t, pool, `SELECT (SELECT count(*) FROM store) || ' ' || (SELECT count(*) FROM staff) || ' ' || (SELECT count(*) FROM customer)`)
			if want := []string{"3003 3004 1"}; !reflect.DeepEqual(counts, want) {
				t.Errorf("store, staff, customer rows = %q, want %q", counts, want)
			}
			want := []string{tc.firstStore, "2:3:store two", "10:10:store 0"}
			if got := rowsOf(t, pool, `SELECT store_id || ':' || manager_staff_id || ':' || name FROM store WHERE store_id IN (1, 2, 10) ORDER BY store_id`); !reflect.DeepEqual(got, want) {
				t.Errorf("stores %q, want %q", got, want)
			}
			want = []string{tc.firstStaff, "2:1:second", "3:2:third"}
			if got := rowsOf(t, pool, `SELECT staff_id || ':' || store_id || ':' || name FROM staff WHERE staff_id <= 3 ORDER BY staff_id`); !reflect.DeepEqual(got, want) {
				t.Errorf("staff %q, want %q", got, want)
			}
			// The sequences were moved past the imported keys (the importers were finished).
			if got := rowsOf(t, pool, `SELECT nextval('store_store_id_seq')::text`); got[0] != "3011" {
				t.Errorf("store's next id %s, want 3011", got[0])
			}
		})
	}
}
