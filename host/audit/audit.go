// Package audit writes the host's audit log: who did what to which module, when.
// The table, fiberkit_audit, is created by the settings store's migrations.
// Callers must never put secret values in an entry's detail.
package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Log appends entries to the audit table.
type Log struct {
	pool *pgxpool.Pool
}

// New returns a Log writing through pool.
func New(pool *pgxpool.Pool) *Log { return &Log{pool: pool} }

// Log records one entry.
func (l *Log) Log(ctx context.Context, actor, module, action string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s: encode detail: %w", action, err)
	}
	if _, err := l.pool.Exec(ctx, `INSERT INTO fiberkit_audit (actor, module, action, detail) VALUES ($1, $2, $3, $4)`,
		actor, module, action, raw); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// Entry is one audit log row.
type Entry struct {
	ID     int64
	Actor  string
	Module string
	Action string
	Detail map[string]any
}

// Recent returns the newest entries, newest first.
func (l *Log) Recent(ctx context.Context, limit int) ([]Entry, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, actor, module, action, detail FROM fiberkit_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.ID, &e.Actor, &e.Module, &e.Action, &e.Detail); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
