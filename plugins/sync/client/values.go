package client

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/fiberkit/fiberkit/plugins/sync/wire"
)

// A PhoenixKit sender sends JSON-typed values: numbers, booleans, strings (numeric
// as a string, date/time as ISO 8601, uuid as text), json/jsonb as the JSON value
// itself, arrays as lists and bytea as {"__phoenix_kit_binary__": base64}. The
// importer takes PostgreSQL text, so each value is turned into the text its local
// column's type reads back exactly.

// textRecord turns one record's values into PostgreSQL text. types maps a column to
// its local type (format_type's spelling); a column without one is converted
// without knowing its type.
func textRecord(rec map[string]json.RawMessage, types map[string]string) (map[string]*string, error) {
	out := make(map[string]*string, len(rec))
	for col, raw := range rec {
		v, err := textValue(raw, types[col])
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", col, err)
		}
		out[col] = v
	}
	return out, nil
}

// textValue turns one JSON value into PostgreSQL text for a column of type typ
// ("" = unknown): nil for null.
func textValue(raw json.RawMessage, typ string) (*string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if isJSONType(typ) {
		// The value is the document: keep it whole (a JSON string stays quoted).
		s := string(raw)
		return &s, nil
	}
	s, err := scalarText(raw, typ)
	if err != nil {
		return nil, err
	}
	return &s, nil
}

func isJSONType(typ string) bool { return typ == "json" || typ == "jsonb" }

// elemType returns the element type of an array type ("text[]" → "text"), and
// whether typ is an array type.
func elemType(typ string) (string, bool) {
	if t, ok := strings.CutSuffix(typ, "[]"); ok {
		for {
			u, more := strings.CutSuffix(t, "[]")
			if !more {
				return t, true
			}
			t = u
		}
	}
	return "", false
}

// scalarText converts a non-null value that is not a json/jsonb column's document.
func scalarText(raw json.RawMessage, typ string) (string, error) {
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("bad string: %w", err)
		}
		return s, nil
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("bad value %s", raw)
		}
		return strconv.FormatBool(b), nil
	case '{':
		var bin map[string]string
		if err := json.Unmarshal(raw, &bin); err == nil && len(bin) == 1 {
			if b64, ok := bin[wire.BinaryKey]; ok {
				b, err := base64.StdEncoding.DecodeString(b64)
				if err != nil {
					return "", fmt.Errorf("bad %s value: %w", wire.BinaryKey, err)
				}
				return `\x` + hex.EncodeToString(b), nil
			}
		}
		if typ != "" {
			return "", fmt.Errorf("an object for a %s column", typ)
		}
		return compactJSON(raw)
	case '[':
		if elem, ok := elemType(typ); ok {
			return arrayLiteral(raw, elem)
		}
		if typ != "" {
			return "", fmt.Errorf("a list for a %s column", typ)
		}
		return compactJSON(raw)
	}
	// A number: JSON's spelling is valid input for every numeric type.
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", fmt.Errorf("bad value %.40s", raw)
	}
	return n.String(), nil
}

func compactJSON(raw json.RawMessage) (string, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return "", fmt.Errorf("bad JSON value: %w", err)
	}
	return b.String(), nil
}

// arrayLiteral turns a JSON list (nested for more dimensions) into a PostgreSQL
// array literal of elem values: {1,2}, {"a b","c\"d",NULL}, {{1,2},{3,4}}.
func arrayLiteral(raw json.RawMessage, elem string) (string, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return "", fmt.Errorf("bad list: %w", err)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		it = bytes.TrimSpace(it)
		switch {
		case len(it) == 0 || string(it) == "null":
			b.WriteString("NULL")
		case it[0] == '[' && !isJSONType(elem):
			sub, err := arrayLiteral(it, elem)
			if err != nil {
				return "", err
			}
			b.WriteString(sub)
		default:
			var s string
			var err error
			if isJSONType(elem) {
				s, err = compactJSON(it)
			} else {
				s, err = scalarText(it, elem)
			}
			if err != nil {
				return "", err
			}
			quoteArrayElem(&b, s)
		}
	}
	b.WriteByte('}')
	return b.String(), nil
}

// quoteArrayElem writes s as a double-quoted array element, so no value (empty,
// NULL spelled out, braces, commas, spaces) is misread.
func quoteArrayElem(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}
