package syncapi

// Mask kinds: what a MaskRule puts in place of a column's value on the sending side.
const (
	// MaskNull sends NULL (the receiving column must accept it).
	MaskNull = "null"
	// MaskFixed sends MaskRule.Value for every row (NULLs stay NULL).
	MaskFixed = "fixed"
	// MaskHash sends a keyed hash (HMAC-SHA-256 with the sending site's masking key)
	// of the value, in the column's own type: the same value always gives the same
	// result, so joins on a hashed key still match across tables.
	MaskHash = "hash"
	// MaskFake sends a made-up value of the same format, derived from the keyed hash
	// (deterministic too): MaskRule.Format says which.
	MaskFake = "fake"
)

// Fake formats (MaskRule.Format for MaskFake).
const (
	FakeEmail = "email"
	FakeName  = "name"
	FakePhone = "phone"
)

// MaskRule replaces one column's values before they leave the sending database.
// Table is as the sender lists it ("users", "audit.events"); "*" in Table matches
// every table (for the default rules by column name).
type MaskRule struct {
	Table  string `json:"table"`
	Column string `json:"column"`
	// Kind is MaskNull, MaskFixed, MaskHash or MaskFake.
	Kind string `json:"kind"`
	// Value is MaskFixed's value, in PostgreSQL's text form for the column's type.
	Value string `json:"value,omitempty"`
	// Format is MaskFake's format: FakeEmail, FakeName or FakePhone.
	Format string `json:"format,omitempty"`
}
