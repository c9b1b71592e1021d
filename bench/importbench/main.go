// Command importbench measures the Sync data layer against the plain
// `COPY … TO STDOUT | COPY … FROM STDIN` pipe between the same two databases, in one
// run: 1M rows of a realistic table moved into an empty table, then again as
// `overwrite` into the full one. It prints a table and, last, one JSON line.
//
//	go run ./bench/importbench              # 1,000,000 rows
//	go run ./bench/importbench -rows 100000 # quicker
//
// It starts a throwaway PostgreSQL unless DATABASE_URL points at a server it may
// create databases on. Peak RSS is this process's (exporter and importer both run
// here), reset before each phase.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/bench/internal/measure"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/ddl"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/sample"
)

const table = "events"

type phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
	PeakMB  float64 `json:"peak_rss_mb"`
	Result  string  `json:"result,omitempty"`
}

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the table")
	batch := flag.Int("batch", 20000, "rows per batch")
	flag.Parse()
	if err := run(*rows, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "importbench:", err)
		os.Exit(1)
	}
}

func run(rows, batch int) error {
	ctx := context.Background()
	admin, stop, err := measure.Server(ctx)
	if err != nil {
		return err
	}
	defer stop()
	src, srcURL, err := newDB(ctx, admin, measure.NewName("bench_src"))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, _, err := newDB(ctx, admin, measure.NewName("bench_dst"))
	if err != nil {
		return err
	}
	defer dst.Close()

	fmt.Printf("filling %d rows…\n", rows)
	if err := sample.Events(ctx, srcURL, rows); err != nil {
		return err
	}
	sch, err := catalog.GetSchema(ctx, src, table)
	if err != nil {
		return err
	}
	if err := ddl.CreateTable(ctx, dst, sch); err != nil {
		return err
	}

	var phases []phase
	timed := func(name string, fn func() (string, error)) error {
		measure.ResetPeak()
		start := time.Now()
		res, err := fn()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		phases = append(phases, phase{Name: name, Seconds: time.Since(start).Seconds(), PeakMB: measure.PeakMB("self"), Result: res})
		return nil
	}
	truncate := func() error { _, err := dst.Exec(ctx, "TRUNCATE events"); return err }

	if err := timed("copy pipe → empty", func() (string, error) { return "", measure.Pipe(ctx, src, dst, table) }); err != nil {
		return err
	}
	if err := truncate(); err != nil {
		return err
	}
	if err := timed("sync → empty", func() (string, error) { return syncTable(ctx, src, dst, sch, importer.Skip, batch) }); err != nil {
		return err
	}
	if err := measure.Same(ctx, src, dst, table); err != nil {
		return err
	}
	if err := timed("sync overwrite → full", func() (string, error) { return syncTable(ctx, src, dst, sch, importer.Overwrite, batch) }); err != nil {
		return err
	}
	if err := measure.Same(ctx, src, dst, table); err != nil {
		return err
	}

	pipeT := phases[0].Seconds
	fmt.Printf("\n%-24s %10s %8s %10s  %s\n", "phase", "seconds", "× pipe", "peak MB", "result")
	for _, p := range phases {
		fmt.Printf("%-24s %10.2f %8.2f %10.1f  %s\n", p.Name, p.Seconds, p.Seconds/pipeT, p.PeakMB, p.Result)
	}
	out := map[string]any{
		"rows": rows, "batch": batch, "phases": phases,
		"empty_ratio":     measure.Round(phases[1].Seconds / pipeT),
		"overwrite_ratio": measure.Round(phases[2].Seconds / pipeT),
		"max_peak_rss_mb": max(phases[0].PeakMB, phases[1].PeakMB, phases[2].PeakMB),
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	return nil
}

func newDB(ctx context.Context, admin, name string) (*pgxpool.Pool, string, error) {
	u, err := measure.CreateDB(ctx, admin, name)
	if err != nil {
		return nil, "", err
	}
	pool, err := pgxpool.New(ctx, u)
	return pool, u, err
}

// syncTable moves the table the way Sync does: one COPY of the snapshot cut into
// batches (TableStream), in COPY binary, each imported as it comes with
// ImportCopyDeferred (one batch in flight: the export waits for the import).
func syncTable(ctx context.Context, src, dst *pgxpool.Pool, sch *catalog.Schema, strategy importer.Strategy, batch int) (string, error) {
	snap, err := exporter.Begin(ctx, src)
	if err != nil {
		return "", err
	}
	defer snap.Close(ctx)
	ts, err := snap.Stream(ctx, sch, nil, nil, true)
	if err != nil {
		return "", err
	}
	im, err := importer.New(ctx, dst, table, importer.Options{Strategy: strategy, Columns: ts.Columns()})
	if err != nil {
		return "", err
	}
	var res importer.Result
	err = ts.Run(ctx, src, exporter.StreamOptions{BatchRows: batch}, func(b exporter.Batch) error {
		r, _, err := im.ImportCopyDeferred(ctx, b.Data, b.Binary)
		res.Add(r)
		return err
	})
	if err == nil {
		err = im.Finish(ctx)
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("created %d updated %d skipped %d failed %d", res.Created, res.Updated, res.Skipped, res.Failed), nil
}
