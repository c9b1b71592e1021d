package main_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// maskedShop creates customers and orders with distinctive values on s.
func maskedShop(t *testing.T, s *site) {
	t.Helper()
	s.exec(t, `CREATE TABLE customers (id bigint PRIMARY KEY, email text, name text, phone varchar(30), password_hash text NOT NULL, note text);
		CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, qty int NOT NULL DEFAULT 1, memo text);
		INSERT INTO customers SELECT 7700000 + i, 'zq-mail-' || i || '@origin.test', 'Zqname' || i, '+7 (912) 55-' || lpad(i::text, 3, '0'),
			'zqhash$' || i, 'plain-note-' || i FROM generate_series(1, 40) i;
		INSERT INTO orders SELECT 8800000 + i, 7700000 + (i % 40) + 1, i, 'plain-memo-' || i FROM generate_series(1, 120) i`)
}

// originals are the values of masked columns that must never cross: their
// text, and the real keys in binary form (int8, as COPY binary writes them).
func originals() [][]byte {
	out := [][]byte{[]byte("zq-mail-"), []byte("@origin.test"), []byte("Zqname"), []byte("zqhash$")}
	for i := 1; i <= 40; i++ {
		// Whole phones: a fake keeps the shape, and 5 of its digits may match by chance.
		out = append(out, []byte(fmt.Sprint(7700000+i)), binary.BigEndian.AppendUint64(nil, uint64(7700000+i)),
			[]byte(fmt.Sprintf("+7 (912) 55-%03d", i)))
	}
	return out
}

// noLeak fails if any original value is in data, and checks data holds the
// unmasked columns (so the capture is plain bytes, not compressed).
func noLeak(t *testing.T, what string, data []byte) {
	t.Helper()
	if !bytes.Contains(data, []byte("plain-note-17")) || !bytes.Contains(data, []byte("plain-memo-")) {
		t.Fatalf("%s: the capture (%d bytes) lacks the unmasked values: not plain bytes?", what, len(data))
	}
	for _, o := range originals() {
		if i := leak(data, o); i >= 0 {
			t.Errorf("%s: an original value %q crossed the wire: …%q…", what, o, data[max(0, i-40):min(len(data), i+40)])
		}
	}
}

// leak returns where o is in data, or -1. A number written in decimal counts
// only as a whole number: a hashed key's 19 digits may hold a real key's 7 by
// chance.
func leak(data, o []byte) int {
	digit := func(i int) bool { return i >= 0 && i < len(data) && data[i] >= '0' && data[i] <= '9' }
	number := len(bytes.Trim(o, "0123456789")) == 0
	for from := 0; ; {
		i := bytes.Index(data[from:], o)
		if i < 0 {
			return -1
		}
		i += from
		if !number || !digit(i-1) && !digit(i+len(o)) {
			return i
		}
		from = i + 1
	}
}

