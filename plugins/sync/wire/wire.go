// Package wire defines the Sync WebSocket protocol's frames: the PhoenixKit-compatible
// JSON arrays [join_ref, ref, topic, event, payload] for control and the records API,
// and binary batch frames for the fast bulk path negotiated through capabilities.
// Decoding is strict and bounded: malformed or oversized input is a *FrameError,
// never a panic. See docs/protocol.md.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Protocol versions.
const (
	// Version is what the receiver sends as vsn and what capabilities report.
	Version = "2.0.0"
	// StreamFeature names the fast path in capabilities.
	StreamFeature = "stream.v1"
	// BinaryFeature says the fast path also sends COPY binary (Start.Encoding).
	BinaryFeature = "stream.binary.v1"
	// RecordsFeature names the PhoenixKit-compatible records API.
	RecordsFeature = "records.v1"
)

// Protocol defaults and limits both ends use.
const (
	// DefaultRecordsLimit is request:records' page size when none is asked for
	// (PhoenixKit's fetch_records default); MaxRecordsLimit caps it.
	DefaultRecordsLimit = 100
	MaxRecordsLimit     = 5000
	// DefaultBatchRows is a stream's rows per batch when stream:start names none;
	// MaxBatchRows caps it.
	DefaultBatchRows = 5000
	MaxBatchRows     = 50000
	// DefaultCredit is the receiver's credit: the batches in flight before an ack.
	// MaxCredit caps what a sender queues from acks.
	DefaultCredit = 4
	MaxCredit     = 16
	// MaxStreams caps the fast-path streams running at once on one connection; a
	// stream:start beyond it is refused with ErrTooManyStreams.
	MaxStreams = 4
	// PhoenixKitRecordsLimit is the page size PhoenixKit's own sender caps
	// fetch_records at; ours serves up to MaxRecordsLimit.
	PhoenixKitRecordsLimit = 1000
)

// Frame limits.
const (
	// MaxFrameSize bounds a JSON frame.
	MaxFrameSize = 1 << 20
	maxTopic     = 256
	maxEvent     = 64
	maxRef       = 64
)

// Topics and events.
const (
	TopicPhoenix = "phoenix"

	EventJoin      = "phx_join"
	EventReply     = "phx_reply"
	EventLeave     = "phx_leave"
	EventError     = "phx_error"
	EventClose     = "phx_close"
	EventHeartbeat = "heartbeat"

	RequestCapabilities = "request:capabilities"
	RequestTables       = "request:tables"
	RequestSchema       = "request:schema"
	RequestCount        = "request:count"
	RequestRecords      = "request:records"
	RequestChecksum     = "request:checksum"

	ResponseCapabilities = "response:capabilities"
	ResponseTables       = "response:tables"
	ResponseSchema       = "response:schema"
	ResponseCount        = "response:count"
	ResponseRecords      = "response:records"
	ResponseChecksum     = "response:checksum"
	ResponseError        = "response:error"

	// Pushed by the sender while a receiver waits for an admin's decision.
	EventAwaitingApproval = "awaiting_approval"
	EventApproved         = "approved"
	EventDenied           = "denied"

	// The fast path.
	StreamStart  = "stream:start"
	StreamAck    = "stream:ack"
	StreamEnd    = "stream:end"
	StreamError  = "stream:error"
	StreamCancel = "stream:cancel"
)

// Error codes carried in response:error and in close reasons.
const (
	ErrInvalidCode      = "invalid_code"
	ErrAlreadyUsed      = "already_used"
	ErrRateLimited      = "rate_limited"
	ErrPasswordRequired = "password_required"
	ErrWrongPassword    = "wrong_password"
	ErrDenied           = "denied"
	ErrApprovalTimeout  = "approval_timeout"
	ErrDisabled         = "disabled"
	ErrUnknownTable     = "unknown_table"
	ErrBadRequest       = "bad_request"
	ErrFrameTooLarge    = "frame_too_large"
	ErrMalformedFrame   = "malformed_frame"
	ErrNotJoined        = "not_joined"
	ErrInternal         = "internal_error"
	// ErrTooManyStreams refuses a stream:start while MaxStreams run on the connection.
	ErrTooManyStreams = "too_many_streams"
)

