package importer_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fiberkit/fiberkit/plugins/sync/importer"
)

// importRows imports data (COPY text) into table with strategy, failing the test on an error.
func importRows(t *testing.T, s *site, table string, strategy importer.Strategy, cols []string, data string) importer.Result {
	t.Helper()
	res, err := tryImport(s, table, importer.Options{Strategy: strategy, Columns: cols}, data)
	if err != nil {
		t.Fatalf("import %s (%s): %v", table, strategy, err)
	}
	return res
}

func tryImport(s *site, table string, o importer.Options, data string) (importer.Result, error) {
	ctx := context.Background()
	im, err := importer.New(ctx, s.pool, table, o)
	if err != nil {
		return importer.Result{}, err
	}
	return im.ImportCopy(ctx, []byte(data))
}

// errorsByKey maps the value of key column col of each record error to its reason.
func errorsByKey(t *testing.T, res importer.Result, col string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range res.Errors {
		v, ok := e.Key[col]
		if !ok || v == nil {
			t.Fatalf("record error without %s: %+v", col, e)
		}
		out[*v] = e.Reason
	}
	return out
}

// checkCounts fails unless res has exactly these counts and error keys (one failed
// row each), each error's reason containing the given text.
func checkCounts(t *testing.T, res importer.Result, created, updated, skipped int, keyCol string, errs map[string]string) {
	t.Helper()
	if res.Created != created || res.Updated != updated || res.Skipped != skipped || res.Failed != len(errs) {
		t.Fatalf("result %+v, want created %d updated %d skipped %d failed %d", res, created, updated, skipped, len(errs))
	}
	got := errorsByKey(t, res, keyCol)
	if len(got) != len(errs) || len(res.Errors) != len(errs) {
		t.Fatalf("errors %v, want keys %v", got, errs)
	}
	for k, want := range errs {
		if !strings.Contains(got[k], want) {
			t.Fatalf("error for %s = %q, want it to mention %q (all: %v)", k, got[k], want, got)
		}
	}
}

const overLongTable = `
CREATE DOMAIN short_code AS varchar(3);
CREATE TABLE %s (id int PRIMARY KEY, s varchar(3), c char(2), bt bit(4), vb varbit(3), arr varchar(2)[],
	code short_code, n numeric(12,2), ts timestamp(0), iv interval minute)`

// Values too long for their column are refused like COPY refuses them, reported per
// record, never cut to fit; rounding and padding stay exactly COPY's.
func TestOverLongValuesAreRecordErrorsNotCut(t *testing.T) {
	cols := []string{"id", "s", "c", "bt", "vb", "arr", "code", "n", "ts", "iv"}
	good := "1\tabc\ta\t1010\t101\t{ab,c}\txyz\t1.005\t2024-01-01 10:00:00.6\t1 day 02:03:04.5\n" +
		"8\tab \tb \t0000\t\t{}\tab\t-99.994\t2024-01-01 23:59:59.5\t00:00:31\n"
	bad := "2\tabcd\ta\t1010\t1\t{}\tx\t0\t2024-01-01\t1 min\n" +
		"3\tabc\tabc\t1010\t1\t{}\tx\t0\t2024-01-01\t1 min\n" +
		"4\tabc\ta\t10101\t1\t{}\tx\t0\t2024-01-01\t1 min\n" +
		"5\tabc\ta\t101\t1\t{}\tx\t0\t2024-01-01\t1 min\n" +
		"6\tabc\ta\t1010\t1010\t{}\tx\t0\t2024-01-01\t1 min\n" +
		"7\tabc\ta\t1010\t1\t{ab,abc}\tx\t0\t2024-01-01\t1 min\n" +
		"9\tabc\ta\t1010\t1\t{}\twxyz\t0\t2024-01-01\t1 min\n" +
		"10\tabc\ta\t1010\t1\t{}\tx\t12345678901\t2024-01-01\t1 min\n"
	wantErrs := map[string]string{
		"2": "too long", "3": "too long", "4": "does not match", "5": "does not match",
		"6": "too long", "7": "too long", "9": "too long", "10": "overflow",
	}
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
		for _, nonEmpty := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/non-empty=%v", strategy, nonEmpty), func(t *testing.T) {
				b := newSite(t)
				b.exec(t, fmt.Sprintf(overLongTable, "v")+"; "+fmt.Sprintf(strings.Replace(overLongTable, "CREATE DOMAIN short_code AS varchar(3);", "", 1), "ref"))
				if nonEmpty {
					b.exec(t, `INSERT INTO v (id) VALUES (100)`)
				}
				res := importRows(t, b, "v", strategy, cols, good+bad)
				checkCounts(t, res, 2, 0, 0, "id", wantErrs)
				// The good rows are what COPY itself makes of the same text.
				conn, err := b.pool.Acquire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				_, err = conn.Conn().PgConn().CopyFrom(context.Background(), strings.NewReader(good), "COPY ref FROM STDIN")
				conn.Release()
				if err != nil {
					t.Fatal(err)
				}
				got := rows(t, b, `SELECT v::text FROM v WHERE id < 100 ORDER BY id`)
				want := rows(t, b, `SELECT ref::text FROM ref ORDER BY id`)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("imported %v, COPY gives %v", got, want)
				}
				if got[0] != `(1,abc,"a ",1010,101,"{ab,c}",xyz,1.01,"2024-01-01 10:00:01","1 day 02:03:00")` {
					t.Fatalf("row 1 = %s", got[0])
				}
			})
		}
	}
}

