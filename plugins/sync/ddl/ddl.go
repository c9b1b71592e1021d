// Package ddl creates a table from the definition catalog.GetSchema returns (which
// may come from another site): enum and domain types it needs, columns with exact
// types, NOT NULL, defaults, identity, stored generated columns, primary key and
// unique constraints. Foreign keys are added by a separate call once the data is in,
// so tables can be filled in any order, and only between the tables of one pull
// (AddForeignKeysWithin).
//
// # Definitions from a peer are hostile
//
// No text of a definition is pasted into SQL. Identifiers are always quoted. Type
// names are parsed (keyword types such as "character varying(20)" or "timestamp(3)
// with time zone", or a possibly schema-qualified name, with integer modifiers and
// array brackets), written anew, and must name a type here: a built-in one, one the
// definition itself creates (its enums and domains, created first, in dependency
// order), or one already installed on this site such as an extension's; pseudo and
// composite types are refused. Anything else fails the table.
//
// Expressions — column and domain defaults, domain CHECKs, generation expressions —
// are read by a strict parser that knows a small subset of what pg_get_expr prints,
// and rewritten from what it understood: string constants re-quoted, identifiers
// quoted, functions and operators qualified with pg_catalog and taken from
// allowlists, every cast's type checked as above. Defaults may be constants (with
// casts), the clock keywords, and now(), clock_timestamp(), statement_timestamp(),
// transaction_timestamp(), gen_random_uuid() or random(); a nextval() default (a
// serial column) becomes an identity column, its sequence being the sender's. CHECKs
// may use VALUE, constants, casts, comparison, pattern and arithmetic operators,
// AND/OR/NOT, IS [NOT] NULL, = ANY (ARRAY[…]) and a list of immutable string, numeric
// and array functions. Generation expressions may use the same, reading the table's
// columns.
//
// A partitioned table's key and partition bounds are read the same way (a strict
// grammar: RANGE, LIST or HASH over columns or such expressions; bounds of constants,
// MINVALUE, MAXVALUE, MODULUS/REMAINDER or DEFAULT). A refused key creates the table
// unpartitioned; a refused partition (bound, kit name, name taken here) is left out.
//
// An expression outside the subset is not an error: it is left out and the result's
// Warnings say so, so the table is still created. A default or CHECK is then simply
// missing; a generated column whose expression is left out is created as a plain,
// nullable column — importers never write generated columns, so it stays NULL.
package ddl

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
)

// Exec is what this package needs of a connection or transaction.
type Exec = catalog.Querier

// Result says what Create left out of the definition.
type Result struct {
	// Warnings name each default, domain CHECK or generation expression that was not
	// recreated, and why.
	Warnings []string `json:"warnings,omitempty"`
}

func (r *Result) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// checkSchemaName refuses the system schemas as a place to create things.
func checkSchemaName(s string) error {
	if s == "" || strings.HasPrefix(s, "pg_") || s == "information_schema" {
		return fmt.Errorf("schema %q cannot hold a synced table or type", s)
	}
	return nil
}

// oneStatement runs a statement with the extended protocol, which refuses a string
// holding two commands: a second line of defence behind the rewriting.
const oneStatement = pgx.QueryExecModeDescribeExec

// isSerial reports whether a default is a sequence's nextval.
func isSerial(expr string) bool { return strings.HasPrefix(expr, "nextval(") }

// integerTypes are the types an identity column may have, as typeSQL writes them.
var integerTypes = map[string]bool{"smallint": true, "integer": true, "int": true, "bigint": true,
	`"int2"`: true, `"int4"`: true, `"int8"`: true}

// CreateTable is Create without the warnings.
func CreateTable(ctx context.Context, q Exec, sch *catalog.Schema) error {
	_, err := Create(ctx, q, sch)
	return err
}

