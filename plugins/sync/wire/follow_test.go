package wire

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func sp(s string) *string { return &s }

// randomText mixes ASCII, what JSON escapes (quotes, controls, HTML characters,
// U+2028) and multi-byte characters, so cuts land everywhere.
func randomText(r *rand.Rand, n int) string {
	alphabet := []string{"a", "b", "Z", "0", " ", "\"", "\\", "\n", "\x01", "<", "&", "é", "€", "😀", "\u2028", "ж"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// A change larger than a piece is cut into pieces that each encode within the
// budget (escapes included) and fit a frame, every piece but the last marked More,
// and joined they give the change back: values, NULLs, empty strings, the
// unchanged list, multi-byte characters never cut.
func TestSplitChangeJoinsBackWithinBudget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 12 {
		c := Change{Op: OpUpdate, Table: "public.docs", Unchanged: []string{"blob"},
			New: map[string]*string{"id": sp("7"), "nothing": nil, "empty": sp("")},
			Old: map[string]*string{"id": sp("7"), "nothing": nil, "empty": sp("")}}
		for i := range 1 + r.IntN(4) {
			name := "body" + string(rune('a'+i))
			c.New[name] = sp(randomText(r, r.IntN(400_000)))
			c.Old[name] = sp(randomText(r, r.IntN(150_000)))
		}
		budget := FollowPieceBytes
		if round%3 == 0 {
			budget = 2048 // many small pieces
		}
		pieces := SplitChange(c, budget)
		var j ChangeJoiner
		var whole Change
		for i, p := range pieces {
			if p.More != (i < len(pieces)-1) {
				t.Fatalf("round %d: piece %d of %d: More %v", round, i, len(pieces), p.More)
			}
			enc, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Size(); len(enc) > got {
				t.Fatalf("round %d: piece %d encodes in %d bytes, Size says %d", round, i, len(enc), got)
			}
			if p.Size() > budget+1024 {
				t.Fatalf("round %d: piece %d of %d bytes over a budget of %d", round, i, p.Size(), budget)
			}
			// Through the frame encoding, as the receiver gets it.
			var back Change
			if err := json.Unmarshal(enc, &back); err != nil {
				t.Fatal(err)
			}
			got, done, err := j.Add(back)
			if err != nil {
				t.Fatalf("round %d: piece %d: %v", round, i, err)
			}
			if done != (i == len(pieces)-1) {
				t.Fatalf("round %d: piece %d of %d: done %v", round, i, len(pieces), done)
			}
			whole = got
		}
		if len(pieces) < 2 {
			t.Fatalf("round %d: a change of %d bytes came in one piece", round, c.Size())
		}
		if !reflect.DeepEqual(whole, c) {
			t.Fatalf("round %d: joined change differs from the original", round)
		}
		if j.Pending() {
			t.Fatal("pending after the last piece")
		}
	}
}

// A change that fits is left whole, and the joiner passes it through.
func TestSplitChangeLeavesSmallChangesWhole(t *testing.T) {
	c := Change{Op: OpInsert, Table: "t", New: map[string]*string{"id": sp("1"), "v": sp("x")}}
	pieces := SplitChange(c, FollowPieceBytes)
	if len(pieces) != 1 || !reflect.DeepEqual(pieces[0], c) {
		t.Fatalf("pieces %+v", pieces)
	}
	var j ChangeJoiner
	got, done, err := j.Add(c)
	if err != nil || !done || !reflect.DeepEqual(got, c) {
		t.Fatalf("%+v %v %v", got, done, err)
	}
}

// Pieces that do not continue the pending change, that extend a NULL, or that
// grow a change past MaxChangeBytes are refused.
func TestChangeJoinerRefusesBadPieces(t *testing.T) {
	first := Change{Op: OpInsert, Table: "t", New: map[string]*string{"id": sp("1"), "v": sp("ab"), "n": nil}, More: true}
	cases := map[string]Change{
		"other table":   {Op: OpInsert, Table: "u", New: map[string]*string{"v": sp("c")}},
		"other op":      {Op: OpDelete, Table: "t", Old: map[string]*string{"v": sp("c")}},
		"extends NULL":  {Op: OpInsert, Table: "t", New: map[string]*string{"n": sp("c")}},
		"NULL continue": {Op: OpInsert, Table: "t", New: map[string]*string{"v": nil}},
		"truncate":      {Op: OpInsert, Table: "t", Tables: []string{"t"}},
	}
	for name, next := range cases {
		var j ChangeJoiner
		if _, done, err := j.Add(first); err != nil || done {
			t.Fatalf("%s: first piece: %v %v", name, done, err)
		}
		if _, _, err := j.Add(next); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var j ChangeJoiner
	big := strings.Repeat("x", 1<<20)
	if _, _, err := j.Add(first); err != nil {
		t.Fatal(err)
	}
	var err error
	for i := 0; i < MaxChangeBytes/len(big)+2 && err == nil; i++ {
		_, _, err = j.Add(Change{Op: OpInsert, Table: "t", New: map[string]*string{"v": &big}, More: true})
	}
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("an endless change was joined: %v", err)
	}
}

// Values that are not UTF-8 (a SQL_ASCII database's bytes) and names too long for
// a small budget still split in finitely many pieces whose Size bounds their JSON,
// and join back to the change.
func TestSplitChangeOddValuesAndNames(t *testing.T) {
	cont := strings.Repeat("\x80\xbf", 200_000) // continuation bytes only
	long := strings.Repeat("<", 60)             // a name JSON escapes to 360 bytes
	c := Change{Op: OpInsert, Table: "public." + strings.Repeat("&", 60),
		New: map[string]*string{"raw": &cont, long: sp(strings.Repeat("é", 5000)), "n": nil}}
	for _, budget := range []int{1024, FollowPieceBytes} {
		pieces := SplitChange(c, budget)
		var j ChangeJoiner
		var whole Change
		for i, p := range pieces {
			enc, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) > p.Size() {
				t.Fatalf("budget %d: piece %d encodes in %d bytes, Size says %d", budget, i, len(enc), p.Size())
			}
			got, done, err := j.Add(p) // joined as sent, before JSON
			if err != nil {
				t.Fatal(err)
			}
			if done {
				whole = got
			}
		}
		if !reflect.DeepEqual(whole, c) {
			t.Fatalf("budget %d: %d pieces do not join back to the change", budget, len(pieces))
		}
	}
}
