package syncapi

import "time"

// Follow states (FollowStatus.State).
const (
	// FollowCopying: the first copy of the followed tables is running.
	FollowCopying = "copying"
	// FollowFollowing: the copy is done and the sender's changes are applied as they come.
	FollowFollowing = "following"
	// FollowStopped: the follow was ended (by the receiver, or the sender ended the permission).
	FollowStopped = "stopped"
	// FollowFailed: the follow stopped on an error (Error says which); a restart resumes it.
	FollowFailed = "failed"
)

// FollowStatus is where a receiving site's follow of a sender stands: what it
// applied last and how far behind the sender it is.
type FollowStatus struct {
	// ID names the follow: a remote's id, or the sender's URL for a one-off follow.
	ID     string   `json:"id"`
	Peer   string   `json:"peer"`
	Tables []string `json:"tables"`
	State  string   `json:"state"`
	Error  string   `json:"error,omitempty"`
	// Position is the sender's WAL position of the last transaction applied here
	// ("0/16B3748"); SenderPosition the sender's WAL end when it was last heard.
	Position       string `json:"position"`
	SenderPosition string `json:"sender_position,omitempty"`
	// LagBytes is SenderPosition − Position; LagSeconds how long ago (by the
	// sender's clock) the last transaction applied here committed, 0 when caught up.
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// Transactions, Changes and Conflicts count what was applied since the follow began
	// (Conflicts: changes that met a local edit and were resolved by the strategy).
	Transactions int64     `json:"transactions"`
	Changes      int64     `json:"changes"`
	Conflicts    int64     `json:"conflicts"`
	Strategy     string    `json:"strategy"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Follower is a receiving site following this (sending) site through a permanent
// connection, as the sender sees it.
type Follower struct {
	ConnectionID string   `json:"connection_id"`
	Name         string   `json:"name"`
	Tables       []string `json:"tables"`
	// Active says a receiver is connected and streaming now.
	Active bool `json:"active"`
	// Acknowledged is the position the receiver confirmed applied; LagBytes what the
	// sender's WAL holds beyond it, LagSeconds how old the oldest unacknowledged
	// commit is (0 when caught up).
	Acknowledged string    `json:"acknowledged"`
	LagBytes     int64     `json:"lag_bytes"`
	LagSeconds   float64   `json:"lag_seconds"`
	AckedAt      time.Time `json:"acked_at,omitzero"`
}