// expectMasked checks b's customers hold exactly what the sender's masks make of
// a's rows, and that every order still finds its customer by the hashed key.
func expectMasked(t *testing.T, a, b *site, rules mask.Set) {
	t.Helper()
	ctx := context.Background()
	key, err := mask.LoadKey(ctx, a.pool, "")
	if err != nil {
		t.Fatal(err)
	}
	sch, err := catalog.GetSchema(ctx, a.pool, "customers")
	if err != nil {
		t.Fatal(err)
	}
	mt, err := rules.Resolve(ctx, a.pool, sch, key)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]*string{}
	rows, err := a.pool.Query(ctx, `SELECT id::text, email, name, phone, password_hash, note FROM customers`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, email, name, phone, ph, note string
		if err := rows.Scan(&id, &email, &name, &phone, &ph, &note); err != nil {
			t.Fatal(err)
		}
		r := map[string]*string{"id": &id, "email": &email, "name": &name, "phone": &phone, "password_hash": &ph}
		mt.ApplyText(r)
		want[note] = r
	}
	rows.Close()
	got, err := b.pool.Query(ctx, `SELECT id::text, email, name, phone, password_hash, note FROM customers`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for got.Next() {
		var id, email, name, phone, ph, note string
		if err := got.Scan(&id, &email, &name, &phone, &ph, &note); err != nil {
			t.Fatal(err)
		}
		w := want[note]
		if w == nil || *w["id"] != id || *w["email"] != email || *w["name"] != name || *w["phone"] != phone || *w["password_hash"] != ph {
			t.Fatalf("received %s %s %s %s %s for %s, want the masks of the originals", id, email, name, phone, ph, note)
		}
		n++
	}
	got.Close()
	if n != 40 {
		t.Fatalf("%d customers received", n)
	}
	var orders, joined int
	if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id)`).Scan(&orders, &joined); err != nil {
		t.Fatal(err)
	}
	if orders != 120 || joined != 120 {
		t.Fatalf("%d orders received, %d join their customer by the hashed key", orders, joined)
	}
}

// A permanent connection's masks apply inside the sender's export: pulling with
// COPY binary, COPY text and the records API through a proxy that keeps every
// byte, no original value of a masked column (nor a real hashed key) crosses;
// the receiver holds the masked values, orders join customers on the hashed key,
// the sender's history records the masks, and rules a column cannot take are
// refused when saved and when a table is sent.
func TestMaskedColumnsNeverLeaveTheSender(t *testing.T) {
	ctx := context.Background()
	a := startSite(t, siteOptions{})
	maskedShop(t, a)
	rules, err := mask.Parse(`customers.id: hash, customers.email: fake email, customers.name: fake name, customers.phone: fake phone, orders.customer_id: hash`)
	if err != nil {
		t.Fatal(err)
	}
	c := a.newConnection(t, connection.Limits{Masks: rules}, true)
	// The secret column password_hash is masked by default (NOT NULL: a placeholder).
	applied := mask.Merge(mask.Set{{Table: "customers", Column: "password_hash", Kind: "fixed", Value: "redacted"}}, rules)
	capt := testsupport.NewProxy(t, a.url, testsupport.ProxyOptions{Capture: true})
	dial := func() *client.Client {
		cl, err := client.Connect(ctx, capt.URL(), "", client.Options{Token: c.Token})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		return cl
	}

	// COPY binary: the receiver creates the tables (same types).
	b := startSite(t, siteOptions{})
	cl := dial()
	for _, table := range []string{"customers", "orders"} {
		if _, err := cl.Transfer(ctx, b.pool, table, client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone, BatchSize: 7}); err != nil {
			t.Fatalf("binary pull of %s: %v", table, err)
		}
	}
	expectMasked(t, a, b, applied)
	// The receiver's checksum compare sees the tables equal.
	listed, err := cl.ListTables(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states, err := cl.Compare(ctx, b.pool, listed)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.State != "match" {
			t.Errorf("compare after a masked pull: %+v", s)
		}
	}

	// COPY text: other local types make the receiver ask for text.
	b2 := startSite(t, siteOptions{})
	b2.exec(t, `CREATE TABLE customers (id bigint PRIMARY KEY, email varchar(200), name varchar(200), phone text, password_hash varchar(100) NOT NULL, note varchar(100));
		CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint REFERENCES customers, qty int NOT NULL DEFAULT 1, memo varchar(100))`)
	cl2 := dial()
	for _, table := range []string{"customers", "orders"} {
		if _, err := cl2.Transfer(ctx, b2.pool, table, client.TransferOptions{Compression: wire.CompressionNone, Strategy: importer.Overwrite}); err != nil {
			t.Fatalf("text pull of %s: %v", table, err)
		}
	}
	expectMasked(t, a, b2, applied)

	// The records API, page by page.
	for _, table := range []string{"customers", "orders"} {
		for off := 0; ; off += 25 {
			p, err := cl2.FetchRecords(ctx, table, off, 25)
			if err != nil {
				t.Fatal(err)
			}
			if !p.HasMore {
				break
			}
		}
	}
	noLeak(t, "binary, text and records pulls", capt.Captured())

	// The sender's history says what was masked.
	var masks []string
	if err := a.pool.QueryRow(ctx, `SELECT masks FROM fiberkit_sync_transfers WHERE direction = 'send' AND table_name = 'customers' ORDER BY id LIMIT 1`).Scan(&masks); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"customers.id: hash", "customers.email: fake email", "customers.password_hash: fixed redacted"} {
		if !strings.Contains(strings.Join(masks, "\n"), want) {
			t.Errorf("history masks %q lack %q", masks, want)
		}
	}

	// Rules a column cannot take are refused when saved, saying why.
	for _, tc := range []struct{ rule, want string }{
		{"orders.qty: fixed abc", `"abc" is not a valid integer`},
		{"orders.qty: fake email", "fake works on text"},
		{"orders.qty: null", "NOT NULL"},
	} {
		r, _ := mask.Parse(tc.rule)
		err := a.call(t, syncapi.OpSetConnectionLimits, syncapi.ConnectionLimitsRequest{ID: c.ID, Limits: connection.Limits{Masks: r}}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "orders.qty (integer)") {
			t.Errorf("saving %q: %v, want a refusal with %q", tc.rule, err, tc.want)
		}
	}
	// The connection page shows the rules and saves them from its form, refusing
	// one its column cannot take with the reason.
	page := "/admin/fiberkit/sync/connections/" + c.ID
	if _, body := testsupport.Get(t, a.url+page); !strings.Contains(body, "customers.email: fake email") {
		t.Errorf("the connection page does not show the rules")
	}
	code, body := adminForm(t, a, page, page+"/limits", url.Values{"masks": {"orders.qty: fake phone"}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "fake works on text") {
		t.Errorf("a bad rule on the page: HTTP %d", code)
	}
	if code, _ := adminForm(t, a, page, page+"/limits", url.Values{"masks": {"customers.name: null\norders.qty: fixed 7"}}); code != http.StatusOK && code != http.StatusSeeOther {
		t.Errorf("saving rules on the page: HTTP %d", code)
	}
	if _, body := testsupport.Get(t, a.url+page); !strings.Contains(body, "orders.qty: fixed 7") {
		t.Errorf("the saved rules are not shown")
	}
	// A rule that fit when saved but no longer does refuses the table when sent:
	// it is not sent unmasked.
	r, _ := mask.Parse("orders.memo: null")
	if err := a.call(t, syncapi.OpSetConnectionLimits, syncapi.ConnectionLimitsRequest{ID: c.ID, Limits: connection.Limits{Masks: r}}, nil); err != nil {
		t.Fatal(err)
	}
	// The receivers' snapshots hold orders: let them go first.
	cl.Close()
	cl2.Close()
	a.exec(t, `SET lock_timeout = '20s'; ALTER TABLE orders ALTER memo SET NOT NULL`)
	before := len(capt.Captured())
	_, err = dial().Transfer(ctx, startSite(t, siteOptions{}).pool, "orders", client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone})
	if err == nil || !strings.Contains(err.Error(), "invalid_mask_rule") && !strings.Contains(err.Error(), "NOT NULL") {
		t.Fatalf("pull with a rule that no longer fits: %v", err)
	}
	if bytes.Contains(capt.Captured()[before:], []byte("plain-memo-")) {
		t.Error("rows were sent despite the refused rule")
	}
}

// A code-based send masks typical secret columns by default and applies the
// site's mask_rules; a rule in mask_rules the table cannot take refuses it.
func TestCodeSendsMaskSecretColumnsByDefault(t *testing.T) {
	ctx := context.Background()
	a := startSite(t, siteOptions{})
	maskedShop(t, a)
	capt := testsupport.NewProxy(t, a.url, testsupport.ProxyOptions{Capture: true})
	pull := func() (*site, error) {
		t.Helper()
		b := startSite(t, siteOptions{})
		cl, err := client.Connect(ctx, capt.URL(), a.newCode(t).Code, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		_, err = cl.Transfer(ctx, b.pool, "customers", client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone})
		return b, err
	}
	b, err := pull()
	if err != nil {
		t.Fatal(err)
	}
	var redacted, mails int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE password_hash = 'redacted'), count(*) FILTER (WHERE email LIKE 'zq-mail-%') FROM customers`).Scan(&redacted, &mails); err != nil {
		t.Fatal(err)
	}
	if redacted != 40 || mails != 40 {
		t.Fatalf("%d password hashes redacted, %d emails as they were (want 40, 40)", redacted, mails)
	}
	if bytes.Contains(capt.Captured(), []byte("zqhash$")) {
		t.Error("a password hash crossed the wire")
	}

	// The site's rules apply to code sends; wait for the plugin to take them.
	if err := a.kit.Settings().Set(ctx, "sync", map[string]string{"mask_rules": "customers.email: hash, *.phone: fake phone"}, "test"); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "mask_rules applied", func() bool {
		b, err := pull()
		if err != nil {
			return false
		}
		var hashed int
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM customers WHERE email ~ '^[0-9a-f]{64}$' AND phone NOT LIKE '+7 (912) 55-%' AND password_hash = 'redacted'`).Scan(&hashed)
		return hashed == 40
	})

	// A site rule the table cannot take refuses the table, with the reason.
	if err := a.kit.Settings().Set(ctx, "sync", map[string]string{"mask_rules": "customers.id: fixed abc"}, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := pull()
		if err != nil {
			if !strings.Contains(err.Error(), "invalid_mask_rule") && !strings.Contains(err.Error(), "primary-key column may only be hashed") {
				t.Fatalf("refused with %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a send with an impossible rule was never refused")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A rule masks its column whichever name a receiver reads the rows by: a rule on
// a partitioned table masks a partition read by its own name, and a rule on a
// partition masks the partitioned table's reads.
func TestMasksFollowPartitions(t *testing.T) {
	ctx := context.Background()
	a := startSite(t, siteOptions{})
	a.exec(t, `CREATE TABLE accounts (id bigint PRIMARY KEY, email text) PARTITION BY RANGE (id);
		CREATE TABLE accounts_low PARTITION OF accounts FOR VALUES FROM (0) TO (100);
		CREATE TABLE accounts_high PARTITION OF accounts FOR VALUES FROM (100) TO (200);
		INSERT INTO accounts SELECT i, 'zq-mail-' || i || '@origin.test' FROM generate_series(1, 150) i;
		CREATE TABLE logins (id bigint PRIMARY KEY, email text) PARTITION BY RANGE (id);
		CREATE TABLE logins_all PARTITION OF logins FOR VALUES FROM (0) TO (1000);
		INSERT INTO logins SELECT i, 'zq-mail-' || i || '@origin.test' FROM generate_series(1, 50) i`)
	rules, err := mask.Parse(`accounts.email: fake email, logins_all.email: fixed hidden`)
	if err != nil {
		t.Fatal(err)
	}
	c := a.newConnection(t, connection.Limits{Masks: rules}, true)
	cl, err := client.Connect(ctx, a.url, "", client.Options{Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, table := range []string{"accounts_low", "accounts_high", "accounts", "logins", "logins_all"} {
		page, err := cl.FetchRecords(ctx, table, 0, 500)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		if len(page.Records) == 0 {
			t.Fatalf("%s: no records", table)
		}
		for _, r := range page.Records {
			if r["email"] == nil {
				t.Fatalf("%s sent NULL for an email masked with a fake or a fixed value", table)
			}
			if strings.Contains(*r["email"], "zq-mail-") {
				t.Fatalf("%s sent the original email %q", table, *r["email"])
			}
		}
	}
	b := startSite(t, siteOptions{})
	if _, err := cl.Transfer(ctx, b.pool, "accounts_high", client.TransferOptions{CreateMissing: true, Compression: wire.CompressionNone}); err != nil {
		t.Fatal(err)
	}
	// Rows 100 to 150, every one with a fake email.
	all := testsupport.Count(t, b.pool, `SELECT count(*) FROM accounts_high`)
	fake := testsupport.Count(t, b.pool, `SELECT count(*) FROM accounts_high WHERE email LIKE '%@example.invalid'`)
	if all != 51 || fake != 51 {
		t.Fatalf("%d rows of accounts_high arrived, %d with a fake email; want 51 and 51", all, fake)
	}
}
