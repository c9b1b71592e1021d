package where

import (
	"fmt"
	"strconv"
	"strings"
)

// kind is the family a type's values are compared in.
type kind uint8

const (
	kOpaque kind = iota // arrays, json, enums, …: only IS [NOT] NULL
	kInt
	kNumeric
	kFloat
	kText
	kBool
	kUUID
	kDate
	kTimestamp
	kTimestamptz
	kTime
)

// sqlType is a column's or a cast's type, as far as evaluation needs it.
type sqlType struct {
	kind    kind
	name    string // as format_type spells it, for messages and Canonical
	bits    int    // kInt: 16, 32 or 64; kFloat: 32 or 64
	bpchar  bool   // character(n): trailing spaces do not count
	length  int    // character varying(n) / character(n); 0 = none
	prec    int    // numeric(p,s) precision; timestamp(p)/time(p) fractional digits; -1 = none
	scale   int    // numeric(p,s) scale
	collate bool   // a collatable (text) type
}

var (
	typeUnknown = sqlType{kind: kText, name: "unknown", prec: -1}
	typeBool    = sqlType{kind: kBool, name: "boolean", prec: -1}
	typeInt4    = sqlType{kind: kInt, name: "integer", bits: 32, prec: -1}
	typeInt8    = sqlType{kind: kInt, name: "bigint", bits: 64, prec: -1}
	typeNumeric = sqlType{kind: kNumeric, name: "numeric", prec: -1}
	typeText    = sqlType{kind: kText, name: "text", prec: -1, collate: true}
)

// parseColumnType reads a format_type(atttypid, atttypmod) string. Types it does not
// know come back as kOpaque: the column may still be tested with IS [NOT] NULL.
func parseColumnType(s string) sqlType {
	t := strings.ToLower(strings.TrimSpace(s))
	if strings.HasSuffix(t, "]") {
		return sqlType{kind: kOpaque, name: s, prec: -1}
	}
	base, mods := t, []int(nil)
	suffix := ""
	if i := strings.IndexByte(t, '('); i >= 0 {
		j := strings.IndexByte(t, ')')
		if j < i {
			return sqlType{kind: kOpaque, name: s, prec: -1}
		}
		for _, m := range strings.Split(t[i+1:j], ",") {
			n, err := strconv.Atoi(strings.TrimSpace(m))
			if err != nil {
				return sqlType{kind: kOpaque, name: s, prec: -1}
			}
			mods = append(mods, n)
		}
		base, suffix = strings.TrimSpace(t[:i]), strings.TrimSpace(t[j+1:])
		if suffix != "" {
			base += " " + suffix
		}
	}
	st, ok := baseType(base, mods)
	if !ok {
		return sqlType{kind: kOpaque, name: s, prec: -1}
	}
	st.name = s
	return st
}

// baseType maps a type name (a catalog spelling or a common alias) and its type
// modifiers to a sqlType.
func baseType(base string, mods []int) (sqlType, bool) {
	st := sqlType{prec: -1}
	switch base {
	case "smallint", "int2":
		st.kind, st.bits, st.name = kInt, 16, "smallint"
	case "integer", "int", "int4":
		st.kind, st.bits, st.name = kInt, 32, "integer"
	case "bigint", "int8":
		st.kind, st.bits, st.name = kInt, 64, "bigint"
	case "numeric", "decimal":
		st.kind, st.name = kNumeric, "numeric"
		switch len(mods) {
		case 0:
		case 1:
			st.prec, st.scale = mods[0], 0
		case 2:
			st.prec, st.scale = mods[0], mods[1]
		default:
			return st, false
		}
		if len(mods) > 0 {
			st.name = fmt.Sprintf("numeric(%d,%d)", st.prec, st.scale)
		}
		return st, true
	case "real", "float4":
		st.kind, st.bits, st.name = kFloat, 32, "real"
	case "double precision", "float8", "float":
		st.kind, st.bits, st.name = kFloat, 64, "double precision"
	case "text":
		st.kind, st.name, st.collate = kText, "text", true
	case "name":
		st.kind, st.name, st.collate = kText, "name", true
	case "character varying", "varchar":
		st.kind, st.name, st.collate = kText, "character varying", true
		if len(mods) == 1 {
			st.length = mods[0]
			st.name = fmt.Sprintf("character varying(%d)", st.length)
			return st, true
		}
	case "character", "char", "bpchar":
		st.kind, st.name, st.collate, st.bpchar = kText, "character", true, true
		if len(mods) == 1 {
			st.length = mods[0]
			st.name = fmt.Sprintf("character(%d)", st.length)
			return st, true
		}
		if base == "bpchar" {
			st.name = "bpchar"
		}
	case "boolean", "bool":
		st.kind, st.name = kBool, "boolean"
	case "uuid":
		st.kind, st.name = kUUID, "uuid"
	case "date":
		st.kind, st.name = kDate, "date"
	case "timestamp", "timestamp without time zone":
		st.kind, st.name = kTimestamp, "timestamp without time zone"
	case "timestamptz", "timestamp with time zone":
		st.kind, st.name = kTimestamptz, "timestamp with time zone"
	case "time", "time without time zone":
		st.kind, st.name = kTime, "time without time zone"
	default:
		return st, false
	}
	switch {
	case len(mods) == 0:
	case len(mods) == 1 && (st.kind == kTimestamp || st.kind == kTimestamptz || st.kind == kTime):
		if mods[0] < 0 || mods[0] > 6 {
			return st, false
		}
		st.prec = mods[0]
		i := strings.IndexByte(st.name, ' ')
		if i < 0 {
			i = len(st.name)
		}
		st.name = fmt.Sprintf("%s(%d)%s", st.name[:i], st.prec, st.name[i:])
	default:
		return st, false
	}
	return st, true
}