// Merge keeps the existing value where the incoming one is NULL, also in a NOT NULL
// column; a new row with NULL there is a record error.
func TestMergeKeepsExistingValueInNotNullColumn(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE p (a int, b int, name text NOT NULL, score int, PRIMARY KEY (a, b));
		INSERT INTO p VALUES (1, 1, 'old', 1), (1, 2, 'old2', 2)`)
	res := importRows(t, b, "p", importer.Merge, []string{"a", "b", "name", "score"},
		"1\t1\t\\N\t10\n1\t2\tnew2\t\\N\n2\t1\t\\N\t5\n2\t2\tnew\t\\N\n")
	if res.Created != 1 || res.Updated != 2 || res.Skipped != 0 || res.Failed != 1 || len(res.Errors) != 1 {
		t.Fatalf("result %+v", res)
	}
	if e := res.Errors[0]; *e.Key["a"] != "2" || *e.Key["b"] != "1" || !strings.Contains(e.Reason, "null value") {
		t.Fatalf("error %+v", e)
	}
	got := rows(t, b, `SELECT concat_ws('|', a, b, name, coalesce(score::text, '∅')) FROM p ORDER BY a, b`)
	if want := []string{"1|1|old|10", "1|2|new2|2", "2|2|new|∅"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// An identity GENERATED ALWAYS column outside the key is inserted with its incoming
// value but never updated: overwrite and merge update the other columns.
func TestIdentityAlwaysColumnOutsideKey(t *testing.T) {
	cases := map[importer.Strategy][]string{
		importer.Skip:      {"1|1|5|10", "2|78|20|40"},
		importer.Overwrite: {"1|1|10|20", "2|78|20|40"},
		importer.Merge:     {"1|1|10|20", "2|78|20|40"},
	}
	for strategy, want := range cases {
		t.Run(string(strategy), func(t *testing.T) {
			b := newSite(t)
			b.exec(t, `CREATE TABLE g (id int PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, a int,
				dbl int GENERATED ALWAYS AS (a * 2) STORED); INSERT INTO g (id, a) VALUES (1, 5)`)
			res := importRows(t, b, "g", strategy, []string{"id", "seq", "a"}, "1\t77\t10\n2\t78\t20\n")
			updated := 1
			if strategy == importer.Skip {
				updated = 0
			}
			if res.Created != 1 || res.Updated != updated || len(res.Errors) != 0 {
				t.Fatalf("result %+v", res)
			}
			if got := rows(t, b, `SELECT concat_ws('|', id, seq, a, dbl) FROM g ORDER BY id`); !reflect.DeepEqual(got, want) {
				t.Fatalf("rows %v, want %v", got, want)
			}
		})
	}
}

const triggerSetup = `
CREATE TABLE tr (id int PRIMARY KEY, v text);
INSERT INTO tr VALUES (100, 'x');
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.v = 'bad' THEN RAISE EXCEPTION 'bad value %', NEW.id; END IF;
	IF NEW.v = 'retry' THEN RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure'; END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER tr_refuse BEFORE INSERT OR UPDATE ON tr FOR EACH ROW EXECUTE FUNCTION refuse();`

// A trigger's exception (P0001) is about one row: the good rows land and the bad one
// is reported, under every strategy.
func TestTriggerExceptionIsARecordError(t *testing.T) {
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
		t.Run(string(strategy), func(t *testing.T) {
			b := newSite(t)
			b.exec(t, triggerSetup)
			res := importRows(t, b, "tr", strategy, []string{"id", "v"}, "1\tgood\n2\tbad\n3\tgood\n")
			checkCounts(t, res, 2, 0, 0, "id", map[string]string{"2": "bad value 2"})
			if got := rows(t, b, `SELECT id || ':' || v FROM tr ORDER BY id`); !reflect.DeepEqual(got, []string{"1:good", "3:good", "100:x"}) {
				t.Fatalf("rows %v", got)
			}
		})
	}
}

