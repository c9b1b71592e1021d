package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// table is the benchmark table's name on both sites.
const table = "items"

// createSQL is the realistic table: what an app's users or orders table looks like.
const createSQL = `CREATE TABLE items (
	id         bigint PRIMARY KEY,
	uid        uuid NOT NULL,
	email      text NOT NULL UNIQUE,
	name       text NOT NULL,
	qty        int NOT NULL,
	amount     numeric(12,2) NOT NULL,
	active     boolean NOT NULL,
	tags       text[] NOT NULL,
	attrs      jsonb NOT NULL,
	created_at timestamptz NOT NULL,
	blob       bytea NOT NULL,
	notes      text
)`

// lorem is the source of the notes column's text.
var lorem = strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "+
	"incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation "+
	"ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in "+
	"voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur sint occaecat cupidatat non "+
	"proident, sunt in culpa qui officia deserunt mollit anim id est laborum. ", 4)

// fillSQL selects rows 1..$1 of the benchmark table. $2 is a salt: 0 gives the sender's rows,
// 1 the same ids with every value different (a stale copy). The bytea is 200
// incompressible bytes (three sha512 and part of a sha256); the notes are NULL on a
// third of the rows, a sentence (10 to 70 characters) on most and ~2 KB on one in a hundred.
const fillSQL = `
SELECT i,
	md5(i::text || s)::uuid,
	'user' || i || CASE WHEN s = 0 THEN '@example.com' ELSE '@old.example.org' END,
	(ARRAY['Ada','Grace','Linus','Ken','Barbara','Edsger','Frances','Donald'])[1 + i % 8] || ' ' ||
		(ARRAY['Lovelace','Hopper','Torvalds','Thompson','Liskov','Dijkstra','Allen','Knuth','Ritchie','Wirth'])[1 + (i / 8) % 10] ||
		CASE WHEN i % 11 = 0 THEN ' Ünïcødé ✓' ELSE '' END || CASE WHEN s = 0 THEN '' ELSE ' (old)' END,
	(i * 37 + s) % 100000,
	round(((i * 7919 + s * 13) % 100000000) / 100.0, 2),
	(i + s) % 3 <> 0,
	ARRAY['tag' || ((i + s) % 17)] || CASE WHEN i % 4 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
	jsonb_build_object('v', s, 'score', i % 1000, 'country', (ARRAY['NO','FR','PL','JP','BR'])[1 + i % 5],
		'flags', jsonb_build_array(i % 2 = 0, i % 3 = 0)),
	timestamptz '2023-01-01 00:00:00+00' + (i * 31 + s) * interval '1 second' + (i % 1000) * interval '1 microsecond',
	sha512(int8send(i) || int2send(s::int2) || '\x01'::bytea) || sha512(int8send(i) || int2send(s::int2) || '\x02'::bytea) ||
		sha512(int8send(i) || int2send(s::int2) || '\x03'::bytea) || substring(sha256(int8send(i) || int2send(s::int2)) from 1 for 8),
	CASE WHEN i % 3 = 0 THEN NULL
		WHEN i % 100 = 1 THEN substr($3::text, (1 + (i + s) % 300)::int, (1800 + i % 400)::int)
		ELSE substr($3::text, (1 + (i + s) % 300)::int, (10 + i % 60)::int) END
FROM generate_series(1, $1::bigint) AS i, (SELECT $2::int AS s) AS salt`

// fill inserts rows 1..rows into tbl (see fillSQL) and vacuums it.
func fill(ctx context.Context, db *pgxpool.Pool, tbl string, rows, salt int) error {
	if _, err := db.Exec(ctx, "INSERT INTO "+tbl+fillSQL, rows, salt, lorem); err != nil {
		return fmt.Errorf("fill %s: %w", tbl, err)
	}
	if _, err := db.Exec(ctx, "VACUUM (ANALYZE) "+tbl); err != nil {
		return fmt.Errorf("vacuum %s: %w", tbl, err)
	}
	return nil
}

// sum is a table's content: its row count and an md5 over every row's text in key
// order (an md5 of the rows' md5s, so no single value nears PostgreSQL's 1 GB limit).
type sum struct {
	Rows int64
	MD5  string
}

// checksum returns tbl's sum over the rows with id ≤ upTo (all when upTo is 0).
func checksum(ctx context.Context, db *pgxpool.Pool, tbl string, upTo int) (sum, error) {
	q := "SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY id)), '') FROM " + tbl + " t"
	if upTo > 0 {
		q += fmt.Sprintf(" WHERE id <= %d", upTo)
	}
	var s sum
	err := db.QueryRow(ctx, q).Scan(&s.Rows, &s.MD5)
	return s, err
}
