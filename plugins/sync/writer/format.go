package writer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Parse reads a request body in the TanStack DB / Electric write format: a JSON array
// of mutations (or an object {"mutations": [...]}, as a client posting
// transaction.mutations whole sends), each
//
//	{"type": "insert" | "update" | "delete",
//	 "modified": {...}, "original": {...}, "changes": {...},
//	 "syncMetadata": {"relation": ["public", "todos"]}}
//
// The relation may also be at the top level ("relation": ["public", "todos"], or
// "todos", or "public.todos" as a string), and "data" stands for "modified"
// (Phoenix.Sync's own format). Other fields (TanStack's mutationId, key, metadata…)
// are ignored. Numbers are kept exact as json.Number. Errors are in ErrInvalid, a
// *MutationError when one mutation is at fault.
func Parse(body []byte) ([]Mutation, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		var wrapped struct {
			Mutations json.RawMessage `json:"mutations"`
		}
		if err := decode(body, &wrapped); err != nil {
			return nil, fmt.Errorf("%w: request body: %v", ErrInvalid, err)
		}
		if wrapped.Mutations == nil {
			return nil, fmt.Errorf("%w: request body: an object without \"mutations\"", ErrInvalid)
		}
		body = wrapped.Mutations
	}
	var items []json.RawMessage
	if err := decode(body, &items); err != nil {
		return nil, fmt.Errorf("%w: request body: want a JSON array of mutations: %v", ErrInvalid, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: no mutations", ErrInvalid)
	}
	out := make([]Mutation, len(items))
	for i, raw := range items {
		m, err := parseOne(raw)
		m.Index = i
		if err != nil {
			return nil, &MutationError{Index: i, Type: m.Type, Table: m.qualified(), Err: fmt.Errorf("%w: %v", ErrInvalid, err)}
		}
		out[i] = m
	}
	return out, nil
}

// wireMutation is one mutation as clients send it.
type wireMutation struct {
	Type         string          `json:"type"`
	Modified     map[string]any  `json:"modified"`
	Data         map[string]any  `json:"data"`
	Original     map[string]any  `json:"original"`
	Changes      map[string]any  `json:"changes"`
	Relation     json.RawMessage `json:"relation"`
	SyncMetadata struct {
		Relation json.RawMessage `json:"relation"`
	} `json:"syncMetadata"`
}

func parseOne(raw json.RawMessage) (Mutation, error) {
	var w wireMutation
	if err := decode(raw, &w); err != nil {
		return Mutation{}, err
	}
	m := Mutation{Type: w.Type, Modified: w.Modified, Original: w.Original, Changes: w.Changes}
	if m.Modified == nil {
		m.Modified = w.Data
	}
	rel := w.SyncMetadata.Relation
	if len(rel) == 0 || string(rel) == "null" {
		rel = w.Relation
	}
	var err error
	if m.Schema, m.Table, err = relation(rel); err != nil {
		return m, err
	}
	switch m.Type {
	case Insert, Update, Delete:
	default:
		return m, fmt.Errorf("type %q: want insert, update or delete", m.Type)
	}
	return m, nil
}

// relation reads ["schema", "table"], ["table"], "table" or "schema.table".
func relation(raw json.RawMessage) (schema, table string, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", "", errors.New("no relation (syncMetadata.relation or relation)")
	}
	var name string
	if json.Unmarshal(raw, &name) == nil {
		if s, t, ok := strings.Cut(name, "."); ok {
			return s, t, nil
		}
		return "public", name, nil
	}
	var parts []string
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", "", fmt.Errorf("relation %.60s: want [schema, table]", raw)
	}
	switch len(parts) {
	case 1:
		return "public", parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	}
	return "", "", fmt.Errorf("relation with %d parts: want [schema, table]", len(parts))
}

// decode unmarshals JSON keeping numbers exact and refusing trailing data.
func decode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