// An error no replay gets past (here a serialization failure) fails the batch as a
// whole instead of being reported against every row.
func TestSerializationFailureIsNotReplayed(t *testing.T) {
	b := newSite(t)
	b.exec(t, triggerSetup)
	_, err := tryImport(b, "tr", importer.Options{Strategy: importer.Skip, Columns: []string{"id", "v"}}, "1\tgood\n2\tretry\n")
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "40001" {
		t.Fatalf("err = %v, want the serialization failure", err)
	}
	if got := rows(t, b, `SELECT id || ':' || v FROM tr ORDER BY id`); !reflect.DeepEqual(got, []string{"100:x"}) {
		t.Fatalf("rows %v: the failed batch must land nothing", got)
	}
}

// The row-by-row fallback gives what the batch statement gives: the last row of each
// key wins and the earlier ones count as skipped, so an unrelated bad row changes
// nothing but its own error.
func TestFallbackMatchesBatchWithDuplicateKeys(t *testing.T) {
	const setup = `CREATE TABLE k (id int PRIMARY KEY, v text NOT NULL, n int); INSERT INTO k VALUES (1, 'old', 0), (100, 'x', 0)`
	data := []string{"1\tfirst\t1\n", "3\tthree-a\t3\n", "1\tsecond\t\\N\n", "3\tthree-b\t\\N\n", "4\tfour\t4\n", "03\tthree-c\t33\n"}
	const badRow = "2\t\\N\t2\n"
	all := `SELECT concat_ws('|', id, v, coalesce(n::text, '∅')) FROM k ORDER BY id`
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge} {
		t.Run(string(strategy), func(t *testing.T) {
			var results [2]importer.Result
			var landed [2][]string
			for i, withBad := range []bool{false, true} {
				b := newSite(t)
				b.exec(t, setup)
				batch := strings.Join(data[:3], "")
				if withBad {
					batch += badRow
				}
				batch += strings.Join(data[3:], "")
				results[i] = importRows(t, b, "k", strategy, []string{"id", "v", "n"}, batch)
				landed[i] = rows(t, b, all)
			}
			if len(results[0].Errors) != 0 || len(results[1].Errors) != 1 || *results[1].Errors[0].Key["id"] != "2" {
				t.Fatalf("errors: without bad row %+v, with %+v", results[0], results[1])
			}
			batch, fallback := results[0], results[1]
			if fallback.Created != batch.Created || fallback.Updated != batch.Updated || fallback.Skipped != batch.Skipped || fallback.Failed != 1 || batch.Failed != 0 {
				t.Fatalf("counts differ: batch %+v, fallback %+v", batch, fallback)
			}
			if !reflect.DeepEqual(landed[0], landed[1]) {
				t.Fatalf("rows differ:\nbatch    %v\nfallback %v", landed[0], landed[1])
			}
			if got := landed[0][1]; got != "3|three-c|33" {
				t.Fatalf("key 3 kept %q, want the last of its rows", got)
			}
		})
	}
}

