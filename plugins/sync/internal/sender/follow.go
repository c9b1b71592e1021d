package sender

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/capture"
	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/connection"
	"github.com/fiberkit/fiberkit/plugins/sync/exporter"
	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/mask"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// follower is a receiver's follow on this connection: set up by request:follow
// (a slot and its publication, named for the permanent connection), streaming once
// follow:start came. The slot is the follow's memory between connections: it keeps
// the changes the receiver has not acknowledged.
type follower struct {
	slot   string
	tables map[string]bool // the followed tables, as listed (public ones bare)
	// masks are the followed tables' masks (none: nil), applied to every change's
	// values as the copy's reads apply them.
	masks map[string]*mask.Table
	names []string
	from  capture.LSN // where the receiver's changes start

	mu      sync.Mutex
	started bool
	credit  int
	more    chan struct{}
	sent    capture.LSN // the last transaction sent
	acked   capture.LSN // the receiver's last acknowledged position
	ackedAt time.Time
	// unacked are the commit times of the transactions sent and not acknowledged,
	// oldest first: the sender's side of the lag.
	unacked []sentTxn
	stream  *capture.Stream
	rows    int64
	bytes   int64
	// walEnd is the sender's WAL end as last read, at walEndAt (read at most every
	// walEndEvery, for the receiver's lag).
	walEnd   string
	walEndAt time.Time
	// maxRecords is the connection's total records cap as last read (0: none):
	// with one, each transaction's changes are taken from it before they are sent.
	maxRecords int64
}

type sentTxn struct {
	end    capture.LSN
	commit time.Time
}

// followSlot names a permanent connection's follow slot and publication.
func followSlot(connID string) string {
	return "fiberkit_follow_" + strings.ReplaceAll(connID, "-", "")
}

// Follow timing.
const (
	// followRecheckEvery is how often a follow re-reads what it may send: the
	// connection's limits, the tables it may read, the masking rules.
	followRecheckEvery = 10 * time.Second
	// walEndEvery bounds how often a follow reads the sender's WAL end.
	walEndEvery = 250 * time.Millisecond
	// keepaliveEvery is how often an idle follow tells the receiver where the WAL ends.
	keepaliveEvery = time.Second
	// followRecordEvery is how often a follow's history entry and acknowledged
	// position are written.
	followRecordEvery = 2 * time.Second
)

// requestFollow answers request:follow: a new follow gets a fresh slot whose
// exported snapshot becomes the connection's snapshot (the tables the receiver then
// pulls are read from it, so the copy and the changes join exactly at the slot's
// start); a resumed one checks that its slot still holds the changes after From.
func (p *peer) requestFollow(ctx context.Context, f wire.Frame, req wire.FollowRequest) error {
	if p.connID == "" {
		return p.fail(f, wire.ErrFollowNotAllowed, "following needs a permanent connection (a code is for one pull)")
	}
	conn, err := p.st.Conns.Standing(ctx, p.connID, p.token, p.addr)
	if err != nil {
		return p.failWith(f, err)
	}
	if !conn.Limits.Follow {
		return p.fail(f, wire.ErrFollowNotAllowed, "this connection may not follow: an admin of the sending site allows it on the connection's page")
	}
	if err := capture.Check(ctx, p.st.Pool); err != nil {
		var nr *capture.NotReadyError
		if errors.As(err, &nr) {
			return p.fail(f, wire.ErrLiveUnavailable, err.Error())
		}
		return p.failWith(f, err)
	}
	ids := make([]catalog.Ident, 0, len(req.Tables))
	names := make([]string, 0, len(req.Tables))
	masks := map[string]*mask.Table{}
	for _, t := range req.Tables {
		id, mt, err := p.followable(ctx, t)
		if mt != nil {
			masks[id.String()] = mt
		}
		if err != nil {
			return p.failWith(f, err)
		}
		if len(conn.Limits.FollowTables) > 0 && !slices.Contains(conn.Limits.FollowTables, id.String()) {
			return p.fail(f, wire.ErrFollowNotAllowed, fmt.Sprintf("this connection may follow %s only, not %s", strings.Join(conn.Limits.FollowTables, ", "), id))
		}
		ids = append(ids, id)
		names = append(names, id.String())
	}
	slices.Sort(names)
	names = slices.Compact(names)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.follow != nil {
		return p.fail(f, wire.ErrBadRequest, "this connection already asked to follow")
	}
	fw := &follower{slot: followSlot(p.connID), names: names, tables: map[string]bool{}, masks: masks, more: make(chan struct{}, 1)}
	for _, n := range names {
		fw.tables[n] = true
	}
	if req.From == "" {
		if len(p.streams) > 0 {
			return p.fail(f, wire.ErrBadRequest, "request:follow must come before any table is streamed")
		}
		pos, err := p.newFollow(ctx, fw, ids)
		if errors.Is(err, errSlotTimeout) {
			return p.fail(f, wire.ErrInternal, err.Error())
		}
		if err != nil {
			p.srv.log.Error("start follow", "connection", p.connID, "err", err)
			return p.fail(f, wire.ErrInternal, "could not start following on the sending site")
		}
		fw.from = pos
	} else {
		from, _ := wire.ParseLSN(req.From) // checked by Validate
		if code, msg := p.resumable(ctx, fw, capture.LSN(from)); code != "" {
			return p.fail(f, code, msg)
		}
		fw.from = capture.LSN(from)
	}
	fw.acked = fw.from
	p.follow = fw
	return p.reply(f, wire.ResponseFollow, wire.FollowReply{Tables: names, Position: wire.FormatLSN(uint64(fw.from))})
}

