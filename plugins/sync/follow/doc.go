// Package follow is a follow on the receiving site: it applies a sender's
// transactions in commit order, one local transaction per sender transaction, with
// the table's conflict strategy, recording the position in the same transaction.
//
// A Store keeps the receiving site's follows (fiberkit_sync_follows): what each
// follows, its state, the sender position of the last transaction applied, the
// sender's WAL end as last heard, and counters. An Applier applies one follow's
// wire.Txn parts: the parts of a sender transaction go into one local transaction
// (its own connection, with catalog.TextSettings), and the last part updates the
// follow's row in that same transaction and commits, so a change is either applied
// and recorded or neither. A transaction whose position is not past the stored one is
// a replay and is skipped whole; a new Applier on the same Store after a restart
// goes on from the stored position. The position never moves backwards.
//
// # Safety
//
// A change names its table by the sender's name: only the tables the Applier was
// given (resolved against the local catalog) are written, anything else is refused.
// Column names are checked against the local table's definition before any
// statement runs (a part with an unknown table, column or op runs nothing) and are
// quoted; values are always bind parameters, converted from their text by the local
// column type ($n::text::type), never pasted into SQL.
//
// # Conflicts
//
// A local edit is a local row that differs from the change's Old row. Rows are
// compared column by column as text under catalog.TextSettings, the sender's text
// read through the local column's type (with its typmod, domains unwrapped) so the
// same value compares equal whatever its spelling (jsonb, numeric(12,2) rounding).
// Only the columns the change carries are compared; a local column the sender lacks
// is never looked at, and generated columns are neither compared nor written. A
// local row that already equals the change's result (its New row) is never a
// conflict: nothing is written. The strategies, for each op:
//
//   - insert, no local row: insert New. A local row with that key (conflict): skip
//     keeps it; overwrite sets every column New carries; merge sets the columns
//     New has a non-NULL value for and keeps the local value where New is NULL —
//     the importer's merge (importer.Merge), applied to one row.
//   - update, local row equals Old: set New. Local row differs (conflict): skip keeps
//     it; overwrite sets New; merge is a three-way merge: each column the local edit
//     did not change (local = Old for that column) takes New, each column edited
//     locally keeps its local value. No local row (deleted here, conflict): overwrite
//     inserts New, skip and merge leave it deleted. An update that changes the key
//     (Old's key differs from New's) is a delete of the Old key and an insert of the
//     New one, each under these rules.
//   - delete, local row equals Old: delete it. Local row differs (conflict):
//     overwrite deletes it, skip and merge keep it. No local row: nothing (not a
//     conflict).
//   - truncate: the named local tables are truncated, whatever the strategy (local
//     rows included: a truncate on the sender says the table is empty there). It is
//     not cascaded: a local table outside the follow that references one of them
//     makes the truncate, and so the transaction, fail.
//   - append is refused: following matches rows by key, so a table needs a primary
//     key and one of skip, overwrite or merge.
//
// Columns New lacks because the sender did not change their TOASTed values
// (wire.Change.Unchanged) take their value from Old. Identity columns GENERATED
// ALWAYS are inserted with the sender's value (OVERRIDING SYSTEM VALUE) and never
// updated, as the importer does. Deferrable constraints are deferred to the commit
// of each transaction, where the sender checked them.
//
// Each change runs one statement when it meets no conflict (an INSERT … ON CONFLICT
// DO NOTHING, or an UPDATE or DELETE whose WHERE checks the whole Old row); when
// that writes nothing, the local row is read (FOR UPDATE) and the strategy decides
// the one statement that follows.
package follow
