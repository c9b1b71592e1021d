package exporter_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/internal/testsupport"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
)

// A masked table is read as if it held the masked values: batches (text and
// binary), pages of records (text and JSON) and the checksum carry no original
// value of a masked column, a hashed primary key is what rows are ordered and
// resumed by (LastKey is the hashed key), and the checksum is the checksum of a
// table holding the masked rows.
func TestMaskedReads(t *testing.T) {
	ctx := context.Background()
	pool, _ := newDB(t)
	testsupport.Exec(t, pool, `CREATE TABLE customers (id bigint PRIMARY KEY, email text, name varchar(40), phone text, secret text NOT NULL, note text);
		INSERT INTO customers SELECT i, 'orig-mail-' || i || '@real.example', 'Origname' || i, '+1 555 77' || lpad(i::text, 3, '0'), 'origsecret' || i, 'kept' || i
		FROM generate_series(1001, 1060) i`)
	key, _ := mask.DeriveKey("exporter test")
	rules, err := mask.Parse("customers.id: hash, customers.email: fake email, customers.name: fake name, customers.phone: fake phone, customers.secret: fixed hidden")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := exporter.Begin(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close(ctx)
	sch, err := catalog.GetSchema(ctx, snap.Querier(), "customers")
	if err != nil {
		t.Fatal(err)
	}
	mt, err := rules.Resolve(ctx, snap.Querier(), sch, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Mask(ctx, sch, mt); err != nil {
		t.Fatal(err)
	}
	leaks := func(what string, data []byte) {
		t.Helper()
		for _, orig := range []string{"orig-mail-", "Origname", "+1 555 77", "origsecret", "\t1001\t", "\t1030\t"} {
			if bytes.Contains(data, []byte(orig)) {
				t.Errorf("%s holds an original value (%q)", what, orig)
			}
		}
		if !bytes.Contains(data, []byte("kept10")) && !strings.Contains(what, "binary") {
			t.Errorf("%s lacks the unmasked column", what)
		}
	}
	data, rows, batches := exportAll(t, snap, pool, sch, 7, 0)
	if rows != 60 {
		t.Fatalf("%d rows", rows)
	}
	leaks("text batches", append([]byte("\t"), bytes.ReplaceAll(data, []byte("\n"), []byte("\t\n\t"))...))
	for _, b := range batches {
		for _, k := range b.LastKey {
			if strings.HasPrefix(k, "10") && len(k) == 4 {
				t.Errorf("LastKey %v is a real key", b.LastKey)
			}
		}
	}
	// Resuming after a (hashed) LastKey gives the rest, in the same order.
	rest, err := readAll(t, snap, pool, sch, batches[2].LastKey, exporter.StreamOptions{BatchRows: 100}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rest[0].Data, bytes.Join(func() [][]byte {
		var d [][]byte
		for _, b := range batches[3:] {
			d = append(d, b.Data)
		}
		return d
	}(), nil); !bytes.Equal(got, want) {
		t.Errorf("resumed after %v: %d bytes, want %d", batches[2].LastKey, len(got), len(want))
	}
	bin, err := readAll(t, snap, pool, sch, nil, exporter.StreamOptions{BatchRows: 1000}, true)
	if err != nil {
		t.Fatal(err)
	}
	leaks("binary batches", bin[0].Data)
	page, err := snap.Records(ctx, sch, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i, rec := range page.Records {
		for c, v := range rec {
			all = fmt.Appendf(all, "\t%s\t", *v)
			if c == "note" && !strings.HasPrefix(*v, "kept") {
				t.Errorf("note %q", *v)
			}
		}
		// The page's values are what ApplyText makes of the originals.
		if i == 0 {
			var id, email, name, phone, secret, note string
			if err := pool.QueryRow(ctx, `SELECT id::text, email, name, phone, secret, note FROM customers WHERE note = $1`, *rec["note"]).Scan(&id, &email, &name, &phone, &secret, &note); err != nil {
				t.Fatal(err)
			}
			orig := map[string]*string{"id": &id, "email": &email, "name": &name, "phone": &phone, "secret": &secret, "note": &note}
			mt.ApplyText(orig)
			for c, v := range orig {
				if *v != *rec[c] {
					t.Errorf("records %s = %q, ApplyText %q", c, *rec[c], *v)
				}
			}
		}
	}
	leaks("records", all)
	jp, err := snap.RecordsJSON(ctx, sch, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var js []byte
	for _, r := range jp.Records {
		js = append(js, r...)
	}
	leaks("JSON records", bytes.ReplaceAll(js, []byte(`"`), []byte("\t")))
	// The checksum is the one of a table holding the masked rows.
	sum, err := snap.Checksum(ctx, sch)
	if err != nil {
		t.Fatal(err)
	}
	testsupport.Exec(t, pool, `CREATE TABLE copy (id bigint PRIMARY KEY, email text, name varchar(40), phone text, secret text NOT NULL, note text)`)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), "COPY copy FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	csch, err := catalog.GetSchema(ctx, pool, "copy")
	if err != nil {
		t.Fatal(err)
	}
	want, err := exporter.Checksum(ctx, conn, csch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum != want {
		t.Errorf("masked checksum %s, the masked copy's %s", sum, want)
	}
	// Without the masks the table reads as it is again.
	if err := snap.Mask(ctx, sch, nil); err != nil {
		t.Fatal(err)
	}
	plain, _, _ := exportAll(t, snap, pool, sch, 100, 0)
	if !bytes.Contains(plain, []byte("orig-mail-1001@real.example")) {
		t.Error("unmasked read lacks the originals")
	}
}
