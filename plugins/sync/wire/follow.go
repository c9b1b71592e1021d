package wire

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
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
	// FollowPieceBytes bounds the value bytes of one piece of a change too large
	// for a part: even escaped at JSON's worst (6 bytes a byte) a piece fits a
	// frame.
	FollowPieceBytes = 128 << 10
	// MaxChangeBytes bounds a change's names and values (Change.Bytes): a
	// receiver holds a change whole while it applies it, and refuses a larger
	// one; a sender ends the follow instead of sending it (the receiver then
	// copies the tables again, which carries any row).
	MaxChangeBytes = 256 << 20
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
//
// A change larger than FollowPieceBytes comes in pieces (SplitChange), each but the
// last marked More, in order within one transaction (across its parts); the
// receiver joins them (ChangeJoiner) before applying.
type Change struct {
	Op        string             `json:"op"`
	Table     string             `json:"table,omitempty"`
	New       map[string]*string `json:"new,omitempty"`
	Old       map[string]*string `json:"old,omitempty"`
	Unchanged []string           `json:"unchanged,omitempty"`
	Tables    []string           `json:"tables,omitempty"`
	// More says the next change continues this one: its New and Old values are
	// the rest of the values of the same columns, appended to them.
	More bool `json:"more,omitempty"`
}

// Size bounds the bytes c takes as JSON in a frame: its names and values as JSON
// strings (escapes counted) and the punctuation around them.
func (c Change) Size() int {
	n := 64 + jsonLen(c.Op) + jsonLen(c.Table)
	for _, t := range c.Tables {
		n += jsonLen(t) + 4
	}
	for _, u := range c.Unchanged {
		n += jsonLen(u) + 4
	}
	for _, m := range []map[string]*string{c.New, c.Old} {
		for k, v := range m {
			n += jsonLen(k) + 8
			if v != nil {
				n += jsonLen(*v)
			}
		}
	}
	return n
}

// Bytes counts c's column names and values, as a receiver holds them joined
// (MaxChangeBytes bounds it).
func (c Change) Bytes() int {
	n := 0
	for _, m := range []map[string]*string{c.New, c.Old} {
		for k, v := range m {
			n += len(k)
			if v != nil {
				n += len(*v)
			}
		}
	}
	return n
}

// jsonLen bounds the length of s as a JSON string by encoding/json, quotes
// included.
func jsonLen(s string) int {
	valid := utf8.ValidString(s)
	n := 2
	for i := 0; i < len(s); i++ {
		n += jsonCost(s[i], valid)
	}
	return n
}

// jsonCost is jsonByteLen for a byte of a string that is valid UTF-8 or not: in
// one that is not (a SQL_ASCII database may hold any bytes), a byte past ASCII
// may be written as U+FFFD's 6-byte escape.
func jsonCost(b byte, valid bool) int {
	if !valid && b >= 0x80 {
		return 6
	}
	return jsonByteLen(b)
}

// jsonByteLen is at least what byte b adds to a JSON string written by
// encoding/json: a quote, a backslash and the short control escapes take 2, other
// control bytes and the HTML characters it escapes 6. U+2028 and U+2029 (E2 80
// A8/A9) are escaped too, 6 bytes for 3: a lead byte E2 counts 4, which bounds
// them (and overcounts the other characters it starts, harmlessly).
func jsonByteLen(b byte) int {
	switch {
	case b == '"' || b == '\\' || b == '\n' || b == '\r' || b == '\t':
		return 2
	case b < 0x20 || b == '<' || b == '>' || b == '&':
		return 6
	case b == 0xE2:
		return 4
	default:
		return 1
	}
}