// followable resolves a table the receiver may follow: one it may read (visible),
// with a primary key (the receiver matches changes to its rows by key), and whose
// rows all come under its own name in the change stream — a partitioned table
// whose partitions the receiver may all read (their changes are published as the
// root's), never an inheritance parent with children (theirs would come under the
// children's names, and a hidden partition's under the root's).
func (p *peer) followable(ctx context.Context, table string) (catalog.Ident, *mask.Table, error) {
	id, hidden, err := p.visible(ctx, p.st.Pool, table)
	if err != nil {
		return catalog.Ident{}, nil, err
	}
	if len(hidden) > 0 {
		return catalog.Ident{}, nil, fmt.Errorf("%w: %q has partitions or child tables this connection may not read, so it cannot be followed", catalog.ErrUnknownTable, table)
	}
	var inherited bool
	if err := p.st.Pool.QueryRow(ctx, `SELECT c.relkind <> 'p' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid)
		FROM pg_class c WHERE c.oid = $1::regclass`, id.Quoted()).Scan(&inherited); err != nil {
		return catalog.Ident{}, nil, fmt.Errorf("follow %s: %w", id, err)
	}
	if inherited {
		return catalog.Ident{}, nil, fmt.Errorf("%w: %q has inheritance children, whose changes a follow of it would not carry; follow them by name", catalog.ErrUnknownTable, table)
	}
	sch, err := catalog.GetSchemaIn(ctx, p.st.Pool, id.Schema, id.Name)
	if err != nil {
		return catalog.Ident{}, nil, err
	}
	if len(sch.PrimaryKey) == 0 {
		return catalog.Ident{}, nil, fmt.Errorf("%w: %q has no primary key, which following needs", catalog.ErrUnknownTable, table)
	}
	mt, err := p.followMask(ctx, sch)
	return id, mt, err
}

// followMask resolves the masks of a followed table the way a copy's snapshot
// does, under catalog.TextSettings (a fixed value's text is then the copy's).
func (p *peer) followMask(ctx context.Context, sch *catalog.Schema) (*mask.Table, error) {
	var mt *mask.Table
	err := pgx.BeginTxFunc(ctx, p.st.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, catalog.TextSettings); err != nil {
			return fmt.Errorf("follow %s: masks: %w", sch.Name, err)
		}
		var err error
		mt, err = p.maskTable(ctx, tx, sch)
		return err
	})
	return mt, err
}