// Create creates the table sch describes, named sch.Schema.sch.Name, and the enum and
// domain types it uses when missing. The table must not exist. A partitioned table
// (sch.Partition) is created partitioned, with its partitions beside it in sch.Schema
// under their own names (see partition.go for what is read of the key and bounds).
// Parts of the definition it does not recreate are listed in the result's Warnings.
func Create(ctx context.Context, q Exec, sch *catalog.Schema) (Result, error) {
	var res Result
	target := catalog.IdentOf(sch)
	if err := checkSchemaName(sch.Schema); err != nil {
		return res, fmt.Errorf("create table %s: %w", target, err)
	}
	if sch.Name == "" || catalog.IsSecretTable(sch.Name) {
		return res, fmt.Errorf("create table %s: the name is reserved for the kit", target)
	}
	if len(sch.Columns) == 0 {
		return res, fmt.Errorf("create table %s: no columns", target)
	}
	if _, err := q.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(sch.Schema)); err != nil {
		return res, fmt.Errorf("create table %s: schema: %w", target, err)
	}
	tc := newTypeChecker(ctx, q, sch)
	for _, e := range sch.Enums {
		if err := createEnum(ctx, q, e); err != nil {
			return res, fmt.Errorf("create table %s: %w", target, err)
		}
	}
	if err := createDomains(ctx, q, tc, sch.Domains, &res); err != nil {
		return res, fmt.Errorf("create table %s: %w", target, err)
	}
	readable := map[string]bool{}
	for _, c := range sch.Columns {
		if c.Generated == "" {
			readable[c.Name] = true
		}
	}
	var defs []string
	for _, c := range sch.Columns {
		typ, err := tc.typeSQL(c.Type)
		if err != nil {
			return res, fmt.Errorf("create table %s: column %s: %w", target, c.Name, err)
		}
		def := quoteIdent(c.Name) + " " + typ
		nullable := c.Nullable
		switch {
		case c.Generated != "":
			expr, err := tc.expr(c.Generated, generatedRules(readable))
			if err != nil {
				res.warn("column %s: generation expression not recreated (%v); created as a plain nullable column, left NULL", c.Name, err)
				nullable = true
				break
			}
			def += " GENERATED ALWAYS AS (" + expr + ") STORED"
		case c.Identity == "always":
			def += " GENERATED ALWAYS AS IDENTITY"
		case c.Identity == "by_default":
			def += " GENERATED BY DEFAULT AS IDENTITY"
		case c.Default != nil && isSerial(*c.Default):
			// A serial column: its sequence belongs to the source; identity is the
			// portable equivalent.
			if !integerTypes[typ] {
				res.warn("column %s: sequence default on a %s column not recreated", c.Name, typ)
				break
			}
			def += " GENERATED BY DEFAULT AS IDENTITY"
		case c.Default != nil:
			expr, err := tc.expr(*c.Default, defaultRules())
			if err != nil {
				res.warn("column %s: default not recreated (%v)", c.Name, err)
				break
			}
			def += " DEFAULT " + expr
		}
		if !nullable {
			def += " NOT NULL"
		}
		defs = append(defs, def)
	}
	if len(sch.PrimaryKey) > 0 {
		defs = append(defs, "PRIMARY KEY ("+catalog.QuoteNames(sch.PrimaryKey)+")")
	}
	for _, u := range sch.Unique {
		defs = append(defs, "CONSTRAINT "+quoteIdent(u.Name)+" UNIQUE ("+catalog.QuoteNames(u.Columns)+")")
	}
	plan, err := planPartitions(ctx, q, tc, sch, readable, &res)
	if err != nil {
		return res, fmt.Errorf("create table %s: %w", target, err)
	}
	sql := "CREATE TABLE " + target.Quoted() + " (\n\t" + strings.Join(defs, ",\n\t") + "\n)"
	if plan != nil {
		sql += " PARTITION BY " + plan.key.sql
	}
	if _, err := q.Exec(ctx, sql, oneStatement); err != nil {
		return res, fmt.Errorf("create table %s: %w", target, err)
	}
	if plan != nil {
		if err := createPartitions(ctx, q, target, plan); err != nil {
			return res, fmt.Errorf("create table %s: %w", target, err)
		}
	}
	return res, nil
}

