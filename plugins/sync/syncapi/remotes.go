package syncapi

import (
	"time"
)

// Remote is a sending site this site pulls from with a token.
type Remote struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Tables   []string `json:"tables"`
	Strategy string   `json:"strategy"`
	Interval int      `json:"interval_seconds"` // 0 = no schedule
	// Follow: the remote is followed continuously (a pull, then its changes as they
	// come) instead of pulled every Interval.
	Follow     bool       `json:"follow,omitempty"`
	NextRunAt  *time.Time `json:"next_run_at,omitempty"`
	LastRunAt  *time.Time `json:"last_run_at,omitempty"`
	LastStatus string     `json:"last_status"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
}

// Schedule is what can be changed about a remote's pulls.
type Schedule struct {
	Tables   []string `json:"tables"`           // empty: every table the sender offers
	Strategy string   `json:"strategy"`         // skip, overwrite, merge or append ("" = skip)
	Interval int      `json:"interval_seconds"` // 0 = no schedule (pull on demand only)
	// Follow follows the remote continuously (its token's connection must allow
	// it); Interval is then not used.
	Follow bool `json:"follow,omitempty"`
}
