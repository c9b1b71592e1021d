package syncapi

import (
	"time"
)

// SessionInfo is one session.
type SessionInfo struct {
	ID           string         `json:"id"`
	Direction    string         `json:"direction"` // send | receive
	Owner        string         `json:"owner"`
	Status       string         `json:"status"`
	CreatedAt    time.Time      `json:"created_at"`
	LeaseUntil   time.Time      `json:"lease_until"`
	UsedAt       *time.Time     `json:"used_at,omitempty"`
	ReceiverInfo map[string]any `json:"receiver_info,omitempty"`
	ReceiverAddr string         `json:"receiver_addr,omitempty"`
	Progress     map[string]any `json:"progress,omitempty"`
	// Rejoined is set by a redeem that let the session's receiver back in after
	// its connection dropped (within the rejoin grace, from the same address).
	Rejoined bool `json:"rejoined,omitempty"`
}

// Approval is a receiver's request waiting for an admin of the sending site.
type Approval struct {
	ID           string         `json:"id"`
	SessionID    string         `json:"session_id"`
	ReceiverInfo map[string]any `json:"receiver_info"`
	Address      string         `json:"address"`
	Status       string         `json:"status"` // pending | approved | denied
	DecidedBy    string         `json:"decided_by,omitempty"`
	CreatedAt    time.Time      `json:"created_at"`
}
