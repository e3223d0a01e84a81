package getorcreate

import (
	"database/sql"
	"database/sql/driver"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/getorcreate/getorcreate/dialect"
	"github.com/getorcreate/getorcreate/internal/mapping"
)

// A key must reach the database as the value it will be stored and
// compared as. Where the database would change it (cut it to the column's
// length, pad it, round it, convert a string to a number or a number to a
// string), the lookup and the unique index see two different values: the
// lookup misses the stored row, the insert collides with it, and the call
// loops, or returns another key's row. So Open refuses a key field whose Go
// type the column would convert, and each call checks the key's value
// against the column's length, width and precision before it sends
// anything. The checks read what the dialect found in the column
// (dialect.Column's Kind, Length, Fixed, Bits, Digits); a column of a kind
// the dialect does not describe is left to the database.

// goKind is the kind of value a Go type sends.
type goKind uint8

const (
	goUnknown goKind = iota // sent as the driver decides; not checked
	goString
	goBytes
	goInt
	goUint
	goFloat
	goBool
	goTime
	goDynamic // an interface or a driver.Valuer: known only from the value
)

func (k goKind) String() string {
	return [...]string{"a value", "a string", "a []byte", "an integer", "an unsigned integer", "a float", "a bool", "a time.Time", "a value"}[k]
}

var (
	timeType   = reflect.TypeOf(time.Time{})
	valuerType = reflect.TypeOf((*driver.Valuer)(nil)).Elem()
	sqlNulls   = map[reflect.Type]reflect.Type{
		reflect.TypeOf(sql.NullString{}):  reflect.TypeOf(""),
		reflect.TypeOf(sql.NullInt64{}):   reflect.TypeOf(int64(0)),
		reflect.TypeOf(sql.NullInt32{}):   reflect.TypeOf(int32(0)),
		reflect.TypeOf(sql.NullInt16{}):   reflect.TypeOf(int16(0)),
		reflect.TypeOf(sql.NullByte{}):    reflect.TypeOf(byte(0)),
		reflect.TypeOf(sql.NullFloat64{}): reflect.TypeOf(float64(0)),
		reflect.TypeOf(sql.NullBool{}):    reflect.TypeOf(false),
		reflect.TypeOf(sql.NullTime{}):    timeType,
	}
)

// goKindOf returns the kind of value a field of type t sends, and its
// width in bits for numbers.
func goKindOf(t reflect.Type) (goKind, int) {
	if t == nil {
		return goUnknown, 0
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return goTime, 0
	}
	if v, ok := sqlNulls[t]; ok {
		return goKindOf(v)
	}
	if t.PkgPath() == "database/sql" && strings.HasPrefix(t.Name(), "Null[") {
		if f, ok := t.FieldByName("V"); ok {
			return goKindOf(f.Type)
		}
	}
	if t.Implements(valuerType) || reflect.PointerTo(t).Implements(valuerType) {
		return goDynamic, 0
	}
	switch t.Kind() {
	case reflect.String:
		return goString, 0
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return goBytes, 0
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return goInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return goUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		return goFloat, t.Bits()
	case reflect.Bool:
		return goBool, 0
	case reflect.Interface:
		return goDynamic, 0
	}
	return goUnknown, 0
}

// fits reports whether a value of kind k (bits wide) reaches column c as
// the same value, and if not, why.
func fits(k goKind, bits int, c *dialect.Column) (ok bool, why string) {
	if c.Kind == dialect.KindOther || k == goUnknown || k == goDynamic {
		return true, ""
	}
	switch c.Kind {
	case dialect.KindText:
		switch k {
		case goString:
			return true, ""
		case goBytes:
			return false, "a byte string is compared by its bytes, not in the column's collation, so the lookup and the unique index could disagree on which keys are equal"
		case goInt, goUint, goFloat, goBool:
			return false, "the database would compare the column with a number as numbers (MariaDB: '012' and '12abc' equal 12, 'abc' equals 0) or store the number's text, so another key's row could come back"
		}
	case dialect.KindBinary:
		if k == goString || k == goBytes {
			return true, ""
		}
	case dialect.KindInt, dialect.KindDecimal:
		switch k {
		case goInt, goUint, goBool:
			return true, ""
		case goString:
			return false, "the database would convert the string to a number ('12abc' finds or stores 12, '12.9' stores 13, ' 12 ' is 12), so another key's row could come back"
		case goFloat:
			return false, "the database would round the number to the column's scale, so the key stored is not the key looked up"
		}
	case dialect.KindFloat:
		if k == goFloat && bits <= c.Bits {
			return true, ""
		}
		if k == goFloat {
			return false, "the database would round the number to 32 bits, and the rounded key never equals the one looked up"
		}
	case dialect.KindBool:
		if k == goBool {
			return true, ""
		}
	case dialect.KindTime, dialect.KindDate:
		if k == goTime {
			return true, ""
		}
		if k == goString {
			return false, "the database would parse the string as a time, in its own formats and time zone"
		}
	}
	return false, "the database would convert it to the column's type"
}

