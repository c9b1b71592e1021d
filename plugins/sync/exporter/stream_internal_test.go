package exporter

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// cut feeds input to a cutter in pieces cut at random places (one byte at a time
// for seed 0) and returns the batches it emitted, their data kept.
func cut(t *testing.T, ts *TableStream, o StreamOptions, input []byte, seed uint64) []Batch {
	t.Helper()
	var out []Batch
	c := &cutter{ctx: context.Background(), ts: ts, o: o, emit: func(b Batch) error {
		b.Data = append([]byte(nil), b.Data...)
		out = append(out, b)
		return nil
	}}
	r := rand.New(rand.NewPCG(seed, uint64(o.BatchBytes)))
	for rest := input; len(rest) > 0; {
		n := 1 + r.IntN(len(rest))
		if seed == 0 {
			n = 1
		}
		if _, err := c.Write(rest[:n]); err != nil {
			t.Fatal(err, c.err)
		}
		rest = rest[n:]
	}
	if err := c.finish(); err != nil {
		t.Fatal(err)
	}
	return out
}

// check verifies the batches against the rows (their data without keys, and keys),
// the row and byte limits.
func check(t *testing.T, batches []Batch, rows []string, keys [][]string, o StreamOptions) {
	t.Helper()
	var data string
	n := 0
	for i, b := range batches {
		if b.Done != (i == len(batches)-1) {
			t.Fatalf("batch %d of %d: done %v", i, len(batches), b.Done)
		}
		if b.Rows > o.BatchRows || len(b.Data) > o.BatchBytes && b.Rows > 1 {
			t.Fatalf("batch %d: %d rows, %d bytes (limits %d, %d)", i, b.Rows, len(b.Data), o.BatchRows, o.BatchBytes)
		}
		if b.Rows == 0 && !b.Done {
			t.Fatalf("batch %d is empty", i)
		}
		n += b.Rows
		if b.Rows > 0 && !reflect.DeepEqual(b.LastKey, keys[n-1]) {
			t.Fatalf("batch %d: last key %q, want %q", i, b.LastKey, keys[n-1])
		}
		data += string(b.Data)
	}
	if n != len(rows) || data != strings.Join(rows, "") {
		t.Fatalf("%d rows %q, want %d %q", n, data, len(rows), strings.Join(rows, ""))
	}
}

var testKeys = [][]string{{"k\t1", "2"}, {"k2", "1"}, {"a\\b", "3"}, {"z", "4"}}

// TestCutterText feeds COPY text lines (two key fields first) cut at every kind of
// place, under row and byte limits, and checks the batches.
func TestCutterText(t *testing.T) {
	lines := []string{"k\\t1\t2\tdata one\n", "k2\t1\tx\n", "a\\\\b\t3\t" + strings.Repeat("y", 50) + "\n", "z\t4\tlast\n"}
	rows := []string{"data one\n", "x\n", strings.Repeat("y", 50) + "\n", "last\n"}
	ts := &TableStream{sch: &catalog.Schema{Name: "t"}, keys: 2}
	for _, o := range []StreamOptions{{BatchRows: 10, BatchBytes: 1 << 20}, {BatchRows: 3, BatchBytes: 20}, {BatchRows: 2, BatchBytes: 1}, {BatchRows: 1, BatchBytes: 1 << 20}} {
		for seed := uint64(0); seed < 30; seed++ {
			check(t, cut(t, ts, o, []byte(strings.Join(lines, "")), seed), rows, testKeys, o)
		}
	}
}

// TestCutterBinary does the same with COPY binary: the header, tuples whose key
// fields (text) are stripped and their field count lowered, the trailer.
func TestCutterBinary(t *testing.T) {
	be := binary.BigEndian
	input := []byte(binarySignature)
	input = be.AppendUint32(input, 0)
	input = be.AppendUint32(input, 3) // an extension area of 3 bytes, skipped
	input = append(input, "ext"...)
	var rows []string
	for i, k := range testKeys {
		input = be.AppendUint16(input, 4)
		for _, f := range k {
			input = be.AppendUint32(input, uint32(len(f)))
			input = append(input, f...)
		}
		var row []byte
		row = be.AppendUint16(row, 2)
		row = be.AppendUint32(row, 0xffffffff) // NULL
		v := strings.Repeat("v", 10*i)
		row = be.AppendUint32(row, uint32(len(v)))
		row = append(row, v...)
		input = append(input, row[2:]...)
		rows = append(rows, string(row))
	}
	input = be.AppendUint16(input, 0xffff)
	ts := &TableStream{sch: &catalog.Schema{Name: "t"}, keys: 2, binary: true}
	for _, o := range []StreamOptions{{BatchRows: 10, BatchBytes: 1 << 20}, {BatchRows: 3, BatchBytes: 30}, {BatchRows: 2, BatchBytes: 1}} {
		for seed := uint64(0); seed < 30; seed++ {
			check(t, cut(t, ts, o, input, seed), rows, testKeys, o)
		}
	}
	// Data cut inside a tuple, or without a trailer, is an error, not a short batch.
	c := &cutter{ctx: context.Background(), ts: ts, o: StreamOptions{BatchRows: 10, BatchBytes: 1 << 20}, emit: func(Batch) error { return nil }}
	if _, err := c.Write(input[:len(input)-7]); err != nil {
		t.Fatal(err)
	}
	if err := c.finish(); err == nil {
		t.Error("a COPY ending inside a tuple was accepted")
	}
}
