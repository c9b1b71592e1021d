package syncapi

import (
	"time"
)

// Transfer is one table moved (or attempted) in one direction.
type Transfer struct {
	ID        int64     `json:"id"`
	At        time.Time `json:"at"`
	Direction string    `json:"direction"` // send | receive | follow | follower
	Peer      string    `json:"peer"`      // the other site's address or URL
	Table     string    `json:"table"`
	Strategy  string    `json:"strategy,omitempty"`
	// Requested is how many rows the table had on the sender when the transfer
	// began (0 when unknown); Rows is how many were moved.
	Requested int64         `json:"requested"`
	Rows      int64         `json:"rows"`
	Created   int           `json:"created"`
	Updated   int           `json:"updated"`
	Skipped   int           `json:"skipped"`
	Failed    int           `json:"failed"`
	Bytes     int64         `json:"bytes"`
	Duration  time.Duration `json:"duration"`
	// Status is done, failed or cancelled; a receiving pull's tables are running
	// while it moves rows, interrupted when the receiving plugin stopped mid-pull
	// (found so by its restart), and resumed once a later pull took over.
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	StartedBy string `json:"started_by,omitempty"`
	// PullID groups the tables of one receiving pull.
	PullID string `json:"pull_id,omitempty"`
	// LastKey is the key of the last row applied, as far as it is known: resume
	// after it (a running or interrupted pull's is updated as batches land).
	LastKey []string `json:"last_key,omitempty"`
	// Ranges are the key ranges of a table pulled split, each with how far it
	// got: an interrupted pull resumes each from its own last key.
	Ranges []RangeState `json:"ranges,omitempty"`
	// Masks lists the masked columns of a send ("email: fake email"), as applied.
	Masks []string `json:"masks,omitempty"`
	// LagBytes and LagSeconds are a follow's lag when the entry was last updated
	// (direction follow on the receiver, follower on the sender).
	LagBytes   int64   `json:"lag_bytes,omitempty"`
	LagSeconds float64 `json:"lag_seconds,omitempty"`
}

// HistoryFilter selects history entries; empty fields match everything.
type HistoryFilter struct {
	Direction string `json:"direction,omitempty"`
	Table     string `json:"table,omitempty"`
	Status    string `json:"status,omitempty"`
	// Peer matches entries whose peer contains it.
	Peer string `json:"peer,omitempty"`
	// StartedBy matches entries whose starter contains it.
	StartedBy string    `json:"started_by,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}