// newFollow replaces the connection's follow slot with a fresh one over ids and
// makes its snapshot the connection's. Called with p.mu held.
func (p *peer) newFollow(ctx context.Context, fw *follower, ids []catalog.Ident) (capture.LSN, error) {
	pool := p.st.Pool
	if err := capture.Teardown(ctx, pool, fw.slot); err != nil {
		return 0, err
	}
	// Every column of the old row in updates and deletes: the receiver tells its
	// own edits from the row the sender changed by them.
	for _, id := range ids {
		var ident string
		if err := pool.QueryRow(ctx, "SELECT relreplident::text FROM pg_class WHERE oid = $1::regclass", id.Quoted()).Scan(&ident); err != nil {
			return 0, fmt.Errorf("replica identity of %s: %w", id, err)
		}
		if ident != "f" {
			if _, err := pool.Exec(ctx, "ALTER TABLE "+id.Quoted()+" REPLICA IDENTITY FULL"); err != nil {
				return 0, fmt.Errorf("replica identity of %s: %w", id, err)
			}
		}
	}
	// Recorded before the slot exists, so the sweep of slots no connection may
	// use (internal/server) never takes this one for an orphan.
	_, err := pool.Exec(ctx, `INSERT INTO fiberkit_sync_followers (connection_id, slot, tables, acked_lsn, acked_at, started_at)
		VALUES ($1::uuid, $2, $3, '0/0', NULL, now())
		ON CONFLICT (connection_id) DO UPDATE SET slot = $2, tables = $3, acked_lsn = '0/0', acked_at = NULL, started_at = now()`,
		p.connID, fw.slot, fw.names)
	if err != nil {
		return 0, fmt.Errorf("record follower: %w", err)
	}
	if err := capture.Publish(ctx, pool, fw.slot, ids); err != nil {
		return 0, err
	}
	// A partitioned table's changes come under its own name, not its partitions'.
	if _, err := pool.Exec(ctx, "ALTER PUBLICATION "+pgx.Identifier{fw.slot}.Sanitize()+" SET (publish_via_partition_root = true)"); err != nil {
		return 0, fmt.Errorf("publication %s: %w", fw.slot, err)
	}
	// A new slot waits until every transaction writing on the sender now has
	// ended; one left open holds it, so it gets a bound and a clear error.
	sctx, cancel := context.WithTimeout(ctx, slotCreateTimeout)
	defer cancel()
	ss, err := capture.CreateSlotWithSnapshot(sctx, pool.Config().ConnConfig.ConnString(), fw.slot)
	if err != nil {
		if sctx.Err() != nil && ctx.Err() == nil {
			return 0, fmt.Errorf("%w: a transaction on the sending database stayed open for %s (a follow starts once those open when it is asked have ended)", errSlotTimeout, slotCreateTimeout)
		}
		return 0, err
	}
	defer ss.Close()
	pos, err := func() (capture.LSN, error) {
		snap, err := exporter.BeginAt(ctx, pool, ss.Snapshot)
		if err != nil {
			return 0, err
		}
		if p.snap != nil {
			p.snap.Close(ctx)
		}
		p.snap = snap
		if _, err := pool.Exec(ctx, `UPDATE fiberkit_sync_followers SET acked_lsn = $2::pg_lsn WHERE connection_id = $1::uuid`, p.connID, ss.Position.String()); err != nil {
			return 0, fmt.Errorf("record follower: %w", err)
		}
		return ss.Position, nil
	}()
	if err != nil {
		// A slot nobody will read must not hold the WAL.
		ss.Close()
		rctx, rcancel := detached(ctx)
		if terr := capture.Teardown(rctx, pool, fw.slot); terr != nil {
			p.srv.log.Error("drop the follow slot of a failed start", "slot", fw.slot, "err", terr)
		}
		rcancel()
	}
	return pos, err
}

// slotCreateTimeout bounds the wait for a follow's slot (see newFollow).
const slotCreateTimeout = time.Minute

// errSlotTimeout: a new follow's slot waited too long for the sender's open
// transactions.
var errSlotTimeout = errors.New("the follow could not start")