// FrameError says why a frame was refused.
type FrameError struct {
	Code   string // ErrMalformedFrame or ErrFrameTooLarge
	Reason string
}

// Error implements error.
func (e *FrameError) Error() string { return e.Code + ": " + e.Reason }

func malformed(format string, args ...any) error {
	return &FrameError{Code: ErrMalformedFrame, Reason: fmt.Sprintf(format, args...)}
}

// Frame is one JSON frame.
type Frame struct {
	JoinRef *string
	Ref     *string
	Topic   string
	Event   string
	// Payload is a JSON object.
	Payload json.RawMessage
}

// Decode parses one JSON frame.
func Decode(data []byte) (Frame, error) {
	if len(data) > MaxFrameSize {
		return Frame{}, &FrameError{Code: ErrFrameTooLarge, Reason: fmt.Sprintf("%d bytes (max %d)", len(data), MaxFrameSize)}
	}
	if !utf8.Valid(data) {
		return Frame{}, malformed("not UTF-8")
	}
	var parts []json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&parts); err != nil {
		return Frame{}, malformed("not a JSON array: %v", err)
	}
	if dec.More() {
		return Frame{}, malformed("trailing data after the frame")
	}
	if len(parts) != 5 {
		return Frame{}, malformed("want 5 elements [join_ref, ref, topic, event, payload], got %d", len(parts))
	}
	var f Frame
	var err error
	if f.JoinRef, err = optString(parts[0], "join_ref"); err != nil {
		return Frame{}, err
	}
	if f.Ref, err = optString(parts[1], "ref"); err != nil {
		return Frame{}, err
	}
	if err := json.Unmarshal(parts[2], &f.Topic); err != nil || f.Topic == "" || len(f.Topic) > maxTopic {
		return Frame{}, malformed("topic must be a non-empty string of at most %d bytes", maxTopic)
	}
	if err := json.Unmarshal(parts[3], &f.Event); err != nil || f.Event == "" || len(f.Event) > maxEvent {
		return Frame{}, malformed("event must be a non-empty string of at most %d bytes", maxEvent)
	}
	p := bytes.TrimSpace(parts[4])
	if len(p) == 0 || p[0] != '{' {
		return Frame{}, malformed("payload must be a JSON object")
	}
	f.Payload = p
	return f, nil
}

func optString(raw json.RawMessage, name string) (*string, error) {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || len(s) > maxRef {
		// PhoenixKit clients send integer refs too; accept them as strings.
		var n json.Number
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if d.Decode(&n) != nil || len(n) > maxRef {
			return nil, malformed("%s must be a string, a number or null", name)
		}
		s = n.String()
	}
	return &s, nil
}

// Encode returns the frame as JSON. A nil or empty payload is sent as {}.
func (f Frame) Encode() []byte {
	payload := f.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	b, _ := json.Marshal([]any{f.JoinRef, f.Ref, f.Topic, f.Event, payload})
	return b
}

// New builds a frame with payload v marshalled as JSON.
func New(joinRef, ref *string, topic, event string, v any) Frame {
	p, err := json.Marshal(v)
	if err != nil || len(p) == 0 || p[0] != '{' {
		p = []byte("{}")
	}
	return Frame{JoinRef: joinRef, Ref: ref, Topic: topic, Event: event, Payload: p}
}

