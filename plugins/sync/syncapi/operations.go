package syncapi

// The operation names, as the host routes them to the Sync module ("sync").
const (
	// Module is the Sync module's id: the target of every operation.
	ModuleID = "sync"

	// The system operations, answered by the host for every module (so they work
	// while Sync is off): turn it on, off, and whether it is on.
	OpEnableSystem  = "enable_system"  // → bool
	OpDisableSystem = "disable_system" // → bool
	OpEnabled       = "enabled"        // → bool

	OpConfig              = "config"                // → Config
	OpSetIncomingMode     = "set_incoming_mode"     // ModeRequest → bool
	OpSetPassword         = "set_password"          // PasswordRequest → bool
	OpValidatePassword    = "validate_password"     // PasswordRequest → bool
	OpListTables          = "list_tables"           // ListTablesRequest → []Table
	OpGetSchema           = "get_schema"            // TableRequest → *Schema
	OpGetCount            = "get_count"             // TableRequest → int64
	OpTableExists         = "table_exists"          // TableRequest → bool
	OpExportRecords       = "export_records"        // RecordsRequest → Page
	OpImportRecords       = "import_records"        // ImportRequest → ImportResult
	OpCreateTable         = "create_table"          // CreateTableRequest → CreateTableResult
	OpCreateSession       = "create_session"        // HandleRequest → Session
	OpTouchSessions       = "touch_sessions"        // HandleRequest → bool
	OpReleaseSessions     = "release_sessions"      // HandleRequest → bool
	OpGetSession          = "get_session"           // SessionRef → SessionInfo
	OpListSessions        = "list_sessions"         // → []SessionInfo
	OpValidateCode        = "validate_code"         // CodeRequest → CodeValidation
	OpUpdateSession       = "update_session"        // UpdateSessionRequest → bool
	OpDeleteSession       = "delete_session"        // SessionRef → bool
	OpPendingApprovals    = "pending_approvals"     // → []Approval
	OpApprove             = "approve"               // ApprovalRef → bool
	OpDeny                = "deny"                  // ApprovalRef → bool
	OpCreateConnection    = "create_connection"     // CreateConnectionRequest → ConnectionWithToken
	OpListConnections     = "list_connections"      // → []Connection
	OpGetConnection       = "get_connection"        // ConnectionRef → Connection
	OpSetConnectionStatus = "set_connection_status" // ConnectionStatusRequest → bool
	OpSetConnectionLimits = "set_connection_limits" // ConnectionLimitsRequest → bool
	OpRegenerateToken     = "regenerate_token"      // ConnectionRef → ConnectionWithToken
	OpAddRemote           = "add_remote"            // AddRemoteRequest → Remote
	OpListRemotes         = "list_remotes"          // → []Remote
	OpRunRemote           = "run_remote"            // RemoteRef → map[string]TableResult
	OpUpdateRemote        = "update_remote"         // UpdateRemoteRequest → Remote
	OpDeleteRemote        = "delete_remote"         // RemoteRef → bool
	OpTransferHistory     = "transfer_history"      // HistoryRequest → []Transfer
	OpPull                = "pull"                  // PullRequest → map[string]TableResult
	OpFollowStatus        = "follow_status"         // → FollowReport
)

// Error codes the Sync operations answer with (sdk.Error's Code), beyond the
// host's own (invalid_input, forbidden, module_disabled …).
const (
	CodeUnknownTable   = "unknown_table"   // no such user table on this site
	CodeNotFound       = "not_found"       // no such session, approval, connection or remote
	CodeStillExpired   = "still_expired"   // reactivating a connection whose expiry has passed
	CodeRefusedURL     = "refused_url"     // an outgoing URL that points inside this network
	CodeConnectFailed  = "connect_failed"  // the sender could not be reached or refused
	CodeTransferFailed = "transfer_failed" // the transfer failed before any table
	CodeLiveDisabled   = "live_disabled"   // live sync is off, or cannot run on this database
)

