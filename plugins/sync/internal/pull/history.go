package pull

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
)

// historyTimeout bounds a pull's history writes, which go on after the pull's
// context ended (a cancelled pull is recorded as cancelled).
const historyTimeout = 10 * time.Second

// record writes a history row for each table a pull touched, tables stopped by a
// cancellation as cancelled; a pull that failed before any table (refused,
// unreachable) gets one row saying why. Failed writes are logged.
func record(ctx context.Context, log *slog.Logger, st *site.Site, peer, by string, s strategies, results map[string]client.Result, pullErr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyTimeout)
	defer cancel()
	cancelled := errors.Is(pullErr, context.Canceled)
	write := func(rec history.Transfer) {
		if _, err := st.History.Record(ctx, rec); err != nil {
			log.Error("record pull in the history", "peer", peer, "table", rec.Table, "err", err)
		}
	}
	if pullErr != nil && len(results) == 0 {
		status := "failed"
		if cancelled {
			status = "cancelled"
		}
		write(history.Transfer{Direction: "receive", Peer: peer, Table: "(pull)", Strategy: string(s.def),
			Status: status, Error: pullErr.Error(), StartedBy: by})
		return
	}
	for table, r := range results {
		rec := history.Transfer{Direction: "receive", Peer: peer, Table: table, Strategy: string(s.of(table)), Requested: r.Requested,
			Rows: r.Rows, Bytes: r.Bytes, Created: r.Created, Updated: r.Updated, Skipped: r.Skipped, Failed: r.Failed,
			Duration: r.Duration, Status: "done", StartedBy: by}
		if r.Error != "" {
			rec.Status, rec.Error = "failed", r.Error
			if cancelled {
				rec.Status = "cancelled"
			}
		}
		write(rec)
	}
}
