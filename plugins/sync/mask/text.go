package mask

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fiberkit/fiberkit/plugins/sync/syncapi"
)

// ApplyText masks a row of text values (column → PostgreSQL's text of the value,
// nil for NULL) in place: each masked column's value becomes, byte for byte, the
// text of what Expr's SQL gives for it (as the type's output function writes it,
// as COPY and logical decoding do). Columns the row lacks are left out.
func (t *Table) ApplyText(row map[string]*string) {
	if t == nil {
		return
	}
	for name, v := range row {
		if _, ok := t.columns[name]; ok {
			row[name] = t.Text(name, v)
		}
	}
}

// Text returns column's masked value for the text v (nil: NULL); v itself when
// the column is not masked.
func (t *Table) Text(column string, v *string) *string {
	c, ok := t.columns[column]
	if !ok {
		return v
	}
	if v == nil || c.rule.Kind == syncapi.MaskNull {
		return nil
	}
	var out string
	msg := *v
	if c.shape.bpchar {
		msg = strings.TrimRight(msg, " ") // char(n)::text drops trailing blanks
	}
	switch c.rule.Kind {
	case syncapi.MaskFixed:
		out = c.fixed
	case syncapi.MaskHash:
		h := t.key.Sum(msg)
		hx := hex.EncodeToString(h)
		switch c.shape.class {
		case classText:
			out = c.fit(hx)
		case classInt2:
			out = strconv.FormatUint(uint64(binary.BigEndian.Uint16(h)&0x7fff), 10)
		case classInt4:
			out = strconv.FormatUint(uint64(binary.BigEndian.Uint32(h)&0x7fffffff), 10)
		case classInt8:
			out = strconv.FormatUint(binary.BigEndian.Uint64(h)&0x7fffffffffffffff, 10)
		case classNumeric:
			n := binary.BigEndian.Uint64(h) & 0x7fffffffffffffff
			if d := c.shape.intDigits; d > 0 && d < 19 {
				n %= pow10u(d)
			}
			out = strconv.FormatUint(n, 10)
			if c.shape.scale > 0 {
				out += "." + strings.Repeat("0", c.shape.scale)
			}
		case classUUID:
			out = hx[0:8] + "-" + hx[8:12] + "-" + hx[12:16] + "-" + hx[16:20] + "-" + hx[20:32]
		case classBytea:
			out = `\x` + hx
		}
	case syncapi.MaskFake:
		h := t.key.Sum(msg)
		switch c.rule.Format {
		case syncapi.FakeEmail:
			out = c.fit("u" + hex.EncodeToString(h)[:c.emailHex] + emailTail)
		case syncapi.FakeName:
			first, last := firstNames(), lastNames()
			out = c.fit(first[int(h[0])%len(first)] + " " + last[int(h[1])%len(last)])
		case syncapi.FakePhone:
			var b strings.Builder
			i := 0
			for _, r := range msg {
				if r >= '0' && r <= '9' {
					b.WriteByte('0' + h[i%len(h)]%10)
				} else {
					b.WriteRune(r)
				}
				i++
			}
			out = c.fit(b.String())
		}
	}
	return &out
}

// fit makes a text value what a cast to the column's type makes of it: cut to
// char(n)/varchar(n)'s n characters, and a char(n) padded with blanks to n.
func (c *column) fit(s string) string {
	n := c.shape.length
	if c.shape.class != classText || n <= 0 {
		return s
	}
	if utf8.RuneCountInString(s) > n {
		i := 0
		for at := range s {
			if i == n {
				s = s[:at]
				break
			}
			i++
		}
	}
	if c.shape.bpchar {
		// What char(n) writes drops nothing: pad to n characters.
		if k := utf8.RuneCountInString(s); k < n {
			s += strings.Repeat(" ", n-k)
		}
	}
	return s
}

// pow10u is 10^n (n < 20).
func pow10u(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}
