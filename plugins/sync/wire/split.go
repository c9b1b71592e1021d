package wire

import "errors"

// SplitFeature says the sender cuts a table into key ranges (request:ranges) and
// streams one range per stream:start (Start.UntilKey).
const SplitFeature = "split.v1"

// The split requests.
const (
	RequestRanges  = "request:ranges"
	ResponseRanges = "response:ranges"
)

// MaxRanges caps RangesRequest.Parts: a table is split into at most this many ranges.
const MaxRanges = 64

// RangesRequest is the request:ranges payload: cut table's rows in the connection's
// snapshot into Parts ranges of about the same number of rows.
type RangesRequest struct {
	Table string `json:"table"`
	Parts int    `json:"parts"`
}

// Validate refuses a malformed request before any SQL sees it.
func (r RangesRequest) Validate() error {
	if err := ValidTableName(r.Table); err != nil {
		return err
	}
	if r.Parts < 1 || r.Parts > MaxRanges {
		return errors.New("parts: 1 to 64")
	}
	return nil
}

// Ranges is the response:ranges payload. Bounds are the keys that end each range
// but the last, ascending: range i runs after Bounds[i-1] (from the start for i = 0)
// up to and including Bounds[i]; the last range runs after the last bound to the
// end. Fewer than Parts-1 bounds (none for a small table or one without a primary
// key) mean fewer ranges. Bytes is the table's size on disk, for the receiver's
// choice of workers.
type Ranges struct {
	Table  string     `json:"table"`
	Bounds [][]string `json:"bounds"`
	Bytes  int64      `json:"bytes"`
}