// resumable checks that the connection's slot still holds every change after from
// for the same tables, and answers the error code and message when it does not.
//
// The slot's confirmed position may be past from without anything lost: an idle
// stream lets the slot keep up with the WAL once every transaction it delivered is
// acknowledged (capture.Stream), and what it skips then holds nothing for the
// follow. What the receiver acknowledged it had applied is the bound instead: a
// receiver acknowledges only what it recorded, and its position never moves back,
// so a position before the one recorded here is another receiver's (the same
// token used twice) or a database that lost what it had applied.
func (p *peer) resumable(ctx context.Context, fw *follower, from capture.LSN) (string, string) {
	var tables []string
	var acked string
	err := p.st.Pool.QueryRow(ctx, `SELECT tables, acked_lsn::text FROM fiberkit_sync_followers WHERE connection_id = $1::uuid`, p.connID).Scan(&tables, &acked)
	if errors.Is(err, pgx.ErrNoRows) {
		return wire.ErrFollowLost, "this sender has no follow for the connection: copy the tables again"
	}
	if err != nil {
		p.srv.log.Error("look up follower", "err", err)
		return wire.ErrInternal, "the request failed on the sending site"
	}
	slices.Sort(tables)
	if !slices.Equal(tables, fw.names) {
		return wire.ErrFollowLost, fmt.Sprintf("the follow on this sender is of %s: start a new follow to change its tables", strings.Join(tables, ", "))
	}
	ackedLSN, err := wire.ParseLSN(acked)
	if err != nil {
		p.srv.log.Error("look up follower", "err", err)
		return wire.ErrInternal, "the request failed on the sending site"
	}
	_, ok, err := capture.SlotPosition(ctx, p.st.Pool, fw.slot)
	switch {
	case err != nil:
		p.srv.log.Error("look up follow slot", "err", err)
		return wire.ErrInternal, "the request failed on the sending site"
	case !ok:
		return wire.ErrFollowLost, "the follow's replication slot is gone on the sender: copy the tables again"
	case from < capture.LSN(ackedLSN):
		return wire.ErrFollowLost, fmt.Sprintf("the receiver's position %s is before what it acknowledged (%s): another site follows with this connection, or the receiving database lost changes; copy the tables again", from, capture.LSN(ackedLSN))
	}
	return "", ""
}

// startFollow answers follow:start: the slot's changes after From stream to the
// receiver as follow:txn frames, at most Credit transactions ahead of its acks.
func (p *peer) startFollow(ctx context.Context, f wire.Frame, req wire.FollowStartPayload) error {
	p.mu.Lock()
	fw := p.follow
	p.mu.Unlock()
	if fw == nil {
		return p.fail(f, wire.ErrBadRequest, "send request:follow first")
	}
	from, _ := wire.ParseLSN(req.From)
	fw.mu.Lock()
	if fw.started {
		fw.mu.Unlock()
		return p.fail(f, wire.ErrBadRequest, "already following")
	}
	if capture.LSN(from) < fw.from {
		fw.mu.Unlock()
		return p.fail(f, wire.ErrBadRequest, fmt.Sprintf("from: the follow starts at %s", fw.from))
	}
	fw.started = true
	fw.credit = req.Credit
	if fw.credit == 0 {
		fw.credit = wire.DefaultFollowCredit
	}
	fw.mu.Unlock()
	// The slot may be past from (see resumable): it streams from where it is, and
	// the stream must not report an older position back to it.
	start := capture.LSN(from)
	if pos, ok, err := capture.SlotPosition(ctx, p.st.Pool, fw.slot); err == nil && ok && pos > start {
		start = pos
	}
	// A connection cut before this one's sender noticed may still stream from the
	// slot: this receiver holds the connection's token now, so that one ends.
	if err := capture.Release(ctx, p.st.Pool, fw.slot); err != nil {
		p.srv.log.Error("release follow slot", "connection", p.connID, "err", err)
		return p.fail(f, wire.ErrInternal, "could not stream the changes on the sending site")
	}
	stream, err := capture.Start(ctx, p.st.Pool.Config().ConnConfig.ConnString(), capture.Options{
		Slot: fw.slot, Publication: fw.slot, StartLSN: start, StandbyInterval: time.Second, Buffer: 16})
	if err != nil {
		p.srv.log.Error("start follow stream", "connection", p.connID, "err", err)
		return p.fail(f, wire.ErrInternal, "could not stream the changes on the sending site")
	}
	fw.mu.Lock()
	fw.stream = stream
	fw.mu.Unlock()
	if err := p.ok(f, map[string]any{"position": req.From}); err != nil {
		_ = stream.Close()
		return err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer stream.Close()
		p.runFollow(ctx, fw, stream)
	}()
	return nil
}