// SplitChange cuts c into pieces of at most about budget bytes in a frame each
// (Size; at least one piece: c itself when it fits). The first piece holds the
// change's op, table and unchanged columns; the pieces hold New's columns then
// Old's, a NULL once, a value in one or more consecutive chunks cut at UTF-8
// character boundaries, so that joining them in order gives c back. Every piece
// but the last has More set.
func SplitChange(c Change, budget int) []Change {
	if c.Size() <= budget {
		return []Change{c}
	}
	budget = max(budget, 1024)
	base := 64 + jsonLen(c.Op) + jsonLen(c.Table)
	pieces := []Change{{Op: c.Op, Table: c.Table, Unchanged: c.Unchanged, Tables: c.Tables}}
	used := pieces[0].Size()
	next := func() {
		pieces[len(pieces)-1].More = true
		pieces = append(pieces, Change{Op: c.Op, Table: c.Table})
		used = base
	}
	put := func(newSide bool, k string, v *string) {
		p := &pieces[len(pieces)-1]
		m := &p.Old
		if newSide {
			m = &p.New
		}
		if *m == nil {
			*m = map[string]*string{}
		}
		(*m)[k] = v
	}
	for _, newSide := range []bool{true, false} {
		src := c.Old
		if newSide {
			src = c.New
		}
		for _, k := range sortedKeys(src) {
			name := jsonLen(k) + 8
			v := src[k]
			if v == nil {
				if used+name > budget {
					next()
				}
				put(newSide, k, nil)
				used += name
				continue
			}
			rest := *v
			valid := utf8.ValidString(rest)
			for first := true; first || rest != ""; first = false {
				if used+name+64 > budget {
					next()
				}
				// The longest prefix that fits, ending at a character's start.
				room, n, cost := budget-used-name-2, 0, 0
				for n < len(rest) {
					c := jsonCost(rest[n], valid)
					if cost+c > room {
						break
					}
					cost += c
					n++
				}
				if valid {
					for back := 0; back < utf8.UTFMax-1 && n > 0 && n < len(rest) && !utf8.RuneStart(rest[n]); back++ {
						n--
					}
				}
				if n == 0 && rest != "" {
					// Names too long for the budget: one character, over it, so
					// the cut always moves on.
					_, n = utf8.DecodeRuneInString(rest)
				}
				chunk := rest[:n]
				put(newSide, k, &chunk)
				used += name + jsonLen(chunk)
				rest = rest[n:]
				if rest != "" {
					next()
				}
			}
		}
	}
	return pieces
}

// ChangeJoiner joins the pieces of changes as they come (see SplitChange).
type ChangeJoiner struct {
	open  *Change
	parts [2]map[string]*strings.Builder // New's and Old's values so far; nil: NULL
	bytes int
}

// Add takes the next change of a transaction: it returns the whole change and
// true when c completes one (c itself when it is not in pieces), false while
// pieces are pending. A piece that does not continue the pending change, or a
// change over MaxChangeBytes, is an error.
func (j *ChangeJoiner) Add(c Change) (Change, bool, error) {
	if j.open == nil {
		if !c.More {
			return c, true, nil
		}
		open := c
		open.New, open.Old, open.More = nil, nil, false
		j.open, j.bytes = &open, 0
		j.parts = [2]map[string]*strings.Builder{{}, {}}
	} else if c.Op != j.open.Op || c.Table != j.open.Table || len(c.Unchanged) > 0 || len(c.Tables) > 0 {
		err := fmt.Errorf("a piece of a %s of %q continues a %s of %q", c.Op, c.Table, j.open.Op, j.open.Table)
		j.Reset()
		return Change{}, false, err
	}
	for i, from := range []map[string]*string{c.New, c.Old} {
		into := j.parts[i]
		for k, v := range from {
			have, ok := into[k]
			switch {
			case !ok && v == nil:
				into[k] = nil
			case !ok:
				into[k] = &strings.Builder{}
				into[k].WriteString(*v)
			case have == nil || v == nil:
				err := fmt.Errorf("a piece of a %s of %q continues column %q, which is NULL", c.Op, c.Table, k)
				j.Reset()
				return Change{}, false, err
			default:
				have.WriteString(*v)
			}
			if !ok {
				j.bytes += len(k) // as Change.Bytes counts it: once
			}
			if v != nil {
				j.bytes += len(*v)
			}
		}
	}
	if j.bytes > MaxChangeBytes {
		table := j.open.Table
		j.Reset()
		return Change{}, false, fmt.Errorf("a change of %q is larger than %d bytes", table, MaxChangeBytes)
	}
	if c.More {
		return Change{}, false, nil
	}
	whole := *j.open
	for i, m := range []*map[string]*string{&whole.New, &whole.Old} {
		if len(j.parts[i]) == 0 {
			continue
		}
		*m = make(map[string]*string, len(j.parts[i]))
		for k, b := range j.parts[i] {
			if b == nil {
				(*m)[k] = nil
				continue
			}
			v := b.String()
			(*m)[k] = &v
		}
	}
	j.Reset()
	return whole, true, nil
}

// Pending says whether a change's pieces are waiting for the rest.
func (j *ChangeJoiner) Pending() bool { return j.open != nil }

// Reset drops a pending change (its transaction was abandoned).
func (j *ChangeJoiner) Reset() { j.open, j.parts, j.bytes = nil, [2]map[string]*strings.Builder{}, 0 }

func sortedKeys(m map[string]*string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
