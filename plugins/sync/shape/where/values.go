package where

import (
	"cmp"
	"math"
	"strconv"
	"strings"
	"time"
)

// This file reads values in PostgreSQL's text format (the format logical
// replication's pgoutput sends, with DateStyle ISO) into Go values that compare the
// way PostgreSQL compares them, and writes their canonical text.
//
// Representations by kind: kInt, kBool, kDate (days since 1970-01-01), kTimestamp and
// kTimestamptz (microseconds since 1970-01-01 00:00 UTC), kTime (microseconds since
// midnight) are int64; kFloat is float64; kNumeric is decimal; kText and kUUID
// (canonical lower-case form) are string. ±infinity of dates and timestamps are
// math.MaxInt64 and math.MinInt64.

func syntaxErr(typ, s string) error {
	return errorf(-1, "invalid input syntax for type %s: %q", typ, s)
}

func rangeErr(typ, s string) error {
	return errorf(-1, "value %q is out of range for type %s", s, typ)
}

// parseInt reads an integer of the given width as int2in/int4in/int8in do.
func parseInt(s string, bits int) (int64, error) {
	t := strings.TrimSpace(s)
	digits := strings.TrimLeft(t, "+-")
	if len(t)-len(digits) > 1 || digits == "" {
		return 0, syntaxErr(intName(bits), s)
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, syntaxErr(intName(bits), s)
		}
	}
	v, err := strconv.ParseInt(t, 10, bits)
	if err != nil {
		return 0, rangeErr(intName(bits), s)
	}
	return v, nil
}

func intName(bits int) string {
	switch bits {
	case 16:
		return "smallint"
	case 32:
		return "integer"
	}
	return "bigint"
}

// decimal is an exact numeric value: 0.digits × 10^exp, with digits free of
// leading and trailing zeros (empty for zero), or one of the special values.
type decimal struct {
	special int8 // 0 finite, specNegInf, specPosInf, specNaN
	neg     bool
	digits  string
	exp     int
}

const (
	specNegInf int8 = -1
	specPosInf int8 = 1
	specNaN    int8 = 2
)

// parseNumeric reads a numeric as numeric_in does (PostgreSQL 15: NaN and ±Infinity).
func parseNumeric(s string) (decimal, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "nan":
		return decimal{special: specNaN}, nil
	case "infinity", "+infinity", "inf", "+inf":
		return decimal{special: specPosInf}, nil
	case "-infinity", "-inf":
		return decimal{special: specNegInf}, nil
	}
	var d decimal
	if t != "" && (t[0] == '+' || t[0] == '-') {
		d.neg = t[0] == '-'
		t = t[1:]
	}
	var all strings.Builder
	point, seenPoint, n := 0, false, 0
	i := 0
	for ; i < len(t); i++ {
		c := t[i]
		if c >= '0' && c <= '9' {
			all.WriteByte(c)
			n++
			if !seenPoint {
				point++
			}
		} else if c == '.' && !seenPoint {
			seenPoint = true
		} else {
			break
		}
	}
	if n == 0 {
		return decimal{}, syntaxErr("numeric", s)
	}
	if i < len(t) {
		if t[i] != 'e' && t[i] != 'E' {
			return decimal{}, syntaxErr("numeric", s)
		}
		e, err := strconv.Atoi(t[i+1:])
		if err != nil || strings.HasPrefix(t[i+1:], "_") || e > 1000000 || e < -1000000 {
			return decimal{}, syntaxErr("numeric", s)
		}
		point += e
	}
	digits := all.String()
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return decimal{}, nil
	}
	d.digits, d.exp = digits, point
	return d, nil
}

func (d decimal) rank() int {
	switch d.special {
	case specNegInf:
		return 0
	case specPosInf:
		return 2
	case specNaN:
		return 3
	}
	return 1
}

func (d decimal) sign() int {
	switch {
	case d.digits == "":
		return 0
	case d.neg:
		return -1
	}
	return 1
}

