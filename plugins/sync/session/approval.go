package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// approvalChannel carries decided approvals' ids between replicas.
const approvalChannel = "fiberkit_sync_approvals"

// Approval is a receiver's request waiting for an admin of the sending site (syncapi.Approval).
type Approval = syncapi.Approval

// RequestApproval records a pending approval for a redeemed session.
func (s *Store) RequestApproval(ctx context.Context, sess Session) (Approval, error) {
	var a Approval
	err := s.pool.QueryRow(ctx, `INSERT INTO fiberkit_sync_approvals (session_id, receiver_info, address) VALUES ($1::uuid, $2, $3)
		RETURNING id::text, session_id::text, coalesce(receiver_info, '{}'), coalesce(address, ''), status, created_at`,
		sess.ID, sess.ReceiverInfo, sess.ReceiverAddr).Scan(&a.ID, &a.SessionID, &a.ReceiverInfo, &a.Address, &a.Status, &a.CreatedAt)
	if err != nil {
		return Approval{}, fmt.Errorf("request approval: %w", err)
	}
	return a, nil
}

// Pending lists approvals waiting for a decision whose session is still live.
func (s *Store) Pending(ctx context.Context) ([]Approval, error) {
	rows, err := s.pool.Query(ctx, `SELECT a.id::text, a.session_id::text, coalesce(a.receiver_info, '{}'), coalesce(a.address, ''), a.status, a.created_at
		FROM fiberkit_sync_approvals a JOIN fiberkit_sync_sessions s ON s.id = a.session_id
		WHERE a.status = 'pending' AND s.lease_until > now() ORDER BY a.created_at`)
	if err != nil {
		return nil, fmt.Errorf("pending approvals: %w", err)
	}
	defer rows.Close()
	var out []Approval
	for rows.Next() {
		var a Approval
		if err := rows.Scan(&a.ID, &a.SessionID, &a.ReceiverInfo, &a.Address, &a.Status, &a.CreatedAt); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Approve lets the receiver proceed.
func (s *Store) Approve(ctx context.Context, id, actor string) error {
	return s.decide(ctx, id, actor, "approved")
}

// Deny refuses the receiver.
func (s *Store) Deny(ctx context.Context, id, actor string) error {
	return s.decide(ctx, id, actor, "denied")
}

func (s *Store) decide(ctx context.Context, id, actor, status string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE fiberkit_sync_approvals SET status = $2, decided_by = $3, decided_at = now()
			WHERE id::text = $1 AND status = 'pending'`, id, status, actor)
		if err != nil {
			return fmt.Errorf("%s approval %s: %w", status, id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("approval %s: %w (or already decided)", id, ErrNotFound)
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, approvalChannel, id)
		return err
	})
}

// WaitApproval blocks until approval id is decided, its session ends, or ctx ends
// (then ErrApprovalTimeout). A decision made on any replica releases it.
func (s *Store) WaitApproval(ctx context.Context, id string) error {
	// LISTEN on a connection of its own, outside the pool: a receiver may wait ten
	// minutes, and a few waiters must not hold the pool's connections (the Approve
	// that would release them needs one too). Each code admits one waiter.
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("wait approval: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+approvalChannel); err != nil {
		return fmt.Errorf("wait approval: %w", err)
	}
	for {
		var status string
		var live bool
		err := conn.QueryRow(ctx, `SELECT a.status, s.lease_until > now() FROM fiberkit_sync_approvals a
			JOIN fiberkit_sync_sessions s ON s.id = a.session_id WHERE a.id::text = $1`, id).Scan(&status, &live)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrInvalidCode // the session was deleted: its owner went away
		case err != nil && ctx.Err() != nil:
			return ErrApprovalTimeout
		case err != nil:
			return fmt.Errorf("wait approval: %w", err)
		case status == "approved":
			return nil
		case status == "denied":
			return ErrDenied
		case !live:
			return ErrInvalidCode
		}
		// Wake on any decision, or every few seconds to notice a lapsed session.
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err = conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ErrApprovalTimeout
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("wait approval: %w", err)
		}
	}
}

// Approved reports whether an admin approved a receiver of session id: a receiver
// that rejoins such a session (Session.Rejoined) is not asked to wait again.
func (s *Store) Approved(ctx context.Context, sessionID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM fiberkit_sync_approvals WHERE session_id::text = $1 AND status = 'approved')`,
		sessionID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("session %s: was it approved: %w", sessionID, err)
	}
	return ok, nil
}
