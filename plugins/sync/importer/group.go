package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Group imports several tables together, for tables whose foreign keys form a cycle
// (pagila's store.manager_staff_id → staff and staff.store_id → store). Imported one
// table at a time, a new store and its new manager can never land: whichever goes
// first refers to a row that is not there yet, and with NOT NULL columns and
// constraints that are not deferrable — a schema the receiving app owns, which the
// import may not alter — no second pass or SET CONSTRAINTS can get around it.
//
// PostgreSQL checks a foreign key that is not deferred at the end of the statement,
// and one statement may write several tables (each INSERT a data-modifying WITH). So
// a Group stages every batch it is given in a temporary table of one transaction,
// and Commit merges all the tables with one statement: each table with its own
// importer's strategy and statement, the checks then seeing every table's new rows.
//
// A Group holds one connection and one transaction from NewGroup to Commit or Close;
// the staged rows stay on the server, not in memory. Use it only for the tables of a
// cycle (catalog.Cycles finds them); the others import batch by batch. Each importer
// is finished (Finish) after Commit as usual.
type Group struct {
	conn    *pgxpool.Conn
	tx      pgx.Tx
	members []*member
}

// member is one table of a group: its importer and the temp table its rows are staged in.
type member struct {
	im    *Importer
	stage string // pg_temp.fk_group_N, of the temp table's shape (ord, c1…cN)
	rows  int
}

// NewGroup begins a group import on one connection of pool.
func NewGroup(ctx context.Context, pool *pgxpool.Pool) (*Group, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin group import: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("begin group import: %w", err)
	}
	if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
		_ = tx.Rollback(ctx)
		conn.Release()
		return nil, fmt.Errorf("begin group import: set session settings: %w", err)
	}
	return &Group{conn: conn, tx: tx}, nil
}

// Add stages one batch of rows for im's table, in COPY text format as ImportCopy
// takes it. Nothing is written to the table before Commit. Each table has one
// importer in a group; its rows may come in any number of batches, interleaved with
// other tables' (the last row of a key wins across them all). After an error the
// group's transaction is lost: Close it and import again.
func (g *Group) Add(ctx context.Context, im *Importer, data []byte) error {
	if g.tx == nil {
		return errors.New("group import: add after commit or close")
	}
	m, err := g.member(ctx, im)
	if err != nil {
		return err
	}
	if im.drop != nil {
		if data, err = im.cutFields(data); err != nil {
			return fmt.Errorf("import %s: %w", im.sch.Name, err)
		}
	}
	rows := bytes.Count(data, []byte{'\n'})
	if rows == 0 {
		return nil
	}
	tmps := make([]string, len(im.cols))
	for i, f := range im.cols {
		tmps[i] = f.tmp
	}
	copySQL := fmt.Sprintf("COPY %s (%s) FROM STDIN", m.stage, strings.Join(tmps, ", "))
	if _, err := g.tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), copySQL); err != nil {
		return fmt.Errorf("import %s: %w: %v", im.sch.Name, ErrMalformedBatch, err)
	}
	m.rows += rows
	return nil
}

// member returns im's member of the group, adding it (and its staging table) the first time.
func (g *Group) member(ctx context.Context, im *Importer) (*member, error) {
	for _, m := range g.members {
		if m.im == im {
			return m, nil
		}
		if catalog.IdentOf(m.im.sch) == catalog.IdentOf(im.sch) {
			return nil, fmt.Errorf("import %s: group import: the table already has another importer in the group", im.sch.Name)
		}
	}
	m := &member{im: im, stage: fmt.Sprintf("pg_temp.fk_group_%d", len(g.members)+1)}
	defs := make([]string, len(im.cols))
	for i, f := range im.cols {
		defs[i] = f.tmp + " text"
	}
	create := fmt.Sprintf("CREATE TEMP TABLE %s (ord bigint GENERATED ALWAYS AS IDENTITY, %s) ON COMMIT DROP",
		strings.TrimPrefix(m.stage, "pg_temp."), strings.Join(defs, ", "))
	if _, err := g.tx.Exec(ctx, create); err != nil {
		return nil, fmt.Errorf("import %s: create staging table: %w", im.sch.Name, err)
	}
	g.members = append(g.members, m)
	return m, nil
}

