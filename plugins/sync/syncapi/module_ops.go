package syncapi

import "context"

// The rest of the operations, typed. Each is the operation of the same name (see
// the Op constants); errors keep their code.

// SetIncomingMode sets how connections with a code are treated: auto_accept,
// require_approval, require_password or deny_all.
func (m *Module) SetIncomingMode(ctx context.Context, mode string) error {
	return m.call(ctx, OpSetIncomingMode, ModeRequest{Mode: mode}, nil)
}

// SetPassword sets the incoming password; "" clears it.
func (m *Module) SetPassword(ctx context.Context, password string) error {
	return m.call(ctx, OpSetPassword, PasswordRequest{Password: password}, nil)
}

// ValidatePassword checks a candidate against the incoming password (constant time).
func (m *Module) ValidatePassword(ctx context.Context, password string) (bool, error) {
	var ok bool
	return ok, m.call(ctx, OpValidatePassword, PasswordRequest{Password: password}, &ok)
}

// TableExists reports whether a user table answers to name here.
func (m *Module) TableExists(ctx context.Context, table string) (bool, error) {
	var ok bool
	return ok, m.call(ctx, OpTableExists, TableRequest{Table: table}, &ok)
}

// CreateTable creates a local table from a definition as GetSchema returns it (or
// PhoenixKit's {columns, primary_key} shape with the table's name).
func (m *Module) CreateTable(ctx context.Context, r CreateTableRequest) (CreateTableResult, error) {
	var res CreateTableResult
	return res, m.call(ctx, OpCreateTable, r, &res)
}

// GetSession returns a session by id.
func (m *Module) GetSession(ctx context.Context, id string) (SessionInfo, error) {
	var s SessionInfo
	return s, m.call(ctx, OpGetSession, SessionRef{ID: id}, &s)
}

// ListSessions lists the live sessions.
func (m *Module) ListSessions(ctx context.Context) ([]SessionInfo, error) {
	var s []SessionInfo
	return s, m.call(ctx, OpListSessions, nil, &s)
}

// ValidateCode says whether a code would be accepted now, without using it up.
func (m *Module) ValidateCode(ctx context.Context, code string) (CodeValidation, error) {
	var v CodeValidation
	return v, m.call(ctx, OpValidateCode, CodeRequest{Code: code}, &v)
}

// UpdateSession sets a session's status and progress.
func (m *Module) UpdateSession(ctx context.Context, r UpdateSessionRequest) error {
	return m.call(ctx, OpUpdateSession, r, nil)
}

// DeleteSession ends a session; its code stops working.
func (m *Module) DeleteSession(ctx context.Context, id string) error {
	return m.call(ctx, OpDeleteSession, SessionRef{ID: id}, nil)
}

// PendingApprovals lists the receivers waiting for an admin's decision.
func (m *Module) PendingApprovals(ctx context.Context) ([]Approval, error) {
	var a []Approval
	return a, m.call(ctx, OpPendingApprovals, nil, &a)
}

// Approve lets a waiting receiver in.
func (m *Module) Approve(ctx context.Context, id string) error {
	return m.call(ctx, OpApprove, ApprovalRef{ID: id}, nil)
}

// Deny turns a waiting receiver away.
func (m *Module) Deny(ctx context.Context, id string) error {
	return m.call(ctx, OpDeny, ApprovalRef{ID: id}, nil)
}

// CreateConnection makes a permanent connection; its token is in the answer only.
func (m *Module) CreateConnection(ctx context.Context, r CreateConnectionRequest) (ConnectionWithToken, error) {
	var c ConnectionWithToken
	return c, m.call(ctx, OpCreateConnection, r, &c)
}

// ListConnections lists the permanent connections.
func (m *Module) ListConnections(ctx context.Context) ([]Connection, error) {
	var c []Connection
	return c, m.call(ctx, OpListConnections, nil, &c)
}

// GetConnection returns a permanent connection.
func (m *Module) GetConnection(ctx context.Context, id string) (Connection, error) {
	var c Connection
	return c, m.call(ctx, OpGetConnection, ConnectionRef{ID: id}, &c)
}

// SetConnectionStatus approves, suspends, reactivates or revokes a connection.
func (m *Module) SetConnectionStatus(ctx context.Context, id, status string) error {
	return m.call(ctx, OpSetConnectionStatus, ConnectionStatusRequest{ID: id, Status: status}, nil)
}

// SetConnectionLimits replaces a connection's limits.
func (m *Module) SetConnectionLimits(ctx context.Context, id string, l Limits) error {
	return m.call(ctx, OpSetConnectionLimits, ConnectionLimitsRequest{ID: id, Limits: l}, nil)
}

// RegenerateToken replaces a connection's token and tells the other site.
func (m *Module) RegenerateToken(ctx context.Context, id string) (ConnectionWithToken, error) {
	var c ConnectionWithToken
	return c, m.call(ctx, OpRegenerateToken, ConnectionRef{ID: id}, &c)
}

// AddRemote records a sending site this site pulls from with a token.
func (m *Module) AddRemote(ctx context.Context, r AddRemoteRequest) (Remote, error) {
	var rem Remote
	return rem, m.call(ctx, OpAddRemote, r, &rem)
}

// FollowStatus reports this site's follows (receiving) and followers (sending),
// with their lag.
func (m *Module) FollowStatus(ctx context.Context) (FollowReport, error) {
	var r FollowReport
	return r, m.call(ctx, OpFollowStatus, nil, &r)
}

// ListRemotes lists the remotes.
func (m *Module) ListRemotes(ctx context.Context) ([]Remote, error) {
	var r []Remote
	return r, m.call(ctx, OpListRemotes, nil, &r)
}

// RunRemote pulls from a remote now.
func (m *Module) RunRemote(ctx context.Context, id string) (map[string]TableResult, error) {
	var out map[string]TableResult
	return out, m.call(ctx, OpRunRemote, RemoteRef{ID: id}, &out)
}

// UpdateRemote changes a remote's schedule.
func (m *Module) UpdateRemote(ctx context.Context, r UpdateRemoteRequest) (Remote, error) {
	var rem Remote
	return rem, m.call(ctx, OpUpdateRemote, r, &rem)
}

// DeleteRemote forgets a remote.
func (m *Module) DeleteRemote(ctx context.Context, id string) error {
	return m.call(ctx, OpDeleteRemote, RemoteRef{ID: id}, nil)
}

// EnableSystem turns Sync on (the host answers; Sync's manifest says which modules may).
func (m *Module) EnableSystem(ctx context.Context) error {
	return m.call(ctx, OpEnableSystem, nil, nil)
}

// DisableSystem turns Sync off: every Sync route, socket and operation stops.
func (m *Module) DisableSystem(ctx context.Context) error {
	return m.call(ctx, OpDisableSystem, nil, nil)
}

// Enabled reports whether Sync is on.
func (m *Module) Enabled(ctx context.Context) (bool, error) {
	var on bool
	return on, m.call(ctx, OpEnabled, nil, &on)
}
