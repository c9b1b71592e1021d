package writer

import (
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Values arrive as JSON (or as Go values from a caller of Apply) and reach
// PostgreSQL as text bound to a parameter cast to the column's type, so every type's
// own input function reads them: a string is its text, a number or bool its JSON
// spelling, an object or list the JSON document for json/jsonb columns, a list an
// array literal for array columns.

// textOf turns v into the text a column of type typ (format_type's spelling without
// typmod) reads; nil for NULL.
func textOf(v any, typ string) (*string, error) {
	if v == nil {
		return nil, nil
	}
	if typ == "json" || typ == "jsonb" {
		if r, ok := v.(json.RawMessage); ok {
			s := string(r)
			return &s, nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: not a JSON value: %v", ErrInvalid, err)
		}
		s := string(b)
		return &s, nil
	}
	if elem, ok := strings.CutSuffix(typ, "[]"); ok {
		if list, ok := asList(v); ok {
			for strings.HasSuffix(elem, "[]") {
				elem = strings.TrimSuffix(elem, "[]")
			}
			s, err := arrayLiteral(list, elem)
			if err != nil {
				return nil, err
			}
			return &s, nil
		}
	}
	s, err := scalarText(v)
	if err != nil {
		return nil, fmt.Errorf("%w for a %s column", err, typ)
	}
	return &s, nil
}

// scalarText is the text of a string, number, bool or time.
func scalarText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32), nil
	case int:
		return strconv.Itoa(x), nil
	case int8, int16, int32, int64:
		return strconv.FormatInt(reflect.ValueOf(x).Int(), 10), nil
	case uint, uint8, uint16, uint32, uint64:
		return strconv.FormatUint(reflect.ValueOf(x).Uint(), 10), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case fmt.Stringer:
		return x.String(), nil
	}
	return "", fmt.Errorf("%w: a %T value", ErrInvalid, v)
}

// asList reports whether v is a list (any slice but []byte) and its items.
func asList(v any) ([]any, bool) {
	if l, ok := v.([]any); ok {
		return l, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() == reflect.Uint8 {
		return nil, false
	}
	l := make([]any, rv.Len())
	for i := range l {
		l[i] = rv.Index(i).Interface()
	}
	return l, true
}

// arrayLiteral turns a list (nested for more dimensions) into a PostgreSQL array
// literal of elem values, each element quoted: {"1","2"}, {"a b","c\"d",NULL}.
func arrayLiteral(list []any, elem string) (string, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, it := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		if it == nil {
			b.WriteString("NULL")
			continue
		}
		var s string
		if sub, ok := asList(it); ok && elem != "json" && elem != "jsonb" {
			lit, err := arrayLiteral(sub, elem)
			if err != nil {
				return "", err
			}
			b.WriteString(lit)
			continue
		}
		if elem == "json" || elem == "jsonb" {
			j, err := json.Marshal(it)
			if err != nil {
				return "", fmt.Errorf("%w: not a JSON value: %v", ErrInvalid, err)
			}
			s = string(j)
		} else {
			var err error
			if s, err = scalarText(it); err != nil {
				return "", fmt.Errorf("%w in a %s[] list", err, elem)
			}
		}
		b.WriteByte('"')
		for _, r := range s {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// Equal reports whether two values are the same value as this package writes them:
// their text is the same (json.Number("1"), 1, int64(1) and "1" are equal), or both
// are numbers of the same value (1, 1.0 and json.Number("1e0")). A Row's values
// (loaded as JSON) compare with a Mutation's this way. Objects and lists compare by
// their JSON; nil equals only nil.
func Equal(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	sa, ea := scalarText(a)
	sb, eb := scalarText(b)
	if ea == nil && eb == nil {
		if sa == sb {
			return true
		}
		if isNumber(a) && isNumber(b) {
			ra, ok1 := new(big.Rat).SetString(sa)
			rb, ok2 := new(big.Rat).SetString(sb)
			return ok1 && ok2 && ra.Cmp(rb) == 0
		}
		return false
	}
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// isNumber reports whether v is a number.
func isNumber(v any) bool {
	switch v.(type) {
	case json.Number, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}
