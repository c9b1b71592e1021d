package syncapi

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Limits bound what a connection may do. Zero values mean "no limit".
type Limits struct {
	AllowedTables     []string   `json:"allowed_tables,omitempty"`
	ExcludedTables    []string   `json:"excluded_tables,omitempty"`
	ExpiresAt         *time.Time `json:"expires_at,omitempty"`
	MaxDownloads      int        `json:"max_downloads,omitempty"`
	MaxRecords        int64      `json:"max_records,omitempty"`
	MaxRecordsRequest int        `json:"max_records_per_request,omitempty"`
	// IPAllowlist holds CIDR prefixes ("10.0.0.0/8", "203.0.113.7/32").
	IPAllowlist []string `json:"ip_allowlist,omitempty"`
	// AllowedHours lists the UTC hours (0–23) requests are accepted in.
	AllowedHours      []int `json:"allowed_hours,omitempty"`
	RequestsPerMinute int   `json:"requests_per_minute,omitempty"`
	// Masks replace columns' values before they leave this site for this
	// connection (on top of the site's default rules; a rule here wins for its column).
	Masks []MaskRule `json:"masks,omitempty"`
	// Follow lets the connection keep following its tables after a pull: the
	// sender streams their changes until the receiver stops, or the connection is
	// suspended, revoked or expires.
	Follow bool `json:"follow,omitempty"`
	// FollowTables, when set, are the only tables the connection may follow (each
	// must also be one it may read); empty: every table it may read.
	FollowTables []string `json:"follow_tables,omitempty"`
	// FollowChangesPerSecond caps the row changes a follow is sent per second
	// (0: no cap); a faster sender is slowed, never skipped.
	FollowChangesPerSecond int `json:"follow_changes_per_second,omitempty"`
}

// Connection is a permanent connection as the sending side records it.
type Connection struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	SiteURL   string    `json:"site_url"`
	Status    string    `json:"status"`
	StatusBy  string    `json:"status_by"`
	StatusAt  time.Time `json:"status_at"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	Limits    Limits    `json:"limits"`
	Downloads int       `json:"downloads"`
	Records   int64     `json:"records"`
}

// Validate checks the limits' formats.
func (l Limits) Validate() error {
	for _, c := range l.IPAllowlist {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("ip_allowlist: %q is not a CIDR prefix", c)
		}
	}
	for _, h := range l.AllowedHours {
		if h < 0 || h > 23 {
			return fmt.Errorf("allowed_hours: %d is not an hour (0–23)", h)
		}
	}
	if l.MaxDownloads < 0 || l.MaxRecords < 0 || l.MaxRecordsRequest < 0 || l.RequestsPerMinute < 0 || l.FollowChangesPerSecond < 0 {
		return errors.New("limits must not be negative")
	}
	return nil
}