// The fallback reads each replayed row through an index, not by scanning the whole
// batch once per row: the rows scanned sequentially in the temp table stay linear.
func TestRowByRowFallbackScansLinearly(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE r (id int PRIMARY KEY, v text NOT NULL);
		CREATE TABLE scans (n bigint);
		CREATE FUNCTION log_scans() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO scans SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_xact_all_tables WHERE schemaname LIKE 'pg_temp%';
			RETURN NULL;
		END $$;
		CREATE TRIGGER r_scans AFTER INSERT ON r FOR EACH ROW EXECUTE FUNCTION log_scans();`)
	const n = 3000
	var data strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&data, "%d\tv\n", i)
	}
	data.WriteString("0\t\\N\n")
	res := importRows(t, b, "r", importer.Skip, []string{"id", "v"}, data.String())
	if res.Created != n || res.Skipped != 0 || res.Failed != 1 || len(res.Errors) != 1 {
		t.Fatalf("result %+v", res)
	}
	var got int64
	if err := b.pool.QueryRow(context.Background(), `SELECT max(n) FROM scans`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got > 10*n {
		t.Fatalf("the fallback read %d temp rows sequentially for %d rows: quadratic", got, n)
	}
}

// User columns named like the importer's own (the ordinal, the temp table's columns,
// the statement's aliases) are imported like any other, on every path.
func TestColumnsNamedLikeTheImportersOwn(t *testing.T) {
	const ddl = `CREATE TABLE odd (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, fk_ord int NOT NULL, ord text,
		c1 text, v1 text, k1 text, s text, cur text, ins text, created text, "xmax_" text)`
	cols := []string{"id", "fk_ord", "ord", "c1", "v1", "k1", "s", "cur", "ins", "created", "xmax_"}
	line := func(id, fkOrd string) string {
		return strings.Join([]string{id, fkOrd, "o" + id, "c" + id, "v" + id, "k" + id, "s" + id, "u" + id, "i" + id, "r" + id, "x" + id}, "\t") + "\n"
	}
	// Without id: append's replay after a failed batch draws new identity values.
	all := `SELECT concat_ws('|', fk_ord, ord, c1, v1, k1, s, cur, ins, created, "xmax_") FROM odd ORDER BY id`
	for _, strategy := range []importer.Strategy{importer.Skip, importer.Overwrite, importer.Merge, importer.Append} {
		for _, withBad := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/bad=%v", strategy, withBad), func(t *testing.T) {
				b := newSite(t)
				b.exec(t, ddl)
				b.exec(t, `INSERT INTO odd (fk_ord, ord, c1, v1, k1, s, cur, ins, created, "xmax_")
					VALUES (1, 'old', 'old', 'old', 'old', 'old', 'old', 'old', 'old', 'old')`)
				data := line("1", "10") + line("2", "20")
				if withBad {
					data += line("3", `\N`)
				}
				res := importRows(t, b, "odd", strategy, cols, data)
				bad := 0
				if withBad {
					bad = 1
					if len(res.Errors) != 1 || *res.Errors[0].Key["id"] != "3" {
						t.Fatalf("errors %+v", res.Errors)
					}
				}
				want := map[importer.Strategy][]string{
					importer.Skip:      {"1|old|old|old|old|old|old|old|old|old", "20|o2|c2|v2|k2|s2|u2|i2|r2|x2"},
					importer.Overwrite: {"10|o1|c1|v1|k1|s1|u1|i1|r1|x1", "20|o2|c2|v2|k2|s2|u2|i2|r2|x2"},
					importer.Merge:     {"10|o1|c1|v1|k1|s1|u1|i1|r1|x1", "20|o2|c2|v2|k2|s2|u2|i2|r2|x2"},
					importer.Append:    {"1|old|old|old|old|old|old|old|old|old", "10|o1|c1|v1|k1|s1|u1|i1|r1|x1", "20|o2|c2|v2|k2|s2|u2|i2|r2|x2"},
				}[strategy]
				if got := rows(t, b, all); !reflect.DeepEqual(got, want) {
					t.Fatalf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if res.Created+res.Updated+res.Skipped != 2 || res.Failed != bad {
					t.Fatalf("counts %+v", res)
				}
			})
		}
	}
}

// Append on a composite key keeps the key columns without a default and lets the
// ones with a default pick the new key.
func TestAppendCompositeKeyKeepsColumnsWithoutDefault(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE ck (tenant int, id int GENERATED BY DEFAULT AS IDENTITY, v text, PRIMARY KEY (tenant, id));
		INSERT INTO ck (tenant, v) VALUES (1, 'a'), (2, 'b');
		CREATE TABLE nodefault (tenant int, code text, v text, PRIMARY KEY (tenant, code))`)
	res := importRows(t, b, "ck", importer.Append, []string{"tenant", "id", "v"}, "1\t1\tx\n2\t1\ty\n2\t1\t\\N\n")
	if res.Created != 3 || res.Skipped != 0 || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	got := rows(t, b, `SELECT concat_ws('|', tenant, id, coalesce(v, '∅')) FROM ck ORDER BY id`)
	if want := []string{"1|1|a", "2|2|b", "1|3|x", "2|4|y", "2|5|∅"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
	ctx := context.Background()
	_, err := importer.New(ctx, b.pool, "nodefault", importer.Options{Strategy: importer.Append})
	if !errors.Is(err, importer.ErrNoKeyDefault) || !strings.Contains(err.Error(), `"tenant", "code"`) {
		t.Fatalf("append without any key default: %v", err)
	}
	_, err = importer.New(ctx, b.pool, "ck", importer.Options{Strategy: importer.Append, Columns: []string{"id", "v"}})
	if err == nil || !strings.Contains(err.Error(), `"tenant"`) {
		t.Fatalf("append without the key column that has no default: %v", err)
	}
}

