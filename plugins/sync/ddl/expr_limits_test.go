package ddl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
)

// TestHostileExpressionSize feeds Create expressions built to make a recursive,
// concatenating rewriter take quadratic time or overflow its stack: a 200 KB domain
// CHECK of "- "×100k took 72 s, "NOT "×100k 10 s. Each must be refused within well
// under a second, left out with a warning, and the table still created.
func TestHostileExpressionSize(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	exec(t, db, `SELECT 1`) // connected before anything is timed
	const n = 100_000
	for i, tc := range []struct{ name, check string }{
		{"unary minus", "CHECK ((" + strings.Repeat("- ", n) + "VALUE) > 0)"},
		{"NOT", "CHECK (" + strings.Repeat("NOT ", n) + "(VALUE > 0))"},
		{"NOT under the size cap", "CHECK (" + strings.Repeat("NOT ", n/2) + "(VALUE > 0))"},
		{"parentheses", "CHECK " + strings.Repeat("(", n) + "VALUE > 0" + strings.Repeat(")", n)},
		{"AND chain", "CHECK (" + strings.Repeat("VALUE > 0 AND ", n/7) + "true)"},
		{"OR chain", "CHECK (" + strings.Repeat("VALUE = 1 OR ", n/7) + "false)"},
		{"plus chain", "CHECK ((" + strings.Repeat("VALUE + ", n/4) + "1) > 0)"},
		{"IS NULL chain", "CHECK ((VALUE" + strings.Repeat(" IS NULL", n/4) + "))"},
		{"ANY nesting", "CHECK (" + strings.Repeat("VALUE = ANY (", n/8) + "ARRAY[1]" + strings.Repeat(")", n/8) + ")"},
		{"function nesting", "CHECK (" + strings.Repeat("abs(", n/4) + "VALUE" + strings.Repeat(")", n/4) + " > 0)"},
		{"array nesting", "CHECK (cardinality(" + strings.Repeat("ARRAY[", n/6) + "VALUE" + strings.Repeat("]", n/6) + ") > 0)"},
		{"wide and deep", "CHECK " + strings.Repeat("(", 80) + "VALUE = ANY (ARRAY[" + strings.Repeat("1, ", n/2) + "1])" + strings.Repeat(")", 80)},
		{"long array", "CHECK (VALUE = ANY (ARRAY[" + strings.Repeat("123456789, ", n) + "0]))"},
		{"one megabyte", "CHECK (" + strings.Repeat("NOT ", 1<<18) + "true)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			domain := catalog.Domain{Schema: "public", Name: "d" + string(rune('a'+i)), BaseType: "integer", Checks: []string{tc.check}}
			sch := &catalog.Schema{Schema: "public", Name: "t" + string(rune('a'+i)), Domains: []catalog.Domain{domain},
				Columns: []catalog.Column{{Name: "v", Type: domain.Name, Nullable: true}}}
			res, elapsed := createWithin(t, ctx, db, sch)
			if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "check not recreated") {
				t.Errorf("warnings = %.200q", res.Warnings)
			}
			t.Logf("%s (%d KB): refused in %v: %.120s", tc.name, len(tc.check)>>10, elapsed, res.Warnings)
		})
	}
	// The same through a generated column and a default.
	gen := &catalog.Schema{Schema: "public", Name: "gen", Columns: []catalog.Column{
		{Name: "a", Type: "integer", Nullable: true},
		{Name: "g", Type: "boolean", Generated: strings.Repeat("NOT ", n) + "(a > 0)"},
		{Name: "m", Type: "integer", Generated: strings.Repeat("- ", n) + "a"},
		{Name: "d", Type: "integer", Nullable: true, Default: ptr(strings.Repeat("(", n) + "1" + strings.Repeat(")", n))},
	}}
	res, elapsed := createWithin(t, ctx, db, gen)
	if len(res.Warnings) != 3 {
		t.Errorf("gen warnings = %.300q", res.Warnings)
	}
	t.Logf("generated and default columns: refused in %v", elapsed)
	exec(t, db, `INSERT INTO gen (a) VALUES (1)`)
}

// TestExpressionLimitsKeepOrdinaryExpressions checks that what a real schema holds
// (some nesting, an AND chain of a few dozen terms, a long IN list) still passes.
func TestExpressionLimitsKeepOrdinaryExpressions(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	terms := make([]string, 40)
	for i := range terms {
		terms[i] = "(VALUE <> " + string(rune('0'+i%10)) + ")"
	}
	values := make([]string, 2000)
	for i := range values {
		values[i] = "'value number " + strings.Repeat("x", i%7) + "'::text"
	}
	checks := []string{
		"CHECK ((" + strings.Join(terms, " AND ") + "))",
		"CHECK (" + strings.Repeat("(", 30) + "VALUE > -5" + strings.Repeat(")", 30) + ")",
		"CHECK ((NOT (NOT (- (- VALUE) > -10))))",
		"CHECK ((((VALUE)::text || '-'::text) = ANY (ARRAY[" + strings.Join(values, ", ") + "])))",
	}
	sch := &catalog.Schema{Schema: "public", Name: "ordinary",
		Domains: []catalog.Domain{{Schema: "public", Name: "od", BaseType: "integer", Checks: checks}},
		Columns: []catalog.Column{{Name: "v", Type: "od", Nullable: true}}}
	res, _ := createWithin(t, ctx, db, sch)
	if len(res.Warnings) > 0 {
		t.Fatalf("warnings: %.300q", res.Warnings)
	}
	if got := strs(t, db, `SELECT count(*)::text FROM pg_constraint WHERE contypid = 'od'::regtype`); got[0] != "4" {
		t.Errorf("checks created = %v, want 4", got)
	}
}

// createWithin runs Create and fails the test when it takes a second or more.
func createWithin(t *testing.T, ctx context.Context, db ddl.Exec, sch *catalog.Schema) (ddl.Result, time.Duration) {
	t.Helper()
	type outcome struct {
		res ddl.Result
		err error
	}
	done := make(chan outcome, 1)
	start := time.Now()
	go func() {
		res, err := ddl.Create(ctx, db, sch)
		done <- outcome{res, err}
	}()
	select {
	case o := <-done:
		elapsed := time.Since(start)
		if o.err != nil {
			t.Fatalf("create %s: %v", sch.Name, o.err)
		}
		if elapsed >= time.Second {
			t.Errorf("create %s took %v", sch.Name, elapsed)
		}
		return o.res, elapsed
	case <-time.After(5 * time.Second):
		t.Fatalf("create %s still running after 5 s", sch.Name)
	}
	return ddl.Result{}, 0
}