// runFollow sends the stream's transactions until the connection ends, recording
// the follow in the history (direction follower) as it goes.
func (p *peer) runFollow(ctx context.Context, fw *follower, stream *capture.Stream) {
	started := time.Now()
	// One connection's follow streams on one connection at a time (its slot is
	// used by one stream): an entry of it still running was left by a plugin that
	// was killed mid-follow.
	if _, err := p.st.Pool.Exec(ctx, `UPDATE fiberkit_sync_transfers SET status = $3, error = $4
		WHERE direction = 'follower' AND started_by = $1 AND status = $2`, p.startedBy(), history.Running, history.Interrupted,
		"the sending plugin stopped mid-follow (killed, crashed or restarted); the receiver resumed"); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("close the follow's earlier entry", "connection", p.connID, "err", err)
	}
	histID := p.record(ctx, history.Transfer{Direction: "follower", Peer: p.addr, Table: strings.Join(fw.names, ", "),
		Status: "running", StartedBy: p.startedBy(), Masks: fw.maskStrings()})
	err := p.follow1(ctx, fw, stream, func() { p.recordFollow(ctx, fw, histID, started, "running", nil) })
	status := "done"
	var ref *connection.Refusal
	var changed *followChanged
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.As(err, &changed):
		// What was sent so far no longer holds: the slot goes, so the receiver's
		// next request finds the follow lost and copies again (or is refused).
		status = "failed"
		stream.Close()
		rctx, cancel := detached(ctx)
		if terr := capture.Teardown(rctx, p.st.Pool, fw.slot); terr != nil {
			p.srv.log.Error("drop the follow slot", "slot", fw.slot, "err", terr)
		}
		cancel()
		_ = p.push(wire.FollowEnd, wire.FollowEndPayload{Error: wire.ErrFollowLost, Message: changed.Error()})
	case errors.As(err, &ref):
		status = "failed"
		_ = p.push(wire.FollowEnd, wire.FollowEndPayload{Error: ref.Reason, Message: ref.Detail})
	default:
		status = "failed"
		p.srv.log.Error("follow failed", "connection", p.connID, "err", err)
		_ = p.push(wire.FollowEnd, wire.FollowEndPayload{Error: wire.ErrInternal, Message: "the follow failed on the sending site"})
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	p.recordFollow(rctx, fw, histID, started, status, err)
}

// follow1 is runFollow's loop; record is called every followRecordEvery.
func (p *peer) follow1(ctx context.Context, fw *follower, stream *capture.Stream, record func()) error {
	conn, err := p.st.Conns.Standing(ctx, p.connID, p.token, p.addr)
	if err != nil {
		return err
	}
	pace := newPacer(conn.Limits.FollowChangesPerSecond)
	fw.mu.Lock()
	fw.maxRecords = conn.Limits.MaxRecords
	fw.mu.Unlock()
	keepalive := time.NewTicker(keepaliveEvery)
	defer keepalive.Stop()
	recordT := time.NewTicker(followRecordEvery)
	defer recordT.Stop()
	recheck := time.NewTicker(followRecheckEvery)
	defer recheck.Stop()
	idleSince := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case txn, ok := <-stream.Txns():
			if !ok {
				if err := stream.Err(); err != nil {
					return fmt.Errorf("follow %s: %w", fw.slot, err)
				}
				return nil
			}
			if err := p.sendTxn(ctx, fw, txn, pace); err != nil {
				return err
			}
			idleSince = time.Now()
		case <-keepalive.C:
			if time.Since(idleSince) < keepaliveEvery {
				continue
			}
			end, err := p.walEnd(ctx, fw)
			if err != nil {
				return err
			}
			fw.mu.Lock()
			caughtUp := len(fw.unacked) == 0 && len(stream.Txns()) == 0
			fw.mu.Unlock()
			if err := p.push(wire.FollowKeepalive, wire.Keepalive{SenderPosition: end, At: time.Now().UTC().Format(time.RFC3339Nano), CaughtUp: caughtUp}); err != nil {
				return nil // the receiver is gone
			}
		case <-recordT.C:
			record()
		case <-recheck.C:
			if err := p.recheckFollow(ctx, fw, pace); err != nil {
				return err
			}
		}
	}
}

