package catalog

import "sort"

// Cycles returns the groups of tables among tables whose foreign keys form a cycle:
// tables that each reach the others through their foreign keys, two or more of them
// (pagila's store and staff). New rows referring to each other across such tables
// cannot be imported one table after the other: importer.Group imports a cycle's
// tables together. A table referring only to itself is in no group. Each group is
// sorted by schema and name, the groups by their first table.
func Cycles(tables []*Schema) [][]*Schema {
	key := func(t *Schema) string { return t.Schema + "." + t.Name }
	byName := map[string]*Schema{}
	for _, t := range tables {
		byName[key(t)] = t
	}
	sorted := append([]*Schema(nil), tables...)
	sort.SliceStable(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
	// Tarjan's strongly connected components over the foreign keys.
	index, low := map[*Schema]int{}, map[*Schema]int{}
	onStack := map[*Schema]bool{}
	var stack []*Schema
	var out [][]*Schema
	var visit func(t *Schema)
	visit = func(t *Schema) {
		index[t], low[t] = len(index), len(index)
		stack = append(stack, t)
		onStack[t] = true
		for _, fk := range t.ForeignKeys {
			dep, ok := byName[fk.RefSchema+"."+fk.RefTable]
			if !ok || dep == t {
				continue
			}
			if _, seen := index[dep]; !seen {
				visit(dep)
				low[t] = min(low[t], low[dep])
			} else if onStack[dep] {
				low[t] = min(low[t], index[dep])
			}
		}
		if low[t] != index[t] {
			return
		}
		var group []*Schema
		for {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[n] = false
			group = append(group, n)
			if n == t {
				break
			}
		}
		if len(group) > 1 {
			sort.Slice(group, func(i, j int) bool { return key(group[i]) < key(group[j]) })
			out = append(out, group)
		}
	}
	for _, t := range sorted {
		if _, seen := index[t]; !seen {
			visit(t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i][0]) < key(out[j][0]) })
	return out
}