// Unpack decodes a frame's payload, one JSON object, into v. Fields v does not know
// are ignored (a newer peer may send them; see "Versioning" in docs/protocol.md);
// known fields of the wrong type, a payload that is not one object, or trailing data
// are refused.
func (f Frame) Unpack(v any) error {
	p := bytes.TrimSpace(f.Payload)
	if len(p) == 0 || p[0] != '{' {
		return malformed("%s payload: must be a JSON object", f.Event)
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if err := dec.Decode(v); err != nil {
		return malformed("%s payload: %v", f.Event, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed("%s payload: trailing data after the object", f.Event)
	}
	return nil
}

// Payloads.

// Join is the phx_join payload.
type Join struct {
	ReceiverInfo map[string]any `json:"receiver_info,omitempty"`
	// Ref is the join's own payload ref. FiberKit clients put a ref in every
	// payload, the join's included; PhoenixKit's receiver does not (its join is
	// {"receiver_info": …} alone). A join with a payload ref gets FiberKit's
	// reply ({"version", "awaiting_approval"}); one without gets exactly {} —
	// what PhoenixKit's receiver waits for (see docs/protocol.md).
	Ref json.RawMessage `json:"ref,omitempty"`
}

// SpeaksFiberKit reports whether the joining receiver reads FiberKit's join
// reply (version, awaiting_approval): it sent a payload ref.
func (j Join) SpeaksFiberKit() bool {
	r := bytes.TrimSpace(j.Ref)
	return len(r) > 0 && string(r) != "null"
}

// PayloadRef returns the "ref" member of a request's payload (a JSON string or
// number, as sent), or nil when there is none or it is not a string or number.
// PhoenixKit receivers match answers on it, so every answer echoes it.
func PayloadRef(payload json.RawMessage) json.RawMessage {
	var p struct {
		Ref json.RawMessage `json:"ref"`
	}
	if json.Unmarshal(payload, &p) != nil || len(p.Ref) == 0 || len(p.Ref) > maxRef+2 {
		return nil
	}
	if c := p.Ref[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
		return nil
	}
	return p.Ref
}

// Answer builds the answer to request f: the same join_ref, ref and topic, event,
// payload v, with f's payload ref (PayloadRef) added as the payload's "ref"
// member. v must not have a "ref" member of its own (ErrorAnswer sets it instead).
func Answer(f Frame, event string, v any) Frame {
	a := New(f.JoinRef, f.Ref, f.Topic, event, v)
	ref := PayloadRef(f.Payload)
	if ref == nil {
		return a
	}
	p := bytes.TrimRight(a.Payload, " \t\r\n")
	body := bytes.TrimSpace(p[1 : len(p)-1])
	out := make([]byte, 0, len(p)+len(ref)+8)
	out = append(out, `{"ref":`...)
	out = append(out, ref...)
	if len(body) > 0 {
		out = append(out, ',')
		out = append(out, body...)
	}
	a.Payload = append(out, '}')
	return a
}

// ErrorAnswer builds the response:error answer to request f: its payload's ref
// is f's payload ref (a number as its digits), or without one f's frame ref.
func ErrorAnswer(f Frame, code, message string) Frame {
	e := ErrorPayload{Error: code, Message: message, Ref: f.Ref}
	if ref := PayloadRef(f.Payload); ref != nil {
		s := string(ref)
		_ = json.Unmarshal(ref, &s) // a string; a number stays as sent
		e.Ref = &s
	}
	return New(f.JoinRef, f.Ref, f.Topic, ResponseError, e)
}

// Reply is the phx_reply payload.
type Reply struct {
	Status   string         `json:"status"` // ok | error
	Response map[string]any `json:"response"`
}

// Capabilities is the response:capabilities payload: ours at the top level, and
// PhoenixKit's object under "capabilities" for PhoenixKit receivers.
type Capabilities struct {
	Version      string   `json:"version"`
	Features     []string `json:"features"`
	Compression  []string `json:"compression"`
	MaxBatchRows int      `json:"max_batch_rows"`
	MaxRecords   int      `json:"max_records"`
	// PhoenixKit is what a PhoenixKit sender would answer (PhoenixKitCaps).
	PhoenixKit *PhoenixKitCapabilities `json:"capabilities,omitempty"`
}

// PhoenixKitCaps is the PhoenixKit capabilities object our sender answers with:
// PhoenixKit's protocol version 1.0.0 and the three features it serves.
func PhoenixKitCaps() *PhoenixKitCapabilities {
	return &PhoenixKitCapabilities{Version: "1.0.0", PhoenixKitVersion: "fiberkit-" + Version,
		Features: []string{"list_tables", "get_schema", "fetch_records"}}
}

// TablesResponse is the response:tables payload.
type TablesResponse struct {
	Tables []syncapi.Table `json:"tables"`
}

// SchemaResponse is the response:schema payload.
type SchemaResponse struct {
	Table  string          `json:"table"`
	Schema *syncapi.Schema `json:"schema"`
}

// CountResponse is the response:count payload.
type CountResponse struct {
	Table string `json:"table"`
	Count int64  `json:"count"`
}

// RecordsResponse is the response:records payload: a page of rows in key order,
// column → text value (nil for NULL).
type RecordsResponse struct {
	Table   string               `json:"table"`
	Records []map[string]*string `json:"records"`
	Offset  int                  `json:"offset"`
	HasMore bool                 `json:"has_more"`
}

// JSONRecordsResponse is the response:records payload for a receiver that did not
// ask for EncodingText (PhoenixKit's): each record a JSON object of JSON-typed values.
type JSONRecordsResponse struct {
	Table   string            `json:"table"`
	Records []json.RawMessage `json:"records"`
	Offset  int               `json:"offset"`
	HasMore bool              `json:"has_more"`
}

// ChecksumResponse is the response:checksum payload: the md5 of the table's rows
// (COPY text format, key order) over Columns.
type ChecksumResponse struct {
	Table   string   `json:"table"`
	MD5     string   `json:"md5"`
	Columns []string `json:"columns"`
}

// AwaitingApproval is the awaiting_approval push: the receiver waits for an
// admin's decision on the approval request ApprovalID.
type AwaitingApproval struct {
	ApprovalID string `json:"approval_id"`
}

// Denied is the denied push: why an admin's decision refused the receiver.
type Denied struct {
	Error string `json:"error"`
}

// StreamRef names a stream: the stream:cancel payload, and the field every stream
// message carries.
type StreamRef struct {
	Stream uint32 `json:"stream"`
}

// TableRequest is the payload of request:schema and request:count.
type TableRequest struct {
	Table string `json:"table"`
}

// Validate refuses what no table is called, before any SQL sees it.
func (r TableRequest) Validate() error { return ValidTableName(r.Table) }

// MaxTableName bounds a requested table name: "schema.name", each at most
// PostgreSQL's 63 bytes.
const MaxTableName = 127

// MaxKeyValues bounds the values of a resume key (PostgreSQL's index columns).
const MaxKeyValues = 32

// ValidTableName refuses a table name that cannot name a table: empty, too long,
// not UTF-8, or holding a NUL or another control character.
func ValidTableName(name string) error {
	switch {
	case name == "":
		return errors.New("table: required")
	case len(name) > MaxTableName:
		return fmt.Errorf("table: longer than %d bytes", MaxTableName)
	case !utf8.ValidString(name):
		return errors.New("table: not UTF-8")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("table: contains a NUL or control character")
	}
	return nil
}

// validKey refuses a resume key no table has: too many values, or a value with
// a NUL (PostgreSQL text never holds one).
func validKey(key []string) error {
	if len(key) > MaxKeyValues {
		return fmt.Errorf("after_key: more than %d values", MaxKeyValues)
	}
	for _, v := range key {
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return errors.New("after_key: a value holds a NUL byte or is not UTF-8")
		}
	}
	return nil
}

// RecordsRequest is the request:records payload.
type RecordsRequest struct {
	Table  string `json:"table"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
	// Encoding asks for the values' representation: EncodingText (PostgreSQL's
	// exact text, what our client asks for) or "" (PhoenixKit's JSON-typed values:
	// numbers, booleans, lists, objects, ISO 8601 strings, the base64 bytea wrapper).
	Encoding string `json:"encoding,omitempty"`
}

// Validate refuses a malformed request before any SQL sees it.
func (r RecordsRequest) Validate() error {
	if err := ValidTableName(r.Table); err != nil {
		return err
	}
	if r.Offset < 0 {
		return errors.New("offset must be ≥ 0")
	}
	if r.Encoding != "" && r.Encoding != EncodingText {
		return fmt.Errorf("encoding: %q or none", EncodingText)
	}
	return nil
}

// Value encodings: of request:records (text) and of stream:start (binary).
const (
	// EncodingText: every value is its PostgreSQL text representation (or null).
	EncodingText = "text"
	// EncodingBinary: stream batches are COPY binary tuples (Start.Encoding).
	EncodingBinary = "binary"
	// BinaryKey is the key of PhoenixKit's bytea wrapper {"__phoenix_kit_binary__": base64}.
	BinaryKey = "__phoenix_kit_binary__"
)

// PhoenixKitCapabilities is the capabilities object a PhoenixKit sender answers
// with, nested under "capabilities" in response:capabilities.
type PhoenixKitCapabilities struct {
	Version           string   `json:"version"`
	PhoenixKitVersion string   `json:"phoenix_kit_version,omitempty"`
	Features          []string `json:"features"`
}

// ErrorPayload is the response:error payload.
type ErrorPayload struct {
	Error   string  `json:"error"`
	Message string  `json:"message,omitempty"`
	Ref     *string `json:"ref"`
}

// Start is the stream:start payload: send table's rows after AfterKey in batches.
type Start struct {
	Stream   uint32   `json:"stream"`
	Table    string   `json:"table"`
	AfterKey []string `json:"after_key,omitempty"`
	// UntilKey, when set, ends the stream after the row with this key (inclusive):
	// one range of a split table (RangesRequest), AfterKey its start.
	UntilKey  []string `json:"until_key,omitempty"`
	BatchRows int      `json:"batch_rows"`
	// Compression is CompressionZstd, CompressionAuto or "" (none).
	Compression string `json:"compression,omitempty"`
	// Encoding of the rows: "" (COPY text) or EncodingBinary (COPY binary, which a
	// receiver asks for only when its columns have the sender's types, built-in
	// ones: binary values carry no type name and arrays carry their element's oid).
	Encoding string `json:"encoding,omitempty"`
	// Credit is how many batches the sender may send before the next ack.
	Credit int `json:"credit"`
}

// Validate refuses a malformed stream:start before any SQL sees it.
func (s Start) Validate() error {
	if err := ValidTableName(s.Table); err != nil {
		return err
	}
	if err := validKey(s.AfterKey); err != nil {
		return err
	}
	return validKey(s.UntilKey)
}

// Ack is the stream:ack payload: batches up to Seq are applied; Credit more may come.
type Ack struct {
	Stream uint32 `json:"stream"`
	Seq    uint32 `json:"seq"`
	Credit int    `json:"credit"`
	// Compression switches a stream started with CompressionAuto: CompressionZstd
	// compresses the batches sent from now on, CompressionNone stops; "" keeps it.
	Compression string `json:"compression,omitempty"`
}

// Stream compression (Start.Compression, Ack.Compression, Capabilities.Compression).
const (
	// CompressionZstd compresses every batch with zstd.
	CompressionZstd = "zstd"
	// CompressionAuto starts uncompressed and lets the receiver switch zstd on and
	// off with its acks, by what it measures of the link (see docs/protocol.md).
	CompressionAuto = "auto"
	// CompressionNone, in an ack, turns an auto stream's compression off.
	CompressionNone = "none"
)

// End is the stream:end payload.
type End struct {
	Stream  uint32   `json:"stream"`
	Batches uint32   `json:"batches"`
	Rows    int64    `json:"rows"`
	LastKey []string `json:"last_key,omitempty"`
}

// StreamErr is the stream:error payload.
type StreamErr struct {
	Stream  uint32 `json:"stream"`
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}