// DefaultRecordsLimit is the page size export_records uses when the caller gives
// none (the seed's, and PhoenixKit's fetch_records', 100); MaxRecordsLimit caps
// what it returns.
const (
	DefaultRecordsLimit = 100
	MaxRecordsLimit     = 5000
)

// Config is the Sync module's state (config).
type Config struct {
	Enabled        bool   `json:"enabled"`
	IncomingMode   string `json:"incoming_mode"`
	PasswordSet    bool   `json:"password_set"`
	ActiveSessions int    `json:"active_sessions"`
}

// ModeRequest sets the incoming mode: auto_accept, require_approval,
// require_password or deny_all (set_incoming_mode).
type ModeRequest struct {
	Mode string `json:"mode"`
}

// PasswordRequest carries the incoming password, to set or to check.
type PasswordRequest struct {
	Password string `json:"password"`
}

// ListTablesRequest selects the tables list_tables returns.
type ListTablesRequest struct {
	// Schemas to list; default ["public"].
	Schemas []string `json:"schemas,omitempty"`
	// Exclude lists table names never to list.
	Exclude []string `json:"exclude,omitempty"`
	// IncludeKit lists the kit's own tables that hold no secrets too.
	IncludeKit bool `json:"include_kit,omitempty"`
	// Exact counts rows (the default); kept for callers that set it.
	Exact bool `json:"exact,omitempty"`
	// Estimate reads the planner's estimates instead of counting (fast on big
	// tables, wrong after recent writes).
	Estimate bool `json:"estimate,omitempty"`
}

// TableRequest names one local table (get_schema, get_count, table_exists).
type TableRequest struct {
	Table string `json:"table"`
}

// RecordsRequest asks for a page of a local table's rows in key order (export_records).
type RecordsRequest struct {
	Table  string `json:"table"`
	Offset int    `json:"offset"`
	// Limit is the page size (default DefaultRecordsLimit, at most MaxRecordsLimit).
	Limit int `json:"limit"`
}

// ImportRequest imports rows into a local table (import_records).
type ImportRequest struct {
	Table    string   `json:"table"`
	Strategy Strategy `json:"strategy"`
	// Records map column → text value (nil for NULL); a column left out takes its
	// default on insert and keeps its value on update.
	Records []map[string]*string `json:"records"`
}

// CreateTableRequest creates a local table from a definition as get_schema returns it,
// or as PhoenixKit's create_table(name, {columns, primary_key}) takes it: Table names
// the table when the definition does not (or names it otherwise), in public.
type CreateTableRequest struct {
	Table  string  `json:"table,omitempty"`
	Schema *Schema `json:"schema"`
}

// CreateTableResult says what create_table left out of the definition.
type CreateTableResult struct {
	// Warnings name each default, domain CHECK or generation expression that was not
	// recreated, and why.
	Warnings []string `json:"warnings,omitempty"`
}

// HandleRequest names one of the caller's sessions (create_session, touch_sessions,
// release_sessions): Handle tells several sessions of one caller apart; the owner is
// the caller as the host stamped it.
type HandleRequest struct {
	Handle string `json:"handle,omitempty"`
}

// Session is a sending session made by create_session.
type Session struct {
	ID   string `json:"id"`
	Code string `json:"code"`
	// Owner is the calling plugin (plus the handle); the session lives while the
	// owner renews it with touch_sessions.
	Owner string `json:"owner"`
	// URL is this site's public URL, which the receiver connects to.
	URL string `json:"url"`
	// LeaseSeconds is how long the session lives without being touched.
	LeaseSeconds int `json:"lease_seconds"`
}

// SessionRef names a session by id (get_session, delete_session).
type SessionRef struct {
	ID string `json:"id"`
}

// ApprovalRef names a pending approval by id (approve, deny).
type ApprovalRef struct {
	ID string `json:"id"`
}

// CodeRequest carries a connection code to check (validate_code).
type CodeRequest struct {
	Code string `json:"code"`
}

