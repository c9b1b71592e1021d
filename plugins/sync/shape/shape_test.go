package shape

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/host/devpg/pgtest"
	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// normalize makes shapes on a table of the usual kinds of column.
func normalize(t *testing.T, specs ...syncapi.ShapeSpec) []*Shape {
	t.Helper()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE items (id bigint PRIMARY KEY, owner int, title text, done bool, body text);
		CREATE SCHEMA s; CREATE TABLE s.items (k uuid, n int, PRIMARY KEY (k, n))`); err != nil {
		t.Fatal(err)
	}
	var out []*Shape
	for _, spec := range specs {
		s, err := Normalize(context.Background(), pool, spec)
		if err != nil {
			t.Fatalf("%+v: %v", spec, err)
		}
		out = append(out, s)
	}
	return out
}

func str(s string) *string { return &s }

func row(kv ...string) map[string]*string {
	m := map[string]*string{}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "NULL" {
			m[kv[i]] = nil
		} else {
			m[kv[i]] = str(kv[i+1])
		}
	}
	return m
}

func kinds(ms []syncapi.Message) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Headers.Operation+" "+m.Key)
	}
	return strings.Join(parts, "; ")
}

func TestApplyJudgesRowsByTheirOldAndNewValues(t *testing.T) {
	ss := normalize(t,
		syncapi.ShapeSpec{Table: "items", Where: "owner = $1", Params: []string{"1"}},
		syncapi.ShapeSpec{Table: "items", Columns: []string{"id", "title"}, Replica: syncapi.ReplicaFull})
	mine, narrow := ss[0], ss[1]
	full := func(id, owner, title string) map[string]*string {
		return row("id", id, "owner", owner, "title", title, "done", "f", "body", "NULL")
	}
	for _, tc := range []struct {
		name      string
		s         *Shape
		change    capture.Change
		want      string
		checkMsgs func(t *testing.T, ms []syncapi.Message)
	}{
		{"insert in", mine, capture.Change{Kind: capture.Insert, New: full("1", "1", "a")}, `insert "public"."items"/"1"`, nil},
		{"insert out", mine, capture.Change{Kind: capture.Insert, New: full("1", "2", "a")}, ``, nil},
		{"insert NULL owner", mine, capture.Change{Kind: capture.Insert, New: full("1", "NULL", "a")}, ``, nil},
		{"update within", mine, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"), New: full("1", "1", "b")}, `update "public"."items"/"1"`,
			func(t *testing.T, ms []syncapi.Message) {
				if len(ms[0].Value) != 2 || *ms[0].Value["title"] != "b" || ms[0].OldValue != nil {
					t.Errorf("default replica update: value %v old %v", ms[0].Value, ms[0].OldValue)
				}
			}},
		{"update moves in", mine, capture.Change{Kind: capture.Update, Old: full("1", "2", "a"), New: full("1", "1", "a")}, `insert "public"."items"/"1"`, nil},
		{"update moves out", mine, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"), New: full("1", "NULL", "a")}, `delete "public"."items"/"1"`, nil},
		{"update outside", mine, capture.Change{Kind: capture.Update, Old: full("1", "2", "a"), New: full("1", "3", "a")}, ``, nil},
		{"key change", mine, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"), New: full("9", "1", "a")}, `delete "public"."items"/"1"; insert "public"."items"/"9"`, nil},
		{"delete in", mine, capture.Change{Kind: capture.Delete, Old: full("1", "1", "a")}, `delete "public"."items"/"1"`, nil},
		{"delete out", mine, capture.Change{Kind: capture.Delete, Old: full("1", "5", "a")}, ``, nil},
		{"unselected column changes", narrow, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"), New: full("1", "2", "a")}, ``, nil},
		{"full replica update", narrow, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"), New: full("1", "1", "b")}, `update "public"."items"/"1"`,
			func(t *testing.T, ms []syncapi.Message) {
				if len(ms[0].Value) != 2 || *ms[0].Value["title"] != "b" || len(ms[0].OldValue) != 1 || *ms[0].OldValue["title"] != "a" {
					t.Errorf("full replica update: value %v old %v", ms[0].Value, ms[0].OldValue)
				}
			}},
		{"unchanged toast from old", mine, capture.Change{Kind: capture.Update, Old: full("1", "1", "a"),
			New: row("id", "1", "owner", "1", "title", "b", "done", "f"), Unchanged: []string{"body"}}, `update "public"."items"/"1"`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := tc.s.Apply(&tc.change)
			if got := kinds(ms); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.checkMsgs != nil {
				tc.checkMsgs(t, ms)
			}
		})
	}
}

func TestNormalizeKeysAndHashes(t *testing.T) {
	ss := normalize(t,
		syncapi.ShapeSpec{Table: "items", Where: "owner = $1 AND done", Params: []string{"01"}},
		syncapi.ShapeSpec{Table: "items", Where: "done AND owner = 1"},
		syncapi.ShapeSpec{Table: "items", Where: "owner = 2"},
		syncapi.ShapeSpec{Table: "s.items"},
		syncapi.ShapeSpec{Namespace: "s", Table: "items"})
	if ss[0].Hash != ss[1].Hash {
		t.Error("one condition spelled two ways has two hashes")
	}
	if ss[0].Hash == ss[2].Hash {
		t.Error("two conditions share a hash")
	}
	if ss[3].Hash != ss[4].Hash {
		t.Error("s.items and namespace s, table items differ")
	}
	k := ss[3].RowKey(row("k", `a"b`, "n", "1"))
	if k != `"s"."items"/"a""b"/"1"` {
		t.Errorf("key %s", k)
	}
	if w := ss[0].WhereSQL(); !strings.Contains(w, "'01'") || strings.Contains(w, "$1") {
		t.Errorf("where SQL %q", w)
	}
}