// followChanged ends a follow whose tables or masks changed under it: what the
// receiver holds was sent under the old ones.
type followChanged struct{ why string }

func (e *followChanged) Error() string {
	return "the follow changed on the sending site (" + e.why + "): copy the tables again"
}

// recheckFollow re-reads what the follow may send: the connection's standing and
// rate (applied at once) and records cap, the tables it may read and follow, and
// their masks. A table no longer allowed or masks changed end the follow
// (*followChanged).
func (p *peer) recheckFollow(ctx context.Context, fw *follower, pace *pacer) error {
	conn, err := p.st.Conns.Standing(ctx, p.connID, p.token, p.addr)
	if err != nil {
		return err
	}
	pace.perSecond = conn.Limits.FollowChangesPerSecond
	fw.mu.Lock()
	fw.maxRecords = conn.Limits.MaxRecords
	fw.mu.Unlock()
	if !conn.Limits.Follow {
		return &connection.Refusal{Reason: wire.ErrFollowNotAllowed, Detail: "this connection may no longer follow"}
	}
	for _, name := range fw.names {
		if len(conn.Limits.FollowTables) > 0 && !slices.Contains(conn.Limits.FollowTables, name) {
			return &followChanged{why: name + " is no longer among the tables the connection may follow"}
		}
		_, mt, err := p.followable(ctx, name)
		if errors.Is(err, catalog.ErrUnknownTable) {
			return &followChanged{why: name + " may no longer be read"}
		}
		var ref *connection.Refusal
		if errors.As(err, &ref) {
			return &followChanged{why: ref.Detail}
		}
		if err != nil {
			return err
		}
		if !slices.Equal(mt.Rules().Strings(), fw.masks[name].Rules().Strings()) {
			return &followChanged{why: "the masking rules of " + name + " changed"}
		}
	}
	return nil
}

// walEnd returns the sender's WAL end, read at most every walEndEvery.
func (p *peer) walEnd(ctx context.Context, fw *follower) (string, error) {
	fw.mu.Lock()
	end, at := fw.walEnd, fw.walEndAt
	fw.mu.Unlock()
	if time.Since(at) < walEndEvery {
		return end, nil
	}
	if err := p.st.Pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		return "", fmt.Errorf("follow %s: read the WAL position: %w", fw.slot, err)
	}
	fw.mu.Lock()
	fw.walEnd, fw.walEndAt = end, time.Now()
	fw.mu.Unlock()
	return end, nil
}

// maskStrings lists the follow's masks in text form, for the history.
func (fw *follower) maskStrings() []string {
	var out []string
	for _, name := range fw.names {
		out = append(out, fw.masks[name].Rules().Strings()...)
	}
	return out
}

// tooLarge says why changes cannot be followed, or nil: a change over limit bytes
// (what a receiver joins) ends the follow with its slot, so the receiver copies
// the tables again — a copy carries any row — and follows on from there.
func tooLarge(changes []wire.Change, limit int) error {
	for _, c := range changes {
		if n := c.Bytes(); n > limit {
			return &followChanged{why: fmt.Sprintf("a change of %s holds %d bytes, more than a follow carries (%d)", c.Table, n, limit)}
		}
	}
	return nil
}

