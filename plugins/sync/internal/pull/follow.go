package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/follow"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
	"github.com/fiberkit/fiberkit/plugins/sync/remote"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Follow pulls the plan's tables from the sender and then follows them (package
// follow) until ctx ends (nil) or the sender refuses. The first copy is recorded
// like any pull; the follow has a history entry of its own (direction follow),
// updated every few seconds with the changes applied and the lag. id names the
// follow: the same id resumes where it stopped.
func Follow(ctx context.Context, log *slog.Logger, st *site.Site, t Target, p Plan, id string) error {
	s, err := p.strategies()
	if err != nil {
		return err
	}
	if len(s.perTable) > 0 {
		return errors.New("follow: one strategy for every table (per-table strategies are for one-off pulls)")
	}
	tables := p.Tables
	if len(tables) == 0 {
		if tables, err = senderTables(ctx, st, t); err != nil {
			return err
		}
	}
	store := st.Follows
	started := time.Now()
	// A follow runs in one process at a time (a remote's lock): an entry of it
	// still running was left by a plugin killed mid-follow.
	if _, err := st.Pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET status = $4, error = $5
		WHERE direction = 'follow' AND peer = $1 AND started_by = $2 AND status = $3`, t.URL, p.StartedBy, history.Running, history.Interrupted,
		"the receiving plugin stopped mid-follow (killed, crashed or restarted); it resumed from the last transaction applied"); err != nil {
		log.Warn("close the follow's earlier entry", "err", err)
	}
	histID, err := st.History.Record(ctx, history.Transfer{Direction: "follow", Peer: t.URL, Table: strings.Join(tables, ", "),
		Strategy: string(s.def), Status: history.Running, StartedBy: p.StartedBy})
	if err != nil {
		log.Error("record follow in the history", "err", err)
	}
	report := func(ctx context.Context, fs syncapi.FollowStatus, status string) {
		if histID == 0 {
			return
		}
		err := st.History.UpdateFollow(ctx, histID, history.Transfer{Rows: fs.Changes, Skipped: int(fs.Conflicts), Duration: time.Since(started),
			Status: status, Error: fs.Error, LagBytes: fs.LagBytes, LagSeconds: fs.LagSeconds})
		if err != nil && ctx.Err() == nil {
			log.Warn("record follow progress", "err", err)
		}
	}
	err = follow.Run(ctx, st.Pool, store, follow.RunOptions{
		Follow:  follow.Follow{ID: id, Peer: t.URL, Tables: tables, Strategy: s.def},
		Connect: func(ctx context.Context) (*client.Client, error) { return Connect(ctx, st, t) },
		Copy: func(ctx context.Context, c *client.Client, tables []string) error {
			res, err := Transfer(ctx, log, st, c, t.URL, Plan{Tables: tables, Strategy: p.Strategy, CreateMissing: p.CreateMissing,
				IgnoreMissingColumns: p.IgnoreMissingColumns, BatchSize: p.BatchSize, StartedBy: p.StartedBy, Progress: p.Progress})
			if err != nil {
				return err
			}
			for _, r := range res {
				if r.Error != "" {
					return fmt.Errorf("%s: %s", r.Table, r.Error)
				}
			}
			return nil
		},
		Report: func(ctx context.Context, fs syncapi.FollowStatus) { report(ctx, fs, history.Running) },
		Log:    log,
	})
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
	defer cancel()
	if fs, gerr := store.Get(rctx, id); gerr == nil {
		status := "done"
		if err != nil {
			status = "failed"
		}
		report(rctx, fs, status)
	}
	return err
}

// senderTables lists every table the sender offers.
func senderTables(ctx context.Context, st *site.Site, t Target) ([]string, error) {
	c, err := Connect(ctx, st, t)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	list, err := c.ListTables(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, tb := range list {
		names[i] = tb.Name
	}
	return names, nil
}

// FollowRemote follows a remote whose schedule is "follow", with its token.
func FollowRemote(ctx context.Context, log *slog.Logger, st *site.Site, r remote.Remote, token string) error {
	return Follow(ctx, log, st, Target{URL: r.URL, Token: token, Via: "remote " + r.Name},
		Plan{Tables: r.Tables, Strategy: r.Strategy, CreateMissing: true, StartedBy: "remote:" + r.Name}, "remote:"+r.ID)
}