func TestNormalizeRefusesWhatIsNotAShape(t *testing.T) {
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE items (id int PRIMARY KEY, t text); CREATE TABLE nokey (a int)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec syncapi.ShapeSpec
		want string
	}{
		{syncapi.ShapeSpec{}, "table is required"},
		{syncapi.ShapeSpec{Table: "missing"}, "unknown table"},
		{syncapi.ShapeSpec{Table: "fiberkit_sync_shapes"}, "unknown table"},
		{syncapi.ShapeSpec{Table: "nokey"}, "no primary key"},
		{syncapi.ShapeSpec{Table: "items", Columns: []string{"t"}}, `primary key column "id"`},
		{syncapi.ShapeSpec{Table: "items", Replica: "x"}, "replica"},
		{syncapi.ShapeSpec{Table: "items", Params: []string{"1"}}, "without a where"},
		{syncapi.ShapeSpec{Table: "items", Where: "lower(t) = 'a'"}, "function"},
		{syncapi.ShapeSpec{Table: "items", Where: "id = 1; DROP TABLE items"}, "where"},
	} {
		_, err := Normalize(context.Background(), pool, tc.spec)
		var se *Error
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want a shape error saying %q", tc.spec, err, tc.want)
		}
	}
}

// The registry finds indexed shapes by a change's old and new values and always
// offers the unindexed ones; a thousand indexed shapes are not all candidates.
func TestRegistryFindsShapesByTheirEquality(t *testing.T) {
	specs := []syncapi.ShapeSpec{{Table: "items", Where: "title LIKE 'a%'"}}
	for i := 0; i < 1000; i++ {
		specs = append(specs, syncapi.ShapeSpec{Table: "items", Where: "owner = $1", Params: []string{strings.Repeat("0", i%3) + strconv.Itoa(i)}})
	}
	ss := normalize(t, specs...)
	reg := NewRegistry[int]()
	for i, s := range ss {
		reg.Add(s, i)
	}
	candidates := func(c capture.Change) []int {
		var out []int
		reg.Candidates(&c, func(_ *Shape, i int) { out = append(out, i) })
		return out
	}
	got := candidates(capture.Change{Kind: capture.Update, Schema: "public", Table: "items",
		Old: row("id", "1", "owner", "7"), New: row("id", "1", "owner", "0042")})
	if len(got) != 3 || !contains(got, 0) || !contains(got, 8) || !contains(got, 43) {
		t.Fatalf("candidates %v, want the unindexed shape 0 and owners 7 and 42 (shapes 8, 43)", got)
	}
	if got := candidates(capture.Change{Kind: capture.Insert, Schema: "public", Table: "other", New: row("id", "1")}); len(got) != 0 {
		t.Fatalf("another table's change: %v", got)
	}
	reg.Remove(ss[43], func(i int) bool { return i == 43 })
	got = candidates(capture.Change{Kind: capture.Insert, Schema: "public", Table: "items", New: row("id", "1", "owner", "42")})
	if len(got) != 1 || got[0] != 0 {
		t.Fatalf("after removing owner 42's shape: %v", got)
	}
}

func contains(xs []int, x int) bool { return slices.Contains(xs, x) }