// sendTxn waits for credit, paces the changes and sends txn in parts.
func (p *peer) sendTxn(ctx context.Context, fw *follower, txn capture.Txn, pace *pacer) error {
	if err := fw.take(ctx); err != nil {
		return nil // the connection ended
	}
	changes := make([]wire.Change, 0, len(txn.Changes))
	for _, c := range txn.Changes {
		wc, ok := fw.change(c)
		if ok {
			changes = append(changes, wc)
		}
	}
	if err := tooLarge(changes, wire.MaxChangeBytes); err != nil {
		return err
	}
	if err := pace.wait(ctx, len(changes)); err != nil {
		return nil
	}
	if err := p.reserveChanges(ctx, fw, len(changes)); err != nil {
		return err
	}
	end, err := p.walEnd(ctx, fw)
	if err != nil {
		return err
	}
	base := wire.Txn{Position: wire.FormatLSN(uint64(txn.EndLSN)), XID: txn.XID, CommitTime: txn.CommitTime.UTC().Format(time.RFC3339Nano), SenderPosition: end}
	part, size, n := base, 0, 0
	var sent int64
	flush := func(last bool) error {
		part.Last = last
		f := wire.New(nil, nil, p.topic, wire.FollowTxn, part)
		enc := f.Encode()
		if len(enc) > wire.MaxFrameSize {
			return fmt.Errorf("follow %s: a change of transaction %d is larger than a frame (%d bytes, at most %d)", fw.slot, txn.XID, len(enc), wire.MaxFrameSize)
		}
		if last {
			// Recorded before the receiver can see it: its ack may come at once.
			fw.mu.Lock()
			fw.sent = txn.EndLSN
			fw.unacked = append(fw.unacked, sentTxn{end: txn.EndLSN, commit: txn.CommitTime})
			fw.mu.Unlock()
		}
		if err := p.c.WriteText(string(enc)); err != nil {
			return err
		}
		sent += int64(len(enc))
		part = base
		part.Part = n + 1
		n++
		size = 0
		return nil
	}
	for _, c := range changes {
		// A change too large for a part goes in pieces, joined by the receiver.
		for _, piece := range wire.SplitChange(c, wire.FollowPieceBytes) {
			cs := piece.Size()
			if size > 0 && size+cs > wire.FollowPartBytes {
				if err := flush(false); err != nil {
					return err
				}
			}
			part.Changes = append(part.Changes, piece)
			size += cs
		}
	}
	if err := flush(true); err != nil {
		return err
	}
	fw.mu.Lock()
	fw.rows += int64(len(changes))
	fw.bytes += sent
	fw.mu.Unlock()
	p.st.Metrics.Moved("send", int64(len(changes)), sent)
	return nil
}

// reserveChanges takes n changes from the connection's total records, when it has
// a cap; a cap reached ends the follow (the connection's refusal).
func (p *peer) reserveChanges(ctx context.Context, fw *follower, n int) error {
	fw.mu.Lock()
	capped := fw.maxRecords > 0
	fw.mu.Unlock()
	if !capped || n == 0 {
		return nil
	}
	got, err := p.st.Conns.Reserve(ctx, p.connID, int64(n))
	if err == nil && got < int64(n) {
		p.release(ctx, int(got))
		err = &connection.Refusal{Reason: connection.ErrRecordsTotal.Reason, Detail: fmt.Sprintf("the connection's records would pass its total with the next %d changes", n)}
	}
	return err
}

// change turns a captured change into the one the receiver gets; ok is false for a
// table the follow does not hold (the publication only has the follow's tables,
// so none should come).
func (fw *follower) change(c capture.Change) (wire.Change, bool) {
	if c.Kind == capture.Truncate {
		var names []string
		for _, t := range c.Tables {
			n := catalog.Ident{Schema: t.Schema, Name: t.Name}.String()
			if fw.tables[n] {
				names = append(names, n)
			}
		}
		return wire.Change{Op: wire.OpTruncate, Tables: names}, len(names) > 0
	}
	name := catalog.Ident{Schema: c.Schema, Name: c.Table}.String()
	if !fw.tables[name] {
		return wire.Change{}, false
	}
	if mt := fw.masks[name]; mt != nil {
		// Masked as the copy's reads mask them: no original value leaves.
		mt.ApplyText(c.New)
		mt.ApplyText(c.Old)
	}
	return wire.Change{Op: string(c.Kind), Table: name, New: c.New, Old: c.Old, Unchanged: c.Unchanged}, true
}

// take waits for the receiver's credit and uses one transaction of it.
func (fw *follower) take(ctx context.Context) error {
	for {
		fw.mu.Lock()
		if fw.credit > 0 {
			fw.credit--
			fw.mu.Unlock()
			return nil
		}
		fw.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-fw.more:
		}
	}
}