// CodeValidation is validate_code's answer: Error is invalid_code or already_used.
type CodeValidation struct {
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

// UpdateSessionRequest sets a session's status (pending, connected, transferring,
// done) and progress (update_session).
type UpdateSessionRequest struct {
	ID       string         `json:"id"`
	Status   string         `json:"status"`
	Progress map[string]any `json:"progress,omitempty"`
}

// PullRequest asks this site to pull tables from a sender (pull).
type PullRequest struct {
	URL      string `json:"url"`
	Code     string `json:"code"`
	Password string `json:"password,omitempty"`
	// Tables to pull; empty means every table the sender offers.
	Tables []string `json:"tables,omitempty"`
	// Strategy for every table ("" = skip), unless Strategies names one for it.
	Strategy   Strategy          `json:"strategy,omitempty"`
	Strategies map[string]string `json:"strategies,omitempty"`
	// CreateMissing creates tables this site lacks from the sender's definition.
	CreateMissing bool `json:"create_missing,omitempty"`
	// IgnoreMissingColumns imports without the sender's columns a local table lacks
	// (the results name them in DroppedColumns).
	IgnoreMissingColumns bool `json:"ignore_missing_columns,omitempty"`
	BatchSize            int  `json:"batch_size,omitempty"`
	// SplitWorkers is how many key ranges of a large table are copied at once (0:
	// what the machine can use; 1: never split; see docs/benchmarks.md).
	SplitWorkers int `json:"split_workers,omitempty"`
	// TimeoutSeconds bounds connecting, approval included (default 30).
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
}

// CreateConnectionRequest makes a permanent connection (create_connection).
type CreateConnectionRequest struct {
	Name    string `json:"name"`
	SiteURL string `json:"site_url"`
	Limits  Limits `json:"limits"`
}

// ConnectionWithToken is a connection with its token, answered only when the token
// was just made (create_connection, regenerate_token): it is never shown again.
type ConnectionWithToken struct {
	Connection
	Token string `json:"token,omitempty"`
	// Told says whether the other site took a regenerated token; TellError why not.
	Told      bool   `json:"told,omitempty"`
	TellError string `json:"tell_error,omitempty"`
}

// ConnectionRef names a permanent connection by id.
type ConnectionRef struct {
	ID string `json:"id"`
}

// ConnectionStatusRequest sets a connection's status: active (approve,
// reactivate), suspended or revoked (set_connection_status).
type ConnectionStatusRequest struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// ConnectionLimitsRequest replaces a connection's limits (set_connection_limits).
type ConnectionLimitsRequest struct {
	ID     string `json:"id"`
	Limits Limits `json:"limits"`
}

// AddRemoteRequest records a sending site this site pulls from with a token (add_remote).
type AddRemoteRequest struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Token    string   `json:"token"`
	Tables   []string `json:"tables,omitempty"`
	Strategy string   `json:"strategy,omitempty"`
	// Interval between scheduled pulls; 0 pulls on demand only.
	Interval int `json:"interval_seconds,omitempty"`
	// Follow follows the remote continuously instead (its connection must allow it).
	Follow bool `json:"follow,omitempty"`
}

// FollowReport is follow_status's answer: this site's follows of other sites
// (receiving) and the connections following it (sending), with their lag.
type FollowReport struct {
	Follows   []FollowStatus `json:"follows"`
	Followers []Follower     `json:"followers"`
}

// RemoteRef names a remote by id (run_remote, delete_remote).
type RemoteRef struct {
	ID string `json:"id"`
}

// UpdateRemoteRequest changes a remote's schedule: its tables, strategy and interval.
type UpdateRemoteRequest struct {
	ID string `json:"id"`
	Schedule
}

// HistoryRequest filters the transfer history (transfer_history).
type HistoryRequest struct {
	HistoryFilter
	// Limit is how many entries, newest first (default 100, at most 1000).
	Limit int `json:"limit,omitempty"`
}