// typeExists reports whether schema.name is a type here.
func typeExists(ctx context.Context, q Exec, schema, name string) (bool, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname = $1 AND t.typname = $2)`, schema, name).Scan(&exists)
	return exists, err
}

func createEnum(ctx context.Context, q Exec, e catalog.Enum) error {
	if err := checkSchemaName(e.Schema); err != nil {
		return fmt.Errorf("enum %s: %w", e.Name, err)
	}
	exists, err := typeExists(ctx, q, e.Schema, e.Name)
	if err != nil {
		return fmt.Errorf("enum %s: %w", e.Name, err)
	}
	if exists {
		return nil
	}
	if _, err := q.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(e.Schema)); err != nil {
		return fmt.Errorf("enum %s: %w", e.Name, err)
	}
	labels := make([]string, len(e.Labels))
	for i, l := range e.Labels {
		labels[i] = quoteString(l)
	}
	sql := fmt.Sprintf("CREATE TYPE %s AS ENUM (%s)", pgx.Identifier{e.Schema, e.Name}.Sanitize(), strings.Join(labels, ", "))
	if _, err := q.Exec(ctx, sql, oneStatement); err != nil {
		return fmt.Errorf("enum %s: %w", e.Name, err)
	}
	return nil
}

// createDomains creates the missing domains, each after the domains its base type
// names (whatever order the definition lists them in).
func createDomains(ctx context.Context, q Exec, tc *typeChecker, domains []catalog.Domain, res *Result) error {
	pending := append([]catalog.Domain(nil), domains...)
	for len(pending) > 0 {
		var later []catalog.Domain
		for _, d := range pending {
			if dependsOnPending(tc, d, pending) {
				later = append(later, d)
				continue
			}
			if err := createDomain(ctx, q, tc, d, res); err != nil {
				return err
			}
		}
		if len(later) == len(pending) {
			return fmt.Errorf("domain %s: its base type is a domain that cannot be created first", later[0].Name)
		}
		pending = later
	}
	return nil
}

// dependsOnPending reports whether d's base type is another domain still to create.
func dependsOnPending(tc *typeChecker, d catalog.Domain, pending []catalog.Domain) bool {
	toks, err := tokenize(d.BaseType)
	if err != nil {
		return false // createDomain reports it
	}
	p := &parser{toks: toks}
	t, err := p.parseTypeRef()
	if err != nil || t.keyword {
		return false
	}
	t = tc.qualify(t)
	for _, o := range pending {
		if o.Schema == t.schema && o.Name == t.name && (o.Schema != d.Schema || o.Name != d.Name) {
			return true
		}
	}
	return false
}

func createDomain(ctx context.Context, q Exec, tc *typeChecker, d catalog.Domain, res *Result) error {
	if err := checkSchemaName(d.Schema); err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	exists, err := typeExists(ctx, q, d.Schema, d.Name)
	if err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	if exists {
		return nil
	}
	base, err := tc.typeSQL(d.BaseType)
	if err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	if _, err := q.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoteIdent(d.Schema)); err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	sql := "CREATE DOMAIN " + pgx.Identifier{d.Schema, d.Name}.Sanitize() + " AS " + base
	if d.Default != nil {
		if expr, err := tc.expr(*d.Default, defaultRules()); err != nil {
			res.warn("domain %s: default not recreated (%v)", d.Name, err)
		} else {
			sql += " DEFAULT " + expr
		}
	}
	if d.NotNull {
		sql += " NOT NULL"
	}
	for _, c := range d.Checks {
		check, err := tc.check(c)
		if err != nil {
			res.warn("domain %s: check not recreated (%v)", d.Name, err)
			continue
		}
		sql += " CHECK " + check
	}
	if _, err := q.Exec(ctx, sql, oneStatement); err != nil {
		return fmt.Errorf("domain %s: %w", d.Name, err)
	}
	return nil
}

// AddForeignKeys adds sch's foreign keys to the local table (after its data is in),
// referencing the tables they name. A key referencing a kit table (fiberkit_*) is
// never added. A receiver adding a peer's keys uses AddForeignKeysWithin, which also
// keeps them inside the pull.
func AddForeignKeys(ctx context.Context, q Exec, sch *catalog.Schema) error {
	_, err := addForeignKeys(ctx, q, sch, func(ref catalog.Ident) (catalog.Ident, bool) { return ref, true })
	return err
}

// Pulled maps each table of one pull, by the sender's schema and name for it (as its
// definition gives them; OID zero), to the local table it was written to.
type Pulled map[catalog.Ident]catalog.Ident

// AddForeignKeysWithin adds the foreign keys of sch (a peer's definition) to the local
// table sch names, once the data is in, each referencing the local table that pulled
// maps its referenced table to. A key referencing a table outside the pull — any
// other local table, the kit's own included — is not added, and the result's Warnings
// say so: a sender's schema never ties a receiver's other tables to its data.
func AddForeignKeysWithin(ctx context.Context, q Exec, sch *catalog.Schema, pulled Pulled) (Result, error) {
	return addForeignKeys(ctx, q, sch, func(ref catalog.Ident) (catalog.Ident, bool) {
		local, ok := pulled[ref]
		return local, ok
	})
}

// addForeignKeys adds sch's foreign keys to the table sch names, each referencing the
// local table refer maps the key's referenced table to; keys refer refuses, or that
// reference a kit table, are left out with a warning.
func addForeignKeys(ctx context.Context, q Exec, sch *catalog.Schema, refer func(catalog.Ident) (catalog.Ident, bool)) (Result, error) {
	var res Result
	target := catalog.IdentOf(sch)
	for _, fk := range sch.ForeignKeys {
		sent := catalog.Ident{Schema: fk.RefSchema, Name: fk.RefTable}
		ref, ok := refer(sent)
		if !ok || catalog.IsSecretTable(ref.Name) {
			res.warn("foreign key %s: not added, it references %s, which is not a table of this pull", fk.Name, sent.Quoted())
			continue
		}
		var exists bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2)`,
			target.Quoted(), fk.Name).Scan(&exists); err != nil {
			return res, fmt.Errorf("foreign key %s on %s: %w", fk.Name, target, err)
		}
		if exists {
			continue
		}
		sql := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s)%s",
			target.Quoted(), pgx.Identifier{fk.Name}.Sanitize(), catalog.QuoteNames(fk.Columns), ref.Quoted(),
			catalog.QuoteNames(fk.RefColumns), fkActions(fk.Definition))
		if _, err := q.Exec(ctx, sql, oneStatement); err != nil {
			return res, fmt.Errorf("foreign key %s on %s: %w", fk.Name, target, err)
		}
	}
	return res, nil
}

var actionPattern = regexp.MustCompile(`ON (DELETE|UPDATE) (CASCADE|RESTRICT|SET NULL|SET DEFAULT|NO ACTION)|DEFERRABLE|INITIALLY (DEFERRED|IMMEDIATE)|MATCH FULL`)

// fkActions keeps only the known clauses of a peer's constraint definition.
func fkActions(def string) string {
	out := actionPattern.FindAllString(def, -1)
	if len(out) == 0 {
		return ""
	}
	return " " + strings.Join(out, " ")
}