// cmpDecimal orders as numeric does: -Infinity < finite < Infinity < NaN, NaN = NaN.
func cmpDecimal(a, b decimal) int {
	if ra, rb := a.rank(), b.rank(); ra != 1 || rb != 1 {
		return cmp.Compare(ra, rb)
	}
	sa, sb := a.sign(), b.sign()
	if sa != sb || sa == 0 {
		return cmp.Compare(sa, sb)
	}
	c := cmp.Compare(a.exp, b.exp)
	if c == 0 {
		c = strings.Compare(a.digits, b.digits)
	}
	return c * sa
}

func (d decimal) String() string {
	switch d.special {
	case specNaN:
		return "NaN"
	case specPosInf:
		return "Infinity"
	case specNegInf:
		return "-Infinity"
	}
	if d.digits == "" {
		return "0"
	}
	var s string
	switch {
	case d.exp <= 0:
		s = "0." + strings.Repeat("0", -d.exp) + d.digits
	case d.exp >= len(d.digits):
		s = d.digits + strings.Repeat("0", d.exp-len(d.digits))
	default:
		s = d.digits[:d.exp] + "." + d.digits[d.exp:]
	}
	if d.neg {
		return "-" + s
	}
	return s
}

// roundDecimal applies a numeric(prec,scale) type modifier, as a cast does: round
// half away from zero to scale digits, then refuse values too wide for prec.
func roundDecimal(d decimal, prec, scale int) (decimal, error) {
	if d.special == specNaN {
		return d, nil
	}
	if d.special != 0 {
		return d, errorf(-1, "numeric field overflow: numeric(%d,%d) cannot hold an infinite value", prec, scale)
	}
	keep := d.exp + scale
	if keep < len(d.digits) {
		if keep < 0 {
			return decimal{}, nil
		}
		up := d.digits[keep] >= '5'
		b := []byte(d.digits[:keep])
		if up {
			i := len(b) - 1
			for ; i >= 0 && b[i] == '9'; i-- {
				b[i] = '0'
			}
			if i < 0 {
				b = append([]byte{'1'}, b...)
				d.exp++
			} else {
				b[i]++
			}
		}
		d.digits = strings.TrimRight(string(b), "0")
		if d.digits == "" {
			return decimal{}, nil
		}
	}
	if d.digits != "" && d.exp > prec-scale {
		return d, errorf(-1, "numeric field overflow: a numeric(%d,%d) value must be below 10^%d", prec, scale, prec-scale)
	}
	return d, nil
}

// parseFloat reads a real (bits 32) or double precision (bits 64) as float4in/float8in.
func parseFloat(s string, bits int) (float64, error) {
	name := "double precision"
	if bits == 32 {
		name = "real"
	}
	t := strings.TrimSpace(s)
	if strings.ContainsAny(t, "_") {
		return 0, syntaxErr(name, s)
	}
	f, err := strconv.ParseFloat(t, bits)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, errorf(-1, "%q is out of range for type %s", s, name)
		}
		return 0, syntaxErr(name, s)
	}
	return f, nil
}

// cmpFloat orders as float8 does: NaN equals NaN and sorts above everything; -0 = 0.
func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		return "0"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// parseBool reads a boolean as boolin does: t/f, true/false, yes/no, on/off, 1/0,
// and unique prefixes of them, in any case.
func parseBool(s string) (bool, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	switch {
	case t == "":
	case strings.HasPrefix("true", t), strings.HasPrefix("yes", t), t == "on", t == "1":
		return true, nil
	case strings.HasPrefix("false", t), strings.HasPrefix("no", t), t == "of", t == "off", t == "0":
		return false, nil
	}
	return false, syntaxErr("boolean", s)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// parseUUID reads a uuid as uuid_in does (optional braces, upper or lower case, a
// hyphen allowed after any group of four digits) and returns its canonical text.
func parseUUID(s string) (string, error) {
	if isCanonicalUUID(s) {
		return s, nil
	}
	t := s
	if strings.HasPrefix(t, "{") {
		if !strings.HasSuffix(t, "}") {
			return "", syntaxErr("uuid", s)
		}
		t = t[1 : len(t)-1]
	}
	var b [36]byte
	n := 0
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		case c == '-' && n > 0 && n%4 == 0 && n < 32 && i+1 < len(t) && t[i-1] != '-':
			continue
		default:
			return "", syntaxErr("uuid", s)
		}
		if n == 32 {
			return "", syntaxErr("uuid", s)
		}
		pos := n
		switch {
		case n >= 20:
			pos = n + 4
		case n >= 16:
			pos = n + 3
		case n >= 12:
			pos = n + 2
		case n >= 8:
			pos = n + 1
		}
		b[pos] = c
		n++
	}
	if n != 32 {
		return "", syntaxErr("uuid", s)
	}
	b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	return string(b[:]), nil
}