// The receiving database's own DateStyle, IntervalStyle and TimeZone do not change
// how incoming text parses, on the straight COPY path and the merge path alike.
func TestReceiverSettingsDoNotChangeParsing(t *testing.T) {
	b := newSite(t)
	var db string
	if err := b.pool.QueryRow(context.Background(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	b.exec(t, fmt.Sprintf(`ALTER DATABASE %q SET DateStyle = 'SQL, DMY'`, db))
	b.exec(t, fmt.Sprintf(`ALTER DATABASE %q SET IntervalStyle = 'sql_standard'`, db))
	b.exec(t, fmt.Sprintf(`ALTER DATABASE %q SET TimeZone = 'Asia/Tokyo'`, db))
	b.pool.Reset()
	b.exec(t, `CREATE TABLE st (id int PRIMARY KEY, d date, d2 date, i interval, ts timestamptz)`)
	line := func(id int) string {
		return fmt.Sprintf("%d\t03/04/2024\t2024-03-04\t-1 2:03:04\t2024-03-04 10:00:00\n", id)
	}
	// Empty table: straight COPY; then a conflicting batch through the temp table.
	importRows(t, b, "st", importer.Skip, nil, line(1))
	importRows(t, b, "st", importer.Overwrite, nil, line(1)+line(2))
	got := rows(t, b, `SELECT concat_ws('|', id, to_char(d, 'YYYY-MM-DD'), to_char(d2, 'YYYY-MM-DD'),
		extract(epoch FROM i)::bigint, extract(epoch FROM ts - '2024-03-04 10:00:00+00')::bigint) FROM st ORDER BY id`)
	want := []string{"1|2024-03-04|2024-03-04|-79016|0", "2|2024-03-04|2024-03-04|-79016|0"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

const kidsSetup = `
CREATE TABLE parents (id int PRIMARY KEY);
INSERT INTO parents VALUES (1), (2);
CREATE TABLE kids (id int PRIMARY KEY, parent int REFERENCES parents(id), name text NOT NULL, age int CHECK (age >= 0));
INSERT INTO kids VALUES (10, 1, 'old10', 1), (11, 1, 'old11', 1), (12, 1, 'old12', 1), (13, 1, 'old13', 1);`

// Under overwrite and merge too, bad rows are reported with their keys and the good
// ones land (updates and inserts alike).
func TestRecordErrorsUnderOverwriteAndMerge(t *testing.T) {
	data := "10\t2\tnew10\t5\n11\t9\tbad-fk\t5\n12\t2\t\\N\t\\N\n13\t1\tbad-check\t-1\n14\t2\tnew14\t7\n15\t1\t\\N\t1\n"
	cases := map[importer.Strategy]struct {
		errs map[string]string
		want []string
	}{
		importer.Overwrite: {
			errs: map[string]string{"11": "foreign key", "12": "null value", "13": "check constraint", "15": "null value"},
			want: []string{"10|2|new10|5", "11|1|old11|1", "12|1|old12|1", "13|1|old13|1", "14|2|new14|7"},
		},
		importer.Merge: {
			// Merge keeps old12's name where the incoming one is NULL.
			errs: map[string]string{"11": "foreign key", "13": "check constraint", "15": "null value"},
			want: []string{"10|2|new10|5", "11|1|old11|1", "12|2|old12|1", "13|1|old13|1", "14|2|new14|7"},
		},
	}
	for strategy, c := range cases {
		t.Run(string(strategy), func(t *testing.T) {
			b := newSite(t)
			b.exec(t, kidsSetup)
			res := importRows(t, b, "kids", strategy, []string{"id", "parent", "name", "age"}, data)
			updated := 1
			if strategy == importer.Merge {
				updated = 2
			}
			checkCounts(t, res, 1, updated, 0, "id", c.errs)
			if got := rows(t, b, `SELECT concat_ws('|', id, parent, name, age) FROM kids ORDER BY id`); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("rows %v, want %v", got, c.want)
			}
		})
	}
}

// MaxErrors bounds the list of record errors; the counts stay exact.
func TestMaxErrorsBoundsTheListNotTheCounts(t *testing.T) {
	b := newSite(t)
	b.exec(t, `CREATE TABLE m (id int PRIMARY KEY, v text NOT NULL); INSERT INTO m VALUES (1000, 'x')`)
	var data strings.Builder
	for i := 1; i <= 15; i++ {
		if i%3 == 0 {
			fmt.Fprintf(&data, "%d\tok\n", i)
		} else {
			fmt.Fprintf(&data, "%d\t\\N\n", i)
		}
	}
	res, err := tryImport(b, "m", importer.Options{Strategy: importer.Overwrite, Columns: []string{"id", "v"}, MaxErrors: 3}, data.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 5 || res.Updated != 0 || res.Skipped != 0 || res.Failed != 10 || len(res.Errors) != 3 {
		t.Fatalf("result %+v, want 5 created, 10 failed, 3 errors listed", res)
	}
	for i, want := range []string{"1", "2", "4"} {
		if got := *res.Errors[i].Key["id"]; got != want {
			t.Fatalf("error %d is for %s, want %s (incoming order)", i, got, want)
		}
	}
	if got := rows(t, b, `SELECT count(*)::text FROM m`)[0]; got != "6" {
		t.Fatalf("%s rows in the table, want 6", got)
	}
}

// Overwrite replaces rows (delete, then COPY) only in a table nothing refers to or
// watches: into a table another one references ON DELETE CASCADE, rows are updated
// in place and the children stay; a trigger sees updates, not deletes.
func TestOverwriteKeepsReferencingRowsAndTriggers(t *testing.T) {
	a, b := newSite(t), newSite(t)
	schema := `CREATE TABLE parent (id int PRIMARY KEY, v text);`
	a.exec(t, schema+`INSERT INTO parent SELECT g, 'new' || g FROM generate_series(1, 50) g`)
	b.exec(t, schema+`INSERT INTO parent SELECT g, 'old' FROM generate_series(1, 30) g;
		CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE);
		INSERT INTO child SELECT g, g FROM generate_series(1, 30) g;
		CREATE TABLE seen (op text);
		CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO seen VALUES (TG_OP); RETURN NULL; END $$;
		CREATE TRIGGER parent_seen AFTER INSERT OR UPDATE OR DELETE ON parent FOR EACH ROW EXECUTE FUNCTION note();`)
	res := transferAs(t, a, b, "parent", importer.Overwrite, 20, true)
	if res.Created != 20 || res.Updated != 30 {
		t.Fatalf("result %+v", res)
	}
	if got := rows(t, b, `SELECT count(*)::text FROM child`); got[0] != "30" {
		t.Fatalf("%s children left: the overwrite deleted their parents", got[0])
	}
	if got := rows(t, b, `SELECT op || ' ' || count(*) FROM seen GROUP BY op ORDER BY op`); strings.Join(got, ",") != "INSERT 20,UPDATE 30" {
		t.Fatalf("triggers saw %v", got)
	}
	if a.checksum(t, "parent", "id") != b.checksum(t, "parent", "id") {
		t.Fatal("parent differs")
	}
}
