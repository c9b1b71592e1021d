package sender

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/history"
	"github.com/fiberkit/fiberkit/plugins/sync/session"
	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// approvalTimeout bounds how long a receiver waits for an admin's decision.
const approvalTimeout = 10 * time.Minute

// awaitingEvery is how often a waiting receiver is told it still waits (which
// keeps its connection warm).
const awaitingEvery = 15 * time.Second

// joinedReply is the phx_reply to a join that is let in: FiberKit's version for
// our clients, exactly {} for PhoenixKit's receiver (it waits for nothing else).
func joinedReply(j wire.Join) map[string]any {
	if !j.SpeaksFiberKit() {
		return map[string]any{}
	}
	return map[string]any{"version": wire.Version}
}

// join answers phx_join: a permanent connection and a code in a mode without
// approval are let in at once, and so is a receiver rejoining a session an admin
// approved; otherwise, in require_approval mode, the receiver waits for an
// admin's decision (see awaitApproval). A FiberKit client is told so in the reply
// ("awaiting_approval": true); a PhoenixKit receiver, which reads any reply but
// {} as a refusal, gets its reply when the admin decided.
func (p *peer) join(ctx context.Context, f wire.Frame) error {
	var j wire.Join
	if err := json.Unmarshal(f.Payload, &j); err != nil {
		return p.fail(f, wire.ErrBadRequest, "join payload: "+err.Error())
	}
	p.mu.Lock()
	if p.joined || p.awaiting {
		p.mu.Unlock()
		return p.ok(f, map[string]any{})
	}
	p.mu.Unlock()
	if p.connID != "" {
		// A permanent connection was approved when it was made.
		p.setJoined()
		return p.ok(f, joinedReply(j))
	}
	p.sess.ReceiverInfo = j.ReceiverInfo
	if err := p.st.Sessions.SetReceiverInfo(ctx, p.sess.ID, j.ReceiverInfo); err != nil {
		p.srv.log.Warn("store receiver info", "session", p.sess.ID, "err", err)
	}
	if p.st.IncomingMode() != session.RequireApproval {
		p.setJoined()
		return p.ok(f, joinedReply(j))
	}
	if p.sess.Rejoined {
		// The same receiver came back (a dropped connection, a client's reconnect):
		// an approval already given stands.
		approved, err := p.st.Sessions.Approved(ctx, p.sess.ID)
		if err != nil {
			p.srv.log.Warn("was the rejoined session approved", "session", p.sess.ID, "err", err)
		}
		if approved {
			p.setJoined()
			return p.ok(f, joinedReply(j))
		}
	}
	approval, err := p.st.Sessions.RequestApproval(ctx, p.sess)
	if err != nil {
		p.srv.log.Error("request approval", "err", err)
		return p.fail(f, wire.ErrInternal, "could not ask for approval")
	}
	p.mu.Lock()
	p.awaiting = true
	p.mu.Unlock()
	p.countPending(ctx)
	var held *wire.Frame
	if j.SpeaksFiberKit() {
		reply := joinedReply(j)
		reply["awaiting_approval"] = true
		if err := p.ok(f, reply); err != nil {
			return err
		}
	} else {
		held = &f
	}
	_ = p.push(wire.EventAwaitingApproval, wire.AwaitingApproval{ApprovalID: approval.ID})
	// The request shows in the history while it waits, and then its outcome.
	who, _ := json.Marshal(j.ReceiverInfo)
	histID := p.record(ctx, history.Transfer{Direction: "send", Peer: p.addr, Table: "(connection request)",
		Status: "awaiting_approval", StartedBy: string(who)})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.awaitApproval(ctx, approval.ID, histID, held)
	}()
	return nil
}

// countPending sets the pending-approvals metric from the store.
func (p *peer) countPending(ctx context.Context) {
	if p.st.Metrics == nil {
		return
	}
	pending, err := p.st.Sessions.Pending(ctx)
	if err != nil {
		p.srv.log.Warn("count pending approvals", "err", err)
		return
	}
	p.st.Metrics.SetPendingApprovals(len(pending))
}

// setJoined lets the receiver's requests in.
func (p *peer) setJoined() {
	p.mu.Lock()
	p.joined, p.awaiting = true, false
	p.mu.Unlock()
}

// awaitApproval waits for an admin's decision on approval id, telling the
// receiver it still waits, then lets it in or closes its connection saying why.
// The history row histID (0: none) gets the outcome. held is the join of a
// PhoenixKit receiver, answered now ({} when approved), or nil.
func (p *peer) awaitApproval(ctx context.Context, id string, histID int64, held *wire.Frame) {
	wctx, cancel := context.WithTimeout(ctx, approvalTimeout)
	defer cancel()
	go func() {
		t := time.NewTicker(awaitingEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				_ = p.push(wire.EventAwaitingApproval, wire.AwaitingApproval{ApprovalID: id})
			}
		}
	}()
	err := p.st.Sessions.WaitApproval(wctx, id)
	refuse := func(code string) {
		if held != nil {
			_ = p.reply(*held, wire.EventReply, wire.Reply{Status: "error", Response: map[string]any{"reason": code}})
		}
		_ = p.push(wire.EventDenied, wire.Denied{Error: code})
	}
	outcome := func(status string) {
		dctx, dcancel := detached(ctx)
		defer dcancel()
		defer p.countPending(dctx)
		if histID == 0 {
			return
		}
		rctx, rcancel := detached(ctx)
		defer rcancel()
		if err := p.st.History.SetStatus(rctx, histID, status); err != nil {
			p.srv.log.Error("record the approval's outcome", "status", status, "err", err)
		}
	}
	switch {
	case err == nil:
		outcome("approved")
		p.setJoined()
		if held != nil {
			_ = p.ok(*held, map[string]any{})
		} else {
			_ = p.push(wire.EventApproved, struct{}{})
		}
	case errors.Is(err, session.ErrDenied):
		outcome("denied")
		refuse(wire.ErrDenied)
		_ = p.c.Close(4003, wire.ErrDenied)
		p.cancel()
	case errors.Is(err, session.ErrApprovalTimeout) && ctx.Err() == nil:
		outcome("approval_timeout")
		refuse(wire.ErrApprovalTimeout)
		_ = p.c.Close(4008, wire.ErrApprovalTimeout)
		p.cancel()
	case ctx.Err() == nil:
		outcome("cancelled")
		_ = p.c.Close(4004, "session ended by the sending site")
		p.cancel()
	default:
		// The receiver left while waiting: take the request off the Send page.
		outcome("abandoned")
		dctx, dcancel := detached(ctx)
		defer dcancel()
		if err := p.st.Sessions.Deny(dctx, id, "receiver left"); err != nil {
			p.srv.log.Warn("withdraw an abandoned approval request", "approval", id, "err", err)
		}
		p.countPending(dctx)
	}
}
