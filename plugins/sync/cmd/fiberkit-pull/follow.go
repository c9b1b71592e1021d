package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// followRun is what -follow needs.
type followRun struct {
	url, token string
	tables     []string
	strategy   importer.Strategy
	options    client.Options
	transfer   client.TransferOptions
	stdout     io.Writer
	stderr     io.Writer
}

// runFollow copies the tables once and then applies the sender's changes until ctx
// ends (Ctrl-C), reconnecting after a cut; it prints the lag every few seconds. The
// follow is named by the sender's URL: running it again resumes where it stopped.
func runFollow(ctx context.Context, pool *pgxpool.Pool, r followRun) int {
	store, err := follow.Open(ctx, pool)
	if err != nil {
		fmt.Fprintln(r.stderr, "fiberkit-pull: local database:", err)
		return exitLocalDB
	}
	connect := func(ctx context.Context) (*client.Client, error) {
		return client.Connect(ctx, r.url, "", r.options)
	}
	tables := r.tables
	if len(tables) == 0 {
		c, err := connect(ctx)
		if err != nil {
			fmt.Fprintln(r.stderr, "fiberkit-pull: could not connect:", err)
			return exitUnreachable
		}
		list, err := c.ListTables(ctx)
		c.Close()
		if err != nil {
			fmt.Fprintln(r.stderr, "fiberkit-pull:", err)
			return exitFailed
		}
		for _, t := range list {
			tables = append(tables, t.Name)
		}
	}
	err = follow.Run(ctx, pool, store, follow.RunOptions{
		Follow:  follow.Follow{ID: r.url, Peer: r.url, Tables: tables, Strategy: r.strategy},
		Connect: connect,
		Copy: func(ctx context.Context, c *client.Client, tables []string) error {
			results, err := c.TransferAll(ctx, pool, client.TransferAllOptions{Tables: tables, Strategy: r.strategy, TransferOptions: r.transfer})
			printSummary(r.stdout, results)
			return err
		},
		Report: func(_ context.Context, s syncapi.FollowStatus) {
			fmt.Fprintf(r.stdout, "%s  %s at %s: %d transactions, %d changes, %d conflicts, lag %s / %d bytes%s\n",
				time.Now().Format(time.TimeOnly), s.State, s.Position, s.Transactions, s.Changes, s.Conflicts,
				time.Duration(s.LagSeconds*float64(time.Second)).Round(time.Millisecond), s.LagBytes, errSuffix(s.Error))
		},
		ReportEvery: 5 * time.Second,
		Log:         slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	switch {
	case errors.Is(err, follow.ErrRefused):
		fmt.Fprintln(r.stderr, "fiberkit-pull: refused:", err)
		return exitRefused
	case err != nil:
		fmt.Fprintln(r.stderr, "fiberkit-pull:", err)
		return exitFailed
	}
	return exitOK
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (" + strings.TrimSpace(e) + ")"
}