func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

const usPerDay = 86400 * 1000000

// daysFromCivil counts days from 1970-01-01 to the proleptic Gregorian date
// (astronomical year numbering: 1 BC is year 0).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(z int64) (y, m, d int64) {
	z += 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func daysIn(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// dtScanner reads the ISO forms of dates, times and timestamps.
type dtScanner struct {
	s string
	i int
}

func (p *dtScanner) digits(min, max int) (int64, bool) {
	start := p.i
	var v int64
	for p.i < len(p.s) && p.i-start < max && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		v = v*10 + int64(p.s[p.i]-'0')
		p.i++
	}
	return v, p.i-start >= min
}

func (p *dtScanner) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *dtScanner) spaces() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

// clock reads hh:mm[:ss[.frac]] and returns microseconds since midnight.
func (p *dtScanner) clock() (int64, bool) {
	h, ok := p.digits(1, 2)
	if !ok || !p.byte(':') {
		return 0, false
	}
	mi, ok := p.digits(2, 2)
	if !ok {
		return 0, false
	}
	var sec, frac int64
	if p.byte(':') {
		if sec, ok = p.digits(2, 2); !ok {
			return 0, false
		}
		if p.byte('.') {
			start := p.i
			f, _ := p.digits(0, 7)
			n := p.i - start
			for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
				p.i++
			}
			for ; n < 7; n++ {
				f *= 10
			}
			frac = (f + 5) / 10
		}
	}
	if h > 24 || mi > 59 || sec > 60 || (h == 24 && (mi != 0 || sec != 0 || frac != 0)) {
		return 0, false
	}
	return ((h*60+mi)*60+sec)*1000000 + frac, true
}

// zone reads Z, ±hh[[:]mm[[:]ss]] or a time zone name. It reports whether a zone
// was present and, for names, the location.
func (p *dtScanner) zone() (offset int64, loc *time.Location, present, ok bool) {
	if p.i >= len(p.s) {
		return 0, nil, false, true
	}
	c := p.s[p.i]
	switch {
	case c == 'Z' || c == 'z':
		if p.i+1 == len(p.s) || p.s[p.i+1] == ' ' {
			p.i++
			return 0, nil, true, true
		}
	case c == '+' || c == '-':
		p.i++
		h, ok := p.digits(1, 2)
		if !ok {
			return 0, nil, true, false
		}
		var m, s int64
		colon := p.byte(':')
		if v, ok2 := p.digits(2, 2); ok2 {
			m = v
			if p.byte(':') || !colon {
				if v, ok3 := p.digits(2, 2); ok3 {
					s = v
				}
			}
		} else if colon {
			return 0, nil, true, false
		}
		off := h*3600 + m*60 + s
		if c == '-' {
			off = -off
		}
		return off, nil, true, true
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ' ' {
		p.i++
	}
	name := p.s[start:p.i]
	if l := strings.ToLower(name); l == "bc" || l == "ad" {
		p.i = start
		return 0, nil, false, true
	}
	for _, n := range []string{name, strings.ToUpper(name)} {
		if l, err := time.LoadLocation(n); err == nil && n != "" && n != "Local" {
			return 0, l, true, true
		}
	}
	return 0, nil, true, false
}

// parseDateTime reads a date (kDate: days), timestamp or timestamptz (µs since the
// epoch, UTC for timestamptz). A timestamptz without a zone is in loc.
func parseDateTime(s string, k kind, loc *time.Location) (int64, error) {
	name := "timestamp with time zone"
	switch k {
	case kDate:
		name = "date"
	case kTimestamp:
		name = "timestamp without time zone"
	}
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "infinity", "+infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	case "epoch":
		return 0, nil
	case "now", "today", "tomorrow", "yesterday":
		return 0, errorf(-1, "%q is not a constant %s (it changes with time); give the value itself", s, name)
	}
	p := &dtScanner{s: t}
	y, ok1 := p.digits(1, 9)
	ok2 := p.byte('-')
	m, ok3 := p.digits(1, 2)
	ok4 := p.byte('-')
	d, ok5 := p.digits(1, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, syntaxErr(name, s)
	}
	var us int64
	if p.i+1 < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == 'T' || p.s[p.i] == 't') && p.s[p.i+1] >= '0' && p.s[p.i+1] <= '9' {
		p.i++
		var ok bool
		if us, ok = p.clock(); !ok {
			return 0, syntaxErr(name, s)
		}
	}
	p.spaces()
	off, zloc, hasZone, ok := p.zone()
	if !ok {
		return 0, syntaxErr(name, s)
	}
	p.spaces()
	if rest := strings.ToLower(p.s[p.i:]); rest == "bc" {
		if y < 1 {
			return 0, syntaxErr(name, s)
		}
		y = 1 - y
	} else if rest != "" && rest != "ad" {
		return 0, syntaxErr(name, s)
	}
	if m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return 0, errorf(-1, "date/time field value out of range: %q", s)
	}
	days := daysFromCivil(y, m, d)
	switch k {
	case kDate:
		return days, nil
	case kTimestamp:
		return days*usPerDay + us, nil
	}
	local := days*usPerDay + us
	if !hasZone || zloc != nil {
		l := loc
		if zloc != nil {
			l = zloc
		}
		sec := us / 1000000
		_, o := time.Date(int(y), time.Month(m), int(d), int(sec/3600), int(sec/60%60), int(sec%60), 0, l).Zone()
		off = int64(o)
	}
	return local - off*1000000, nil
}