// goTypeFor names the Go type that sends what column c holds, for fixes.
func goTypeFor(c *dialect.Column) string {
	switch c.Kind {
	case dialect.KindText:
		return "string"
	case dialect.KindBinary:
		return "[]byte"
	case dialect.KindInt:
		if c.Unsigned {
			return "uint64"
		}
		return "int64"
	case dialect.KindDecimal:
		return "an integer type (whole numbers), or a type implementing driver.Valuer that sends the exact number"
	case dialect.KindFloat:
		if c.Bits == 32 {
			return "float32"
		}
		return "float64"
	case dialect.KindBool:
		return "bool"
	case dialect.KindTime, dialect.KindDate:
		return "time.Time"
	}
	return "a type the column holds"
}

// keyCheck checks one key column's value in every call.
type keyCheck struct {
	pos  int // in the mapping
	col  *dialect.Column
	kind goKind
}

// checkKeyTypes refuses key fields whose Go type the column would convert,
// and prepares the per-call checks.
func (t *tableCore) checkKeyTypes(cfg Config, schema *dialect.Schema) error {
	for _, pos := range t.keyPos {
		f := t.m.Fields[pos]
		c := schema.Column(f.Column)
		k, bits := goKindOf(f.Type)
		if ok, why := fits(k, bits, c); !ok {
			return &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: ErrKeyAltered,
				Problem: fmt.Sprintf("key field %s is %s (%s) and column %q is %s: %s", f.Name, k, f.Type, c.Name, c.Type, why),
				Fix:     fmt.Sprintf("make field %s %s", f.Name, goTypeFor(c))}
		}
		t.keyChecks = append(t.keyChecks, keyCheck{pos: pos, col: c, kind: k})
	}
	return nil
}

// checkTimes refuses time.Time fields that would not come back as the
// instants they were: on a column that is not a date and time (the
// drivers return its text, which a time.Time cannot hold), or on a
// connection the dialect found cannot return them.
func (t *tableCore) checkTimes(cfg Config, schema *dialect.Schema) error {
	for i, f := range t.m.Fields {
		k, _ := goKindOf(f.Type)
		if k == goDynamic {
			t.timePos = append(t.timePos, i) // bound in UTC if it holds a time
		}
		if k != goTime {
			continue
		}
		t.timePos = append(t.timePos, i)
		c := schema.Column(f.Column)
		switch {
		case c.Kind != dialect.KindTime && c.Kind != dialect.KindDate && c.Kind != dialect.KindOther:
			return &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: ErrMapping,
				Problem: fmt.Sprintf("field %s is a time.Time and column %q is %s: the driver would read it back as text or a number, which a time.Time cannot hold", f.Name, c.Name, c.Type),
				Fix:     fmt.Sprintf("declare column %q as a date and time type (on SQLite: DATETIME or TIMESTAMP, which modernc.org/sqlite reads back as time.Time), or change the field's type", c.Name)}
		case c.TimeProblem != "":
			problem, fix, _ := strings.Cut(c.TimeProblem, ": ")
			return &SchemaError{Table: cfg.Table, Key: cfg.Key, Kind: ErrMapping,
				Problem: fmt.Sprintf("field %s is a time.Time on column %q, and %s", f.Name, c.Name, problem), Fix: fix}
		}
	}
	return nil
}

// bindTimes sends every time.Time in UTC, without its monotonic reading:
// the instant is kept, and the value the database sees no longer depends
// on the zone the caller happened to use. PostgreSQL's timestamp without
// time zone keeps a time's wall clock and drops its zone, SQLite stores
// the text the driver formats (so 10:00Z and 12:00+02:00 would be two
// keys), and MariaDB's driver converts to its loc anyway.
func (t *tableCore) bindTimes(values []any) {
	for _, pos := range t.timePos {
		values[pos] = utcValue(values[pos])
	}
}

func utcValue(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC()
	case *time.Time:
		if x != nil {
			u := x.UTC()
			return &u
		}
	case sql.NullTime:
		x.Time = x.Time.UTC()
		return x
	case *sql.NullTime:
		if x != nil {
			u := *x
			u.Time = u.Time.UTC()
			return &u
		}
	case sql.Null[time.Time]:
		x.V = x.V.UTC()
		return x
	}
	return v
}

