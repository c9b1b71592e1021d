package syncapi

import "encoding/json"

// Schema is a table's definition, enough to recreate it (package ddl) and to move
// its rows (packages exporter and importer of plugins/sync). It travels as JSON between sites.
type Schema struct {
	Schema      string       `json:"schema"`
	Name        string       `json:"table"`
	Columns     []Column     `json:"columns"`
	PrimaryKey  []string     `json:"primary_key"`
	Unique      []Unique     `json:"unique_constraints"`
	ForeignKeys []ForeignKey `json:"foreign_keys"`
	Enums       []Enum       `json:"enums,omitempty"`
	Domains     []Domain     `json:"domains,omitempty"`
	// Partition says how a partitioned table is partitioned (nil for a plain table).
	// Its rows travel with the table: partitions are never listed as tables of their own.
	Partition *PartitionSpec `json:"partition,omitempty"`
}

// PartitionSpec is how a partitioned table is partitioned, and its partitions.
type PartitionSpec struct {
	// Key is the partition key as pg_get_partkeydef prints it: "RANGE (payment_date)",
	// "LIST (region)", "HASH (id)".
	Key string `json:"key"`
	// Partitions are the table's partitions (its direct children), by name.
	Partitions []Partition `json:"partitions,omitempty"`
}

// Partition is one partition of a partitioned table.
type Partition struct {
	// Name is the partition's table name; it is created beside its parent.
	Name string `json:"name"`
	// Bound is pg_get_expr(relpartbound) of the partition: "FOR VALUES FROM ('2022-01-01')
	// TO ('2022-02-01')", "FOR VALUES IN ('a', 'b')", "FOR VALUES WITH (modulus 4,
	// remainder 0)" or "DEFAULT".
	Bound string `json:"bound"`
}

// Column is one column.
type Column struct {
	Name string `json:"name"`
	// Type is the full SQL type as format_type prints it: "numeric(12,2)",
	// "character varying(20)", "text[]", "public.order_status".
	Type     string  `json:"type"`
	Nullable bool    `json:"nullable"`
	Default  *string `json:"default,omitempty"`
	// Identity is "always", "by_default" or "".
	Identity string `json:"identity,omitempty"`
	// Generated holds the expression of a stored generated column; such columns are
	// never written.
	Generated  string `json:"generated,omitempty"`
	PrimaryKey bool   `json:"primary_key"`
	// BaseType is the type with domains unwrapped (same as Type for non-domains).
	BaseType string `json:"base_type"`
	// HasDefault is true when inserting without a value gives one (default, identity or serial).
	HasDefault bool `json:"has_default"`
}

// Unique is a unique constraint.
type Unique struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// ForeignKey is a foreign key constraint.
type ForeignKey struct {
	Name       string   `json:"name"`
	Columns    []string `json:"columns"`
	RefSchema  string   `json:"ref_schema"`
	RefTable   string   `json:"ref_table"`
	RefColumns []string `json:"ref_columns"`
	// Definition is pg_get_constraintdef's text (FOREIGN KEY … REFERENCES … ON DELETE …).
	Definition string `json:"definition"`
}

// Enum is an enum type a column uses.
type Enum struct {
	Schema string   `json:"schema"`
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
}

// Domain is a domain type a column uses.
type Domain struct {
	Schema   string   `json:"schema"`
	Name     string   `json:"name"`
	BaseType string   `json:"base_type"`
	NotNull  bool     `json:"not_null"`
	Default  *string  `json:"default,omitempty"`
	Checks   []string `json:"checks,omitempty"` // CHECK (…) definitions
}

// Column returns the column called name.
func (s *Schema) Column(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Writable returns the columns an import writes: all but generated ones.
func (s *Schema) Writable() []Column {
	out := make([]Column, 0, len(s.Columns))
	for _, c := range s.Columns {
		if c.Generated == "" {
			out = append(out, c)
		}
	}
	return out
}

// Table is one entry of a table listing: the list_tables operation and request:tables.
type Table struct {
	Name   string `json:"name"` // as catalog.Resolve accepts it
	Schema string `json:"schema"`
	Rows   int64  `json:"rows"`
	// Exact is false when Rows is the planner's estimate.
	Exact bool `json:"exact"`
}

// MarshalJSON adds estimated_count (= rows), the field PhoenixKit's clients read.
func (t Table) MarshalJSON() ([]byte, error) {
	type plain Table
	return json.Marshal(struct {
		plain
		EstimatedCount int64 `json:"estimated_count"`
	}{plain(t), t.Rows})
}

// UnmarshalJSON reads estimated_count as rows when rows is absent (a PhoenixKit
// sender's listing).
func (t *Table) UnmarshalJSON(b []byte) error {
	type plain Table
	var v struct {
		plain
		Rows           *int64 `json:"rows"`
		EstimatedCount *int64 `json:"estimated_count"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*t = Table(v.plain)
	switch {
	case v.Rows != nil:
		t.Rows = *v.Rows
	case v.EstimatedCount != nil:
		t.Rows = *v.EstimatedCount
	}
	if t.Schema == "" {
		t.Schema = "public"
	}
	return nil
}