// followAck answers follow:ack: the receiver applied and recorded everything up to
// the position; the slot may let go of it, and credit comes back.
func (p *peer) followAck(ctx context.Context, f wire.Frame, ack wire.FollowAckPayload) error {
	p.mu.Lock()
	fw := p.follow
	p.mu.Unlock()
	pos, err := wire.ParseLSN(ack.Position)
	if fw == nil || err != nil || ack.Credit < 0 || ack.Credit > wire.MaxFollowCredit {
		return p.fail(f, wire.ErrBadRequest, "follow:ack needs a follow, a position and a credit of 0 to 1024")
	}
	fw.mu.Lock()
	if capture.LSN(pos) > fw.sent || fw.stream == nil {
		fw.mu.Unlock()
		return nil // a position never sent: no credit
	}
	// Every ack of a transaction sent gives its credit back (a replay the
	// receiver skipped included); the position only moves forward.
	moved := capture.LSN(pos) > fw.acked
	if moved {
		fw.acked, fw.ackedAt = capture.LSN(pos), time.Now()
	}
	done := 0
	for done < len(fw.unacked) && fw.unacked[done].end <= capture.LSN(pos) {
		done++
	}
	fw.unacked = fw.unacked[done:]
	inFlight := len(fw.unacked)
	fw.credit = max(0, min(fw.credit+ack.Credit, wire.MaxFollowCredit-inFlight))
	stream := fw.stream
	fw.mu.Unlock()
	if moved {
		stream.Ack(capture.LSN(pos))
	}
	select {
	case fw.more <- struct{}{}:
	default:
	}
	return nil
}

// recordFollow writes the follow's acknowledged position and its history entry.
func (p *peer) recordFollow(ctx context.Context, fw *follower, histID int64, started time.Time, status string, ferr error) {
	fw.mu.Lock()
	acked, ackedAt, rows, bytes := fw.acked, fw.ackedAt, fw.rows, fw.bytes
	var oldest time.Time
	if len(fw.unacked) > 0 {
		oldest = fw.unacked[0].commit
	}
	fw.mu.Unlock()
	// Caught up (nothing sent unacknowledged), the follower lags by nothing,
	// however far the WAL moved for tables it does not follow.
	var lagBytes int64
	if !oldest.IsZero() {
		if err := p.st.Pool.QueryRow(ctx, "SELECT greatest(pg_current_wal_lsn() - $1::pg_lsn, 0)::bigint", acked.String()).Scan(&lagBytes); err != nil && ctx.Err() == nil {
			p.srv.log.Warn("follow lag", "err", err)
		}
	}
	var lagSeconds float64
	if !oldest.IsZero() {
		lagSeconds = time.Since(oldest).Seconds()
	}
	var at *time.Time
	if !ackedAt.IsZero() {
		at = &ackedAt
	}
	if _, err := p.st.Pool.Exec(ctx, `UPDATE fiberkit_sync_followers SET acked_lsn = greatest(acked_lsn, $2::pg_lsn), acked_at = coalesce($3, acked_at), history_id = $4,
			lag_bytes = $5, lag_ms = $6
		WHERE connection_id = $1::uuid`, p.connID, acked.String(), at, histID, lagBytes, int64(lagSeconds*1000)); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("record follower", "err", err)
	}
	if histID == 0 {
		return
	}
	t := history.Transfer{Rows: rows, Bytes: bytes, Duration: time.Since(started), Status: status, LagBytes: lagBytes, LagSeconds: lagSeconds}
	if ferr != nil {
		t.Error = ferr.Error()
	}
	if err := p.st.History.UpdateFollow(ctx, histID, t); err != nil && ctx.Err() == nil {
		p.srv.log.Warn("record follow", "err", err)
	}
}

// pacer holds a follow to a connection's changes per second (0: no cap).
type pacer struct {
	perSecond int
	next      time.Time
}

func newPacer(perSecond int) *pacer { return &pacer{perSecond: perSecond} }

// wait returns once n more changes fit the rate.
func (pc *pacer) wait(ctx context.Context, n int) error {
	if pc.perSecond <= 0 || n == 0 {
		return nil
	}
	now := time.Now()
	if pc.next.Before(now) {
		pc.next = now
	}
	d := time.Until(pc.next)
	pc.next = pc.next.Add(time.Duration(n) * time.Second / time.Duration(pc.perSecond))
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