// checkKeys checks a call's key values, already bound (bindTimes), before
// anything is sent.
func (t *tableCore) checkKeys(op string, values []any) error {
	for _, kc := range t.keyChecks {
		v := values[kc.pos]
		if mapping.IsNull(v) {
			continue
		}
		if err := kc.check(v); err != nil {
			return &Error{Op: op, Table: t.name, Kind: ErrKeyAltered, Input: -1, Err: err}
		}
	}
	return nil
}

// plainValue is what v sends: a driver.Valuer's value, a pointer's target.
func plainValue(v any) any {
	if dv, ok := v.(driver.Valuer); ok {
		if x, err := dv.Value(); err == nil {
			v = x
		}
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.IsValid() {
		return rv.Interface()
	}
	return v
}

func (kc keyCheck) check(v any) error {
	c := kc.col
	v = plainValue(v)
	if kc.kind == goDynamic {
		k, bits := goKindOf(reflect.TypeOf(v))
		if k == goTime {
			v = utcValue(v)
		}
		if ok, why := fits(k, bits, c); !ok {
			return fmt.Errorf("key column %q (%s) is given %s, %s: %s", c.Name, c.Type, k, show(v), why)
		}
	}
	rv := reflect.ValueOf(v)
	switch c.Kind {
	case dialect.KindText, dialect.KindBinary:
		var s string
		switch rv.Kind() {
		case reflect.String:
			s = rv.String()
		case reflect.Slice:
			s = string(rv.Bytes())
		default:
			return nil
		}
		n, unit := utf8.RuneCountInString(s), "characters"
		if c.Kind == dialect.KindBinary {
			n, unit = len(s), "bytes"
		}
		switch {
		case c.Length > 0 && n > c.Length:
			return fmt.Errorf("%w: key column %q (%s) holds at most %d %s, and %s has %d: it would be cut, or refused", ErrValueTooLong, c.Name, c.Type, c.Length, unit, show(v), n)
		case c.Fixed == dialect.PadsSpaces && n < c.Length:
			return fmt.Errorf("key column %q (%s) would store %s padded with spaces to %d characters, and return it so", c.Name, c.Type, show(v), c.Length)
		case c.Fixed == dialect.PadsZeros && n < c.Length:
			return fmt.Errorf("key column %q (%s) would store %s padded with zero bytes to %d bytes, where no lookup of it finds it", c.Name, c.Type, show(v), c.Length)
		case c.Fixed == dialect.TrimsSpaces && strings.HasSuffix(s, " "):
			return fmt.Errorf("key column %q (%s) would return %s without its trailing spaces", c.Name, c.Type, show(v))
		}
	case dialect.KindInt:
		if c.Bits == 0 {
			return nil
		}
		var lo int64
		hi := uint64(math.MaxUint64) >> (64 - c.Bits)
		if !c.Unsigned {
			hi >>= 1
			lo = -int64(hi) - 1
		}
		var out bool
		switch {
		case rv.CanInt():
			x := rv.Int()
			out = x < lo || x > 0 && uint64(x) > hi
		case rv.CanUint():
			out = rv.Uint() > hi
		}
		if out {
			return fmt.Errorf("%w: key column %q (%s) cannot hold %s: it would be refused, or clamped to its limit", ErrInvalidValue, c.Name, c.Type, show(v))
		}
	case dialect.KindTime, dialect.KindDate:
		tm, ok := v.(time.Time)
		if !ok {
			return nil
		}
		if c.Kind == dialect.KindDate {
			if tm.Hour() != 0 || tm.Minute() != 0 || tm.Second() != 0 || tm.Nanosecond() != 0 {
				return fmt.Errorf("key column %q (%s) keeps the day only, and %s has a time of day (in UTC): use the day at midnight UTC", c.Name, c.Type, show(v))
			}
			return nil
		}
		if unit := time.Duration(math.Pow10(9 - min(9, max(0, c.Digits)))); tm.Nanosecond()%int(unit) != 0 {
			return fmt.Errorf("key column %q (%s) keeps %d fractional digits of a second, and %s has more: it would be rounded; truncate the key first, as with t.Truncate(%v)", c.Name, c.Type, c.Digits, show(v), unit)
		}
	}
	return nil
}

// show formats a key value for a message, cut short when it is long.
func show(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		if len(x) > 32 {
			return fmt.Sprintf("%x... (%d bytes)", x[:32], len(x))
		}
		return fmt.Sprintf("%x", x)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	default:
		return fmt.Sprintf("%v", v)
	}
	if utf8.RuneCountInString(s) > 48 {
		r := []rune(s)
		return fmt.Sprintf("%q...", string(r[:48]))
	}
	return fmt.Sprintf("%q", s)
}
