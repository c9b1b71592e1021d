package capture

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// SnapshotSlot is a logical replication slot just created together with a snapshot
// of the database taken exactly at the slot's start: every transaction committed
// before Position is in the snapshot, every later one will be streamed by the slot.
// A copy read in the snapshot followed by the slot's changes therefore misses nothing
// and holds nothing twice. The snapshot can be imported (SET TRANSACTION SNAPSHOT)
// only until Close, which must come once it has been.
type SnapshotSlot struct {
	// Slot is the slot's name.
	Slot string
	// Position is where the slot's changes begin (its consistent point).
	Position LSN
	// Snapshot names the exported snapshot.
	Snapshot string
	conn     *pgconn.PgConn
}

// CreateSlotWithSnapshot creates the logical replication slot called name (plugin
// pgoutput) on a replication connection opened with connString, exporting its
// snapshot. A slot of that name must not exist (Teardown it first).
func CreateSlotWithSnapshot(ctx context.Context, connString, name string) (*SnapshotSlot, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("capture: replication connection: %w", err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("capture: create replication slot %s: %w", name, err)
	}
	pos, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		_ = conn.Close(context.Background())
		return nil, fmt.Errorf("capture: create replication slot %s: consistent point %q: %w", name, res.ConsistentPoint, err)
	}
	return &SnapshotSlot{Slot: name, Position: pos, Snapshot: res.SnapshotName, conn: conn}, nil
}

// Close ends the replication connection that holds the snapshot; the slot stays.
func (s *SnapshotSlot) Close() {
	_ = s.conn.Close(context.Background())
}

// SlotPosition returns the slot's confirmed position (what was acknowledged), and
// whether the slot exists.
func SlotPosition(ctx context.Context, db DB, name string) (LSN, bool, error) {
	var pos *string
	err := db.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", name).Scan(&pos)
	if isNoRows(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("capture: look up slot %s: %w", name, err)
	}
	if pos == nil {
		return 0, true, nil
	}
	lsn, err := pglogrepl.ParseLSN(*pos)
	if err != nil {
		return 0, true, fmt.Errorf("capture: slot %s: %w", name, err)
	}
	return lsn, true, nil
}
