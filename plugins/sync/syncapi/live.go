package syncapi

// Live sync: shapes (a table, a where clause, columns) streamed as a snapshot, then
// their changes, in Electric's message format (https://electric-sql.com/docs/api/http).

// The live operations.
const (
	OpStream      = "stream"       // streaming: StreamRequest → StreamMessage…
	OpInterrupt   = "interrupt"    // ShapeMatch → int (shapes interrupted)
	OpListShapes  = "list_shapes"  // → []ShapeInfo
	OpDropShape   = "drop_shape"   // HandleRef → bool
	OpLiveStatus  = "live_status"  // → LiveStatus
	OpEnableLive  = "enable_live"  // → LiveStatus
	OpDisableLive = "disable_live" // → LiveStatus
)

// The replica modes of a shape.
const (
	// ReplicaDefault sends an update's key and changed columns, a delete's key.
	ReplicaDefault = "default"
	// ReplicaFull sends whole rows, and an update's old values of changed columns.
	ReplicaFull = "full"
)

// ShapeSpec defines a shape: the rows of Table that satisfy Where, with Columns.
// Two specs that say the same thing (see shape.Normalize) are one shape: one handle,
// one log.
type ShapeSpec struct {
	// Namespace is the table's schema; empty means the search path's first match.
	Namespace string `json:"namespace,omitempty"`
	Table     string `json:"table"`
	// Where is a SQL boolean expression over the row's columns: comparisons,
	// AND/OR/NOT, IN, IS [NOT] NULL, LIKE/ILIKE, BETWEEN, casts of literals; $1…$n
	// are Params.
	Where  string   `json:"where,omitempty"`
	Params []string `json:"params,omitempty"`
	// Columns to send; empty means all. They must include the primary key.
	Columns []string `json:"columns,omitempty"`
	// Replica is ReplicaDefault (or empty) or ReplicaFull.
	Replica string `json:"replica,omitempty"`
}

// The offsets a reader can start from, besides one it was given.
const (
	// OffsetBeginning reads the shape's snapshot, then its changes.
	OffsetBeginning = "-1"
	// OffsetNow skips the snapshot: changes from now on.
	OffsetNow = "now"
)

// StreamRequest opens a shape stream.
type StreamRequest struct {
	Shape ShapeSpec `json:"shape"`
	// Handle and Offset resume a stream: the Handle and the last Offset received.
	// Without a Handle, Offset is OffsetBeginning (the default) or OffsetNow.
	Handle string `json:"handle,omitempty"`
	Offset string `json:"offset,omitempty"`
	// Once ends the stream at the first up-to-date instead of waiting for changes.
	Once bool `json:"once,omitempty"`
}

// StreamMessage is one message of a stream: a row (snapshot or change) or a control
// message, with the position after it.
type StreamMessage struct {
	// Handle is the shape's handle; it changes only after a must-refetch.
	Handle string `json:"handle"`
	// Offset is where to resume to get the messages after this one.
	Offset  string  `json:"offset"`
	Message Message `json:"message"`
}

// Message is a shape log entry as Electric's HTTP API sends it.
type Message struct {
	Headers Headers `json:"headers"`
	// Key identifies the row: "\"schema\".\"table\"/\"pk1\"/\"pk2\"".
	Key string `json:"key,omitempty"`
	// Value is the row's values (text format, nil for NULL): all of the shape's
	// columns for an insert; for an update the key and changed columns (all with
	// replica full); for a delete the key (the whole row with replica full).
	Value map[string]*string `json:"value,omitempty"`
	// OldValue is, with replica full, the previous values of an update's changed
	// columns.
	OldValue map[string]*string `json:"old_value,omitempty"`
}

// Headers are a Message's headers: Operation for a row, Control for a control
// message.
type Headers struct {
	Operation string `json:"operation,omitempty"`
	Control   string `json:"control,omitempty"`
	// Relation is [schema, table] of a row.
	Relation []string `json:"relation,omitempty"`
	// Txids are the ids of the transactions that made a change.
	Txids []int64 `json:"txids,omitempty"`
	// LSN is the commit position of a change's transaction; OpPosition its place in
	// the transaction; Last marks the transaction's last change in this shape.
	LSN        string `json:"lsn,omitempty"`
	OpPosition int    `json:"op_position,omitempty"`
	Last       bool   `json:"last,omitempty"`
}

// The operations and control messages of Headers.
const (
	OperationInsert = "insert"
	OperationUpdate = "update"
	OperationDelete = "delete"

	ControlUpToDate    = "up-to-date"
	ControlMustRefetch = "must-refetch"
	ControlSnapshotEnd = "snapshot-end"
)

// ShapeMatch selects shapes by a partial definition for Interrupt: every field set
// must equal the shape's (Where and Params as normalized).
type ShapeMatch struct {
	Namespace string   `json:"namespace,omitempty"`
	Table     string   `json:"table,omitempty"`
	Where     string   `json:"where,omitempty"`
	Params    []string `json:"params,omitempty"`
	Columns   []string `json:"columns,omitempty"`
}

// ShapeInfo describes a live shape for the admin page and list_shapes.
type ShapeInfo struct {
	Handle      string    `json:"handle"`
	Shape       ShapeSpec `json:"shape"`
	Subscribers int       `json:"subscribers"`
	LogEntries  int64     `json:"log_entries"`
	LogBytes    int64     `json:"log_bytes"`
	// Offset is the shape's latest offset.
	Offset    string `json:"offset"`
	CreatedAt string `json:"created_at"`
}

// HandleRef names a shape.
type HandleRef struct {
	Handle string `json:"handle"`
}

// LiveStatus is the state of change capture on this site.
type LiveStatus struct {
	// Enabled says live sync is on (the publication and slot exist).
	Enabled bool `json:"enabled"`
	// Capturing says this replica holds the capture (one replica of a site does).
	Capturing bool `json:"capturing"`
	// NotReady explains why live sync cannot run here (wal_level, REPLICATION), with
	// the fix; empty when it can.
	NotReady string `json:"not_ready,omitempty"`
	// LagBytes is how much WAL the slot holds that capture has not acknowledged.
	LagBytes int64 `json:"lag_bytes"`
	// Shapes is how many shapes are live.
	Shapes int `json:"shapes"`
}
