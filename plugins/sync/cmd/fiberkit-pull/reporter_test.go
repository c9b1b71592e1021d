package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fiberkit/fiberkit/plugins/sync/client"
)

// A table that failed part-way is shown where it stopped and marked, not filled to 100%.
func TestFailedTableIsNotShownComplete(t *testing.T) {
	for _, tty := range []bool{true, false} {
		var out bytes.Buffer
		r := newReporter(&out, tty)
		r.report(client.Progress{Table: "customers", Rows: 2000, Total: 2000, Batches: 1, Elapsed: time.Second})
		r.report(client.Progress{Table: "customers", Rows: 2000, Total: 2000, Batches: 1, Elapsed: time.Second, Done: true})
		r.report(client.Progress{Table: "orders", Rows: 300, Total: 1000, Batches: 1, Elapsed: time.Second})
		r.finish() // the transfer of orders failed after its first batch
		got := out.String()
		if strings.Contains(got, "1000/1000") || !strings.Contains(got, "orders: FAILED after 300/1000 rows") {
			t.Fatalf("tty %v: a failed table shown as:\n%s", tty, got)
		}
		if !tty && !strings.Contains(got, "customers: 2000/2000 rows") {
			t.Fatalf("completed table:\n%s", got)
		}
		if strings.Contains(got, "customers: FAILED") {
			t.Fatalf("tty %v: a completed table marked failed:\n%s", tty, got)
		}
	}
}
