package syncapi

import (
	"errors"
	"fmt"
	"time"
)

// Page is one page of the records API (export_records, request:records).
type Page struct {
	// Records map column name → text representation (nil for NULL).
	Records []map[string]*string `json:"records"`
	Offset  int                  `json:"offset"`
	HasMore bool                 `json:"has_more"`
}

// Strategy says what an import does with an incoming row whose key exists.
type Strategy string

// The strategies.
const (
	// Skip keeps the existing row.
	Skip Strategy = "skip"
	// Overwrite replaces the existing row.
	Overwrite Strategy = "overwrite"
	// Merge updates the existing row, keeping its values where the incoming one is null.
	Merge Strategy = "merge"
	// Append always inserts, with a freshly generated key.
	Append Strategy = "append"
)

// ErrBadStrategy is returned (wrapped) by ParseStrategy for an unknown name.
var ErrBadStrategy = errors.New("unknown strategy")

// ParseStrategy checks a strategy name; "" means Skip.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case Skip, Overwrite, Merge, Append:
		return Strategy(s), nil
	case "":
		return Skip, nil
	}
	return "", fmt.Errorf("%w: %q (want skip, overwrite, merge or append)", ErrBadStrategy, s)
}

// ImportResult counts what an import did.
type ImportResult struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	Skipped int `json:"skipped"`
	// Failed counts the rows refused with an error; Errors lists them, up to the
	// importer's MaxErrors per batch.
	Failed int           `json:"failed"`
	Errors []RecordError `json:"errors"`
}

// Add adds r's counts and errors to res.
func (res *ImportResult) Add(r ImportResult) {
	res.Created += r.Created
	res.Updated += r.Updated
	res.Skipped += r.Skipped
	res.Failed += r.Failed
	res.Errors = append(res.Errors, r.Errors...)
}

// RecordError is one row that could not be imported.
type RecordError struct {
	// Key maps key column → text value (the row's values when the table has no key).
	Key    map[string]*string `json:"key"`
	Reason string             `json:"reason"`
}

// RangeState is one key range of a split table and how far its copy got: the rows
// with a key after After (from the start when empty) up to and including Until (to
// the end when empty). LastKey is the key of the last row of it applied (empty:
// none yet); Done says the whole range is.
type RangeState struct {
	After   []string `json:"after,omitempty"`
	Until   []string `json:"until,omitempty"`
	LastKey []string `json:"last_key,omitempty"`
	Done    bool     `json:"done"`
}

// ResumeKey is where the range's copy goes on from: after LastKey, or after After
// when nothing of it was applied.
func (r RangeState) ResumeKey() []string {
	if len(r.LastKey) > 0 {
		return r.LastKey
	}
	return r.After
}

// TableResult is one table's outcome of a transfer (a pull, a scheduled run, the
// receiving client's Transfer).
type TableResult struct {
	Table   string `json:"table"`
	Created int    `json:"created"`
	Updated int    `json:"updated"`
	Skipped int    `json:"skipped"`
	// Failed counts the rows refused with an error; Errors lists them (up to the
	// importer's MaxErrors per batch).
	Failed int           `json:"failed"`
	Errors []RecordError `json:"errors"`
	// Requested is the table's row count on the sender when the transfer began.
	Requested int64 `json:"requested"`
	// Rows received from the sender.
	Rows int64 `json:"rows"`
	// Bytes of batch frames received (compressed as they travelled).
	Bytes int64 `json:"bytes"`
	// LastKey is the key of the last row applied: pass it as AfterKey to resume.
	// For a table copied in key ranges (Ranges), every row up to it is applied.
	LastKey []string `json:"last_key,omitempty"`
	// Ranges are the key ranges of a table copied by several streams at once (a
	// split table), each with how far it got: pass them back to resume every range
	// from its own last key. Empty for a table copied by one stream.
	Ranges []RangeState `json:"ranges,omitempty"`
	// TableCreated is true when the table was created locally.
	TableCreated bool `json:"table_created"`
	// DroppedColumns are the sender's columns the local table lacks, left out of the
	// import (IgnoreMissingColumns).
	DroppedColumns []string `json:"dropped_columns,omitempty"`
	// Warnings list what of the sender's definition was not recreated with the table
	// (defaults, checks or generation expressions outside what ddl accepts).
	Warnings []string      `json:"warnings,omitempty"`
	Duration time.Duration `json:"duration"`
	// Error says why the table failed, in results of several tables.
	Error string `json:"error,omitempty"`
}
