package exporter

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// TestBatchWriterChunks feeds the writer COPY output cut at every kind of place and
// checks what it keeps, drops and reports.
func TestBatchWriterChunks(t *testing.T) {
	lines := []string{"k\\t1\t2\tdata one\n", "k2\t1\tx\n", "a\\\\b\t3\t" + strings.Repeat("y", 50) + "\n", "z\t4\tlast\n"}
	input := strings.Join(lines, "")
	for _, tc := range []struct {
		budget  int
		rows    int
		lastKey []string
		dropped int
	}{
		{budget: 1 << 20, rows: 4, lastKey: []string{"z", "4"}},
		{budget: 20, rows: 2, lastKey: []string{"k2", "1"}, dropped: 2},
		{budget: 1, rows: 1, lastKey: []string{"k\t1", "2"}, dropped: 3},
	} {
		for seed := uint64(0); seed < 50; seed++ {
			r := rand.New(rand.NewPCG(seed, uint64(tc.budget)))
			w := &batchWriter{keys: 2, budget: tc.budget}
			for rest := input; rest != ""; {
				n := 1 + r.IntN(len(rest))
				if seed == 0 {
					n = 1
				}
				if _, err := w.Write([]byte(rest[:n])); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if w.err != nil {
				t.Fatal(w.err)
			}
			want := []string{"data one\n", "x\n", strings.Repeat("y", 50) + "\n", "last\n"}
			if w.rows != tc.rows || !reflect.DeepEqual(w.lastKey, tc.lastKey) || w.dropped != tc.dropped ||
				string(w.data) != strings.Join(want[:tc.rows], "") || w.seen != 4 || w.seenBytes != int64(len(input)) {
				t.Fatalf("budget %d seed %d: rows %d key %q dropped %d data %q seen %d/%d", tc.budget, seed, w.rows, w.lastKey, w.dropped, w.data, w.seen, w.seenBytes)
			}
			if len(w.data) > tc.budget && w.rows > 1 {
				t.Fatalf("budget %d: kept %d bytes", tc.budget, len(w.data))
			}
		}
	}
}
