package wire

import (
	"errors"
	"fmt"
	"strings"
)

// FollowFeature says the sender streams its tables' changes after a pull to a
// permanent connection allowed to follow (request:follow, follow:*).
const FollowFeature = "follow.v1"

// The follow requests and pushes.
const (
	// RequestFollow opens (or resumes) a follow: the answer is response:follow.
	RequestFollow  = "request:follow"
	ResponseFollow = "response:follow"
	// FollowStart asks the sender to stream changes after FollowStartPayload.From.
	FollowStart = "follow:start"
	// FollowTxn carries (part of) one sender transaction's changes.
	FollowTxn = "follow:txn"
	// FollowAck says the receiver applied and durably recorded everything up to Position.
	FollowAck = "follow:ack"
	// FollowKeepalive tells an idle receiver where the sender's WAL ends.
	FollowKeepalive = "follow:keepalive"
	// FollowEnd says the sender stopped the follow (FollowEndPayload says why).
	FollowEnd = "follow:end"
)

// Follow error codes (response:error, FollowEndPayload.Error).
const (
	// ErrFollowNotAllowed: the connection may not follow (a code, or Limits.Follow off).
	ErrFollowNotAllowed = "follow_not_allowed"
	// ErrFollowLost: the sender no longer holds the changes after the receiver's
	// position (its follow slot was dropped); the receiver must copy again.
	ErrFollowLost = "follow_lost"
	// ErrLiveUnavailable: the sending database cannot stream changes (wal_level or
	// the REPLICATION attribute); the message says what to fix.
	ErrLiveUnavailable = "live_unavailable"
)

// Follow protocol limits and defaults.
const (
	// DefaultFollowCredit is how many transactions a receiver lets the sender send
	// before its next ack; MaxFollowCredit caps it.
	DefaultFollowCredit = 64
	MaxFollowCredit     = 1024
	// FollowPartBytes bounds the changes of one follow:txn frame (well under
	// MaxFrameSize); a larger transaction comes in parts, applied as one.
	FollowPartBytes = 512 << 10
)

// FollowRequest is the request:follow payload. Without From the sender starts a new
// follow of Tables: it makes a change stream that begins exactly at a snapshot and
// makes that snapshot the connection's, so the tables the receiver then pulls on the
// same connection are read from it. With From (a position the receiver recorded) it
// resumes: the stream must still hold the changes after From.
type FollowRequest struct {
	Tables []string `json:"tables"`
	From   string   `json:"from,omitempty"`
}

// Validate refuses a malformed request before any SQL sees it.
func (r FollowRequest) Validate() error {
	if len(r.Tables) == 0 {
		return errors.New("tables: at least one")
	}
	for _, t := range r.Tables {
		if err := ValidTableName(t); err != nil {
			return err
		}
	}
	if r.From != "" {
		if _, err := ParseLSN(r.From); err != nil {
			return err
		}
	}
	return nil
}

// FollowReply is the response:follow payload: Position is where the changes start
// (the snapshot's position for a new follow, From for a resumed one).
type FollowReply struct {
	Tables   []string `json:"tables"`
	Position string   `json:"position"`
}

// FollowStartPayload is the follow:start payload.
type FollowStartPayload struct {
	From string `json:"from"`
	// Credit is how many transactions may come before the next ack.
	Credit int `json:"credit"`
}

// Validate refuses a malformed follow:start.
func (s FollowStartPayload) Validate() error {
	if _, err := ParseLSN(s.From); err != nil {
		return err
	}
	if s.Credit < 0 || s.Credit > MaxFollowCredit {
		return fmt.Errorf("credit: 0 to %d", MaxFollowCredit)
	}
	return nil
}

// Change kinds (Change.Op).
const (
	OpInsert   = "insert"
	OpUpdate   = "update"
	OpDelete   = "delete"
	OpTruncate = "truncate"
)

// Change is one row change of a followed table, values in PostgreSQL's text form
// (nil: NULL). New is the row after an insert or update (without the columns in
// Unchanged: TOASTed values the update did not touch); Old the row before an update
// or delete, every column (the sender's followed tables have REPLICA IDENTITY FULL),
// which is how the receiver tells a local edit from the row the sender changed.
// A truncate names its Tables.
type Change struct {
	Op        string             `json:"op"`
	Table     string             `json:"table,omitempty"`
	New       map[string]*string `json:"new,omitempty"`
	Old       map[string]*string `json:"old,omitempty"`
	Unchanged []string           `json:"unchanged,omitempty"`
	Tables    []string           `json:"tables,omitempty"`
}

// Txn is the follow:txn payload: one sender transaction, or a part of it. Parts of
// a transaction share Position; Last marks its final part, after which the receiver
// commits. Position is the transaction's end in the sender's WAL: the receiver
// records it with the changes and acks it.
type Txn struct {
	Position   string   `json:"position"`
	XID        uint32   `json:"xid"`
	CommitTime string   `json:"commit_time"` // RFC 3339, the sender's clock
	Part       int      `json:"part"`
	Last       bool     `json:"last"`
	Changes    []Change `json:"changes"`
	// SenderPosition is the sender's WAL end when the transaction was sent.
	SenderPosition string `json:"sender_position,omitempty"`
}

// FollowAckPayload is the follow:ack payload.
type FollowAckPayload struct {
	Position string `json:"position"`
	Credit   int    `json:"credit"`
}

// Keepalive is the follow:keepalive payload.
type Keepalive struct {
	SenderPosition string `json:"sender_position"`
	At             string `json:"at"` // RFC 3339, the sender's clock
	// CaughtUp says the receiver acknowledged every transaction sent and none is
	// waiting: it lags by nothing the sender knows of, however far the WAL moved for
	// tables it does not follow.
	CaughtUp bool `json:"caught_up,omitempty"`
}

// FollowEndPayload is the follow:end payload.
type FollowEndPayload struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// ParseLSN reads a WAL position in PostgreSQL's form ("16/B374D848").
func ParseLSN(s string) (uint64, error) {
	var hi, lo uint32
	if len(s) > 17 {
		return 0, errors.New("position: not a WAL position")
	}
	if n, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil || n != 2 {
		return 0, fmt.Errorf("position: %q is not a WAL position", s)
	}
	v := uint64(hi)<<32 | uint64(lo)
	if !strings.EqualFold(FormatLSN(v), s) {
		return 0, fmt.Errorf("position: %q is not a WAL position", s)
	}
	return v, nil
}

// FormatLSN writes a WAL position in PostgreSQL's form.
func FormatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn)) }
