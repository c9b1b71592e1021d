package syncapi

import (
	"encoding/json"
	"fmt"
	"strings"
)

// phoenixKitColumn is what PhoenixKit's schema says of a column beyond our
// Column's fields (its ColumnInfo, from information_schema.columns).
type phoenixKitColumn struct {
	Name        string  `json:"name"`
	Type        string  `json:"type"`
	ElementType *string `json:"element_type"`
	MaxLength   *int    `json:"max_length"`
	Precision   *int    `json:"precision"`
	Scale       *int    `json:"scale"`
}

// FromPhoenixKit completes a definition sch decoded from PhoenixKit's schema shape
// raw (a PhoenixKit sender's response:schema, or the seed's create_table(name,
// {columns, primary_key})): full type names from information_schema's data_type
// and its length, precision and element type; nextval defaults as identity
// columns (what PhoenixKit's own create_table makes of them: serials); base types
// and whether a column has a default; the public schema when none is named.
func FromPhoenixKit(raw json.RawMessage, sch *Schema) error {
	var pk struct {
		Columns []phoenixKitColumn `json:"columns"`
	}
	if err := json.Unmarshal(raw, &pk); err != nil {
		return fmt.Errorf("decode PhoenixKit schema: %w", err)
	}
	if len(pk.Columns) != len(sch.Columns) {
		return fmt.Errorf("decode PhoenixKit schema: %d columns, %d described", len(sch.Columns), len(pk.Columns))
	}
	if sch.Schema == "" {
		sch.Schema = "public"
	}
	keys := map[string]bool{}
	for _, k := range sch.PrimaryKey {
		keys[k] = true
	}
	for i := range sch.Columns {
		col := &sch.Columns[i]
		col.Type = phoenixKitType(pk.Columns[i])
		col.BaseType = col.Type
		col.PrimaryKey = col.PrimaryKey || keys[col.Name]
		if col.Default != nil && strings.HasPrefix(*col.Default, "nextval(") {
			col.Default, col.Identity = nil, "by_default"
		}
		col.HasDefault = col.Default != nil || col.Identity != ""
	}
	return nil
}

// phoenixKitType spells a column's type as format_type would from
// information_schema's data_type and modifiers.
func phoenixKitType(c phoenixKitColumn) string {
	switch c.Type {
	case "character varying", "character", "bit", "bit varying":
		if c.MaxLength != nil {
			return fmt.Sprintf("%s(%d)", c.Type, *c.MaxLength)
		}
	case "numeric":
		if c.Precision != nil && c.Scale != nil {
			return fmt.Sprintf("numeric(%d,%d)", *c.Precision, *c.Scale)
		}
	case "ARRAY":
		if c.ElementType != nil && *c.ElementType != "USER-DEFINED" {
			return *c.ElementType + "[]"
		}
	}
	return c.Type
}
