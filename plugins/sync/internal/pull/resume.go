package pull

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/importer"
	"github.com/fiberkit/fiberkit/plugins/sync/internal/site"
)

// Interrupted is a pull whose receiving plugin stopped before it ended (killed,
// crashed, restarted), as the history recorded it: a table each, with the rows it
// got and, where known, the key of the last row applied.
type Interrupted struct {
	ID        string             `json:"id"`
	Sender    string             `json:"sender"`
	At        time.Time          `json:"at"`
	StartedBy string             `json:"started_by"`
	Tables    []history.Transfer `json:"tables"`
}

// Recover marks interrupted the pulls recorded as running that no live process
// owns (see history.Sweep), and brings the last keys of the interrupted tables up
// to date from the local tables where the key tells: a table that was missing or
// empty when its pull began holds exactly the sender's rows up to its greatest key
// (looked at each time, since a killed process's last batch may still commit just
// after its lock is gone). Call it when the module starts and before showing or
// resuming interrupted pulls; a live pull is left alone.
func Recover(ctx context.Context, log *slog.Logger, st *site.Site) error {
	swept, err := st.History.Sweep(ctx)
	if err != nil {
		return fmt.Errorf("recover interrupted pulls: %w", err)
	}
	for _, t := range swept {
		log.Warn("a pull was interrupted: the plugin stopped mid-pull", "pull", t.PullID, "table", t.Table, "sender", t.Peer, "rows", t.Rows)
	}
	entries, err := st.History.Interrupted(ctx)
	if err != nil {
		return fmt.Errorf("recover interrupted pulls: %w", err)
	}
	for _, t := range entries {
		fresh, err := st.History.FreshTarget(ctx, t.ID)
		if err != nil {
			return fmt.Errorf("recover interrupted pulls: %w", err)
		}
		if !fresh {
			continue
		}
		if len(t.Ranges) > 0 {
			// Split: the greatest key here is the last range's; each range's own
			// is the greatest within it.
			if err := recoverRanges(ctx, st, t); err != nil {
				log.Warn("pull: read the last keys applied", "table", t.Table, "err", err)
			}
			continue
		}
		key, err := LocalLastKey(ctx, st, t.Table)
		if err != nil {
			log.Warn("pull: read the last key applied", "table", t.Table, "err", err)
			continue
		}
		if key != nil && !slices.Equal(key, t.LastKey) {
			if err := st.History.SetLastKey(ctx, t.ID, key); err != nil {
				return fmt.Errorf("recover interrupted pulls: %w", err)
			}
		}
	}
	return nil
}

// Interrupts returns the interrupted pulls, oldest first, after Recover.
func Interrupts(ctx context.Context, log *slog.Logger, st *site.Site) ([]Interrupted, error) {
	if err := Recover(ctx, log, st); err != nil {
		return nil, err
	}
	entries, err := st.History.Interrupted(ctx)
	if err != nil {
		return nil, err
	}
	var out []Interrupted
	at := map[string]int{}
	for _, t := range entries {
		i, ok := at[t.PullID]
		if !ok {
			i = len(out)
			at[t.PullID] = i
			out = append(out, Interrupted{ID: t.PullID, Sender: t.Peer, At: t.At, StartedBy: t.StartedBy})
		}
		out[i].Tables = append(out[i].Tables, t)
	}
	return out, nil
}

// Find returns the interrupted pull id (after Recover).
func Find(ctx context.Context, log *slog.Logger, st *site.Site, id string) (Interrupted, error) {
	all, err := Interrupts(ctx, log, st)
	if err != nil {
		return Interrupted{}, err
	}
	for _, in := range all {
		if in.ID == id {
			return in, nil
		}
	}
	return Interrupted{}, fmt.Errorf("no interrupted pull %s", id)
}

// Plan is what resuming in pulls again: each table with its strategy, after its
// last key when one was recorded, from its start otherwise (its strategy makes the
// rows it already has harmless) — but an appending table that got rows and has no
// key is left out, since pulling it again would add them twice. Missing tables are
// created.
func (in Interrupted) Plan(by string) Plan {
	p := Plan{Strategy: string(importer.Skip), Strategies: map[string]string{}, AfterKeys: map[string][]string{},
		Ranges: map[string][]client.RangeState{}, CreateMissing: true, StartedBy: by, Resumes: in.ID}
	for _, t := range in.Tables {
		if t.Strategy == string(importer.Append) && t.Rows > 0 && len(t.LastKey) == 0 {
			continue
		}
		p.Tables = append(p.Tables, t.Table)
		p.Strategies[t.Table] = t.Strategy
		if len(t.Ranges) > 0 {
			p.Ranges[t.Table] = t.Ranges
		} else if len(t.LastKey) > 0 {
			p.AfterKeys[t.Table] = t.LastKey
		}
	}
	return p
}

// recoverRanges brings the last keys of an interrupted split table's ranges up to
// date from the local table, which was missing or empty when the pull began: each
// range's rows landed in key order, so its greatest key here is its last one
// applied. The entry's last key becomes the end of what is applied from the start.
func recoverRanges(ctx context.Context, st *site.Site, t history.Transfer) error {
	ranges := slices.Clone(t.Ranges)
	changed := false
	for i, r := range ranges {
		if r.Done {
			continue
		}
		key, err := LocalLastKeyIn(ctx, st, t.Table, r.After, r.Until)
		if err != nil {
			return err
		}
		if key != nil && !slices.Equal(key, r.LastKey) {
			ranges[i].LastKey, changed = key, true
		}
	}
	if !changed {
		return nil
	}
	if err := st.History.SetRanges(ctx, t.ID, ranges); err != nil {
		return err
	}
	if key := client.RangesAppliedKey(ranges); key != nil {
		return st.History.SetLastKey(ctx, t.ID, key)
	}
	return nil
}
