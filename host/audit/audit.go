// Package audit writes the host's audit log: who did what to which module, when.
//
// The table, fiberkit_audit(id, at, actor, module, action, detail jsonb), is created
// by the host's one migration list, run by settings.Open. Callers must never put a
// secret value in an entry's detail: the settings store, for one, records a changed
// secret as "changed".
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what a Log writes through: a *pgxpool.Pool, a *pgx.Conn, or a pgx.Tx when the
// entry must commit or roll back with the change it records.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Log appends entries to the audit table.
type Log struct {
	db DB
}

// New returns a Log writing through db.
func New(db DB) *Log { return &Log{db: db} }

// Log records one entry. detail may be nil; it is stored as a JSON object.
func (l *Log) Log(ctx context.Context, actor, module, action string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	raw, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("audit %s of %s: encode detail: %w", action, module, err)
	}
	if _, err := l.db.Exec(ctx, `INSERT INTO fiberkit_audit (actor, module, action, detail) VALUES ($1, $2, $3, $4)`,
		actor, module, action, raw); err != nil {
		return fmt.Errorf("audit %s of %s: %w", action, module, err)
	}
	return nil
}

// Entry is one audit log row.
type Entry struct {
	ID     int64
	At     time.Time
	Actor  string
	Module string
	Action string
	Detail map[string]any
}

// Recent returns up to limit of the newest entries, newest first; only module's
// when module is not "".
func (l *Log) Recent(ctx context.Context, module string, limit int) ([]Entry, error) {
	rows, err := l.db.Query(ctx, `SELECT id, at, actor, module, action, detail FROM fiberkit_audit
		WHERE $1 = '' OR module = $1 ORDER BY id DESC LIMIT $2`, module, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Module, &e.Action, &e.Detail)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}