// Commit writes every staged row with one statement and commits. It returns one
// Result per table, in the order their importers were first added.
//
// When that statement is refused (a bad value, a row referring to a key no table has),
// each table's rows are replayed one at a time, in the order the tables were added,
// under savepoints: the rows that stand on their own land, and each refused one is
// reported with its key and reason — rows of the cycle that needed each other among
// them, as they can only land together.
func (g *Group) Commit(ctx context.Context) ([]Result, error) {
	if g.tx == nil {
		return nil, errors.New("group import: commit after commit or close")
	}
	defer g.Close(ctx)
	results := make([]Result, len(g.members))
	var ctes, counts []string
	var live []int // the members with rows, in the statement's order
	for i, m := range g.members {
		if m.rows == 0 {
			continue
		}
		n := len(live) + 1
		ctes = append(ctes, fmt.Sprintf("m%d AS (%s)", n, m.im.insertSQL(m.stage, "")))
		counts = append(counts, fmt.Sprintf("(%s) c%d", m.im.counting(fmt.Sprintf("m%d", n)), n))
		live = append(live, i)
	}
	if len(live) > 0 {
		sql := "WITH " + strings.Join(ctes, ", ") + " SELECT * FROM " + strings.Join(counts, ", ")
		if _, err := g.tx.Exec(ctx, "SAVEPOINT fk_group"); err != nil {
			return nil, fmt.Errorf("group import: savepoint before merge: %w", err)
		}
		got := make([]int, 2*len(live))
		dest := make([]any, len(got))
		for i := range got {
			dest[i] = &got[i]
		}
		err := g.tx.QueryRow(ctx, sql).Scan(dest...)
		switch {
		case err == nil:
			for j, i := range live {
				c, u := got[2*j], got[2*j+1]
				results[i] = Result{Created: c, Updated: u, Skipped: g.members[i].rows - c - u}
			}
		case !replayable(err):
			return nil, fmt.Errorf("group import %s: merge: %w", g.names(), err)
		default:
			if _, rerr := g.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT fk_group"); rerr != nil {
				return nil, fmt.Errorf("group import %s: roll back failed merge (%v): %w", g.names(), err, rerr)
			}
			for _, i := range live {
				if results[i], err = g.replay(ctx, g.members[i]); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := g.tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("group import %s: commit: %w", g.names(), err)
	}
	return results, nil
}

// replay imports m's staged rows one at a time (Importer.rowByRow), its staging
// table taking the temp table's name for the while.
func (g *Group) replay(ctx context.Context, m *member) (Result, error) {
	if _, err := g.tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s RENAME TO %s", m.stage, strings.TrimPrefix(tempTable, "pg_temp."))); err != nil {
		return Result{}, fmt.Errorf("import %s: stage rows for replay: %w", m.im.sch.Name, err)
	}
	res, err := m.im.rowByRow(ctx, g.tx, m.rows, func(int64) string { return m.im.rowSQL })
	if err != nil {
		return Result{}, fmt.Errorf("import %s: %w", m.im.sch.Name, err)
	}
	if _, err := g.tx.Exec(ctx, "DROP TABLE "+tempTable); err != nil {
		return Result{}, fmt.Errorf("import %s: drop replayed rows: %w", m.im.sch.Name, err)
	}
	return res, nil
}

// names lists the group's tables, for errors.
func (g *Group) names() string {
	names := make([]string, len(g.members))
	for i, m := range g.members {
		names[i] = m.im.sch.Name
	}
	return quotedList(names)
}

// Close rolls back what was not committed and releases the group's connection. It
// may be called more than once, and after Commit.
func (g *Group) Close(ctx context.Context) {
	if g.tx != nil {
		_ = g.tx.Rollback(ctx)
		g.tx = nil
	}
	if g.conn != nil {
		g.conn.Release()
		g.conn = nil
	}
}