// parseTime reads a time of day (a zone, if any, is ignored, as time_in does).
func parseTime(s string) (int64, error) {
	p := &dtScanner{s: strings.TrimSpace(s)}
	us, ok := p.clock()
	if ok {
		p.spaces()
		_, _, _, ok = p.zone()
	}
	if !ok || p.i != len(p.s) {
		return 0, syntaxErr("time without time zone", s)
	}
	return us, nil
}

// roundMicros applies a timestamp(p)/time(p) type modifier: round half away from zero.
func roundMicros(us int64, prec int) int64 {
	if prec < 0 || prec >= 6 || us == math.MaxInt64 || us == math.MinInt64 {
		return us
	}
	scale := int64(math.Pow10(6 - prec))
	if us >= 0 {
		return (us + scale/2) / scale * scale
	}
	return -((-us + scale/2) / scale * scale)
}

func formatDate(days int64) string {
	switch days {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	y, m, d := civilFromDays(days)
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	s := pad(y, 4) + "-" + pad(m, 2) + "-" + pad(d, 2)
	if bc {
		s += " BC"
	}
	return s
}

func formatClock(us int64) string {
	sec := us / 1000000
	s := pad(sec/3600, 2) + ":" + pad(sec/60%60, 2) + ":" + pad(sec%60, 2)
	if f := us % 1000000; f != 0 {
		s += "." + strings.TrimRight(pad(f, 6), "0")
	}
	return s
}

// formatTimestamp writes an ISO 8601 timestamp, with a Z when utc is set.
func formatTimestamp(us int64, utc bool) string {
	switch us {
	case math.MaxInt64:
		return "infinity"
	case math.MinInt64:
		return "-infinity"
	}
	days := us / usPerDay
	rest := us % usPerDay
	if rest < 0 {
		days--
		rest += usPerDay
	}
	date := formatDate(days)
	bc := strings.HasSuffix(date, " BC")
	date = strings.TrimSuffix(date, " BC")
	s := date + "T" + formatClock(rest)
	if utc {
		s += "Z"
	}
	if bc {
		s += " BC"
	}
	return s
}

func pad(v int64, n int) string {
	s := strconv.FormatInt(v, 10)
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// trimBlanks drops the trailing spaces that do not count in character(n).
func trimBlanks(s string) string {
	return strings.TrimRight(s, " ")
}
