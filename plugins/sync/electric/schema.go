package electric

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/catalog"
	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// Column is a column's entry in the electric-schema header: the type as Electric
// names it (PostgreSQL's internal name: int4, int8, text, bool, numeric,
// timestamptz, …), dims for an array, and the modifiers the type has.
type Column struct {
	Type      string `json:"type"`
	Dims      int    `json:"dims,omitempty"`
	PKIndex   *int   `json:"pk_index,omitempty"`
	NotNull   bool   `json:"not_null,omitempty"`
	MaxLength int    `json:"max_length,omitempty"`
	Length    int    `json:"length,omitempty"`
	Precision *int   `json:"precision,omitempty"`
	Scale     *int   `json:"scale,omitempty"`
	Fields    string `json:"fields,omitempty"`
}

// Schema returns the electric-schema header of the shape spec: its columns (all,
// or spec.Columns) from the catalog.
func Schema(ctx context.Context, q catalog.Querier, spec syncapi.ShapeSpec) (string, error) {
	var id catalog.Ident
	var err error
	if spec.Namespace != "" {
		id, err = catalog.ResolveIn(ctx, q, spec.Namespace, spec.Table)
	} else {
		id, err = catalog.Resolve(ctx, q, spec.Table)
	}
	if err != nil {
		return "", err
	}
	sch, err := catalog.GetSchemaIn(ctx, q, id.Schema, id.Name)
	if err != nil {
		return "", err
	}
	out := map[string]Column{}
	for _, c := range sch.Columns {
		if len(spec.Columns) > 0 && !slices.Contains(spec.Columns, c.Name) {
			continue
		}
		col := TypeOf(c.BaseType)
		col.NotNull = !c.Nullable || c.PrimaryKey
		if i := slices.Index(sch.PrimaryKey, c.Name); i >= 0 {
			col.PKIndex = &i
		}
		out[c.Name] = col
	}
	b, err := json.Marshal(out)
	return string(b), err
}

var modsRe = regexp.MustCompile(`\(([0-9]+)(?:,([0-9]+))?\)`)

// names maps format_type's names to PostgreSQL's internal ones, which Electric
// sends (and its client's parsers are keyed by).
var names = map[string]string{
	"smallint": "int2", "integer": "int4", "bigint": "int8",
	"real": "float4", "double precision": "float8", "numeric": "numeric",
	"boolean": "bool", "text": "text", "character varying": "varchar", "character": "bpchar",
	`"char"`: "char", "name": "name", "uuid": "uuid", "json": "json", "jsonb": "jsonb",
	"date": "date", "bytea": "bytea", "interval": "interval",
	"timestamp with time zone": "timestamptz", "timestamp without time zone": "timestamp",
	"time with time zone": "timetz", "time without time zone": "time",
	"bit": "bit", "bit varying": "varbit", "inet": "inet", "cidr": "cidr", "macaddr": "macaddr",
	"macaddr8": "macaddr8", "money": "money", "oid": "oid", "xml": "xml", "tsvector": "tsvector",
	"tsquery": "tsquery", "point": "point", "line": "line", "lseg": "lseg", "box": "box",
	"path": "path", "polygon": "polygon", "circle": "circle", "int4range": "int4range",
	"int8range": "int8range", "numrange": "numrange", "tsrange": "tsrange", "tstzrange": "tstzrange",
	"daterange": "daterange",
}

// TypeOf maps a type as format_type prints it ("numeric(12,2)", "character
// varying(20)", "timestamp(3) with time zone", "integer[]", "public.mood") to its
// electric-schema entry.
func TypeOf(t string) Column {
	var c Column
	for strings.HasSuffix(t, "[]") {
		t = strings.TrimSuffix(t, "[]")
		c.Dims++
	}
	var mods []int
	if m := modsRe.FindStringSubmatchIndex(t); m != nil {
		a, _ := strconv.Atoi(t[m[2]:m[3]])
		mods = append(mods, a)
		if m[4] >= 0 {
			b, _ := strconv.Atoi(t[m[4]:m[5]])
			mods = append(mods, b)
		}
		t = strings.TrimSpace(t[:m[0]] + t[m[1]:])
	}
	base := t
	if strings.HasPrefix(t, "interval ") { // interval day to second
		base, c.Fields = "interval", strings.ToUpper(strings.TrimPrefix(t, "interval "))
	}
	if n, ok := names[base]; ok {
		c.Type = n
	} else {
		// An enum, a domain's base we do not know, an extension's type: its name
		// without schema or quotes.
		if i := strings.LastIndexByte(base, '.'); i >= 0 && !strings.HasSuffix(base, `"`) {
			base = base[i+1:]
		}
		c.Type = strings.Trim(base, `"`)
	}
	switch {
	case len(mods) == 0:
	case c.Type == "varchar" || c.Type == "varbit":
		c.MaxLength = mods[0]
	case c.Type == "bpchar" || c.Type == "bit":
		c.Length = mods[0]
	case c.Type == "numeric":
		c.Precision = &mods[0]
		if len(mods) > 1 {
			c.Scale = &mods[1]
		}
	default: // time, timestamp(tz), interval
		c.Precision = &mods[0]
	}
	return c
}
