// Package syncapi is the contract of the Sync module's operations: their names, the
// request and response of each, and the data they carry (tables, table definitions,
// pages of records, import and transfer results, sessions, connections, remotes,
// history). The Sync plugin serves these types and callers decode them, so the two
// ends cannot drift.
//
// Another module calls Sync through the host with a Module handle:
//
//	sync := syncapi.Via(env.Host)
//	tables, err := sync.ListTables(ctx)
//	results, err := sync.Pull(ctx, syncapi.PullRequest{URL: url, Code: code})
//
// The package depends on the standard library alone: a module that calls Sync links
// none of its database, protocol or import code.
package syncapi
