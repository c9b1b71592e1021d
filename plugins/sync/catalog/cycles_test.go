package catalog_test

import (
	"fmt"
	"testing"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Cycles finds the tables whose foreign keys reach each other: pagila's store ↔
// staff, a three-table loop; not a table referring to itself, nor one that only
// refers into a cycle.
func TestCycles(t *testing.T) {
	table := func(name string, refs ...string) *catalog.Schema {
		s := &catalog.Schema{Schema: "public", Name: name}
		for _, r := range refs {
			s.ForeignKeys = append(s.ForeignKeys, catalog.ForeignKey{RefSchema: "public", RefTable: r})
		}
		return s
	}
	tables := []*catalog.Schema{
		table("address"), table("store", "staff", "address"), table("staff", "store", "address"),
		table("payment", "staff"), table("employee", "employee"),
		table("c", "a"), table("a", "b"), table("b", "c", "elsewhere"),
	}
	var got []string
	for _, g := range catalog.Cycles(tables) {
		var names []string
		for _, s := range g {
			names = append(names, s.Name)
		}
		got = append(got, fmt.Sprint(names))
	}
	if want := "[[a b c] [staff store]]"; fmt.Sprint(got) != want {
		t.Fatalf("Cycles = %v, want %s", got, want)
	}
}
