// Package mapping maps struct fields to columns once per type.
package mapping

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// Field is one mapped struct field.
type Field struct {
	Column string
	Name   string // Go field path, for messages
	Index  []int
	Type   reflect.Type
	// Explicit is set by the tag option `db:"col,explicit"`: the field's
	// value is always inserted, its zero value and a nil pointer (NULL)
	// included, even where the column has a DEFAULT.
	Explicit bool
}

// Options are the tag options a `db` tag may carry after the column name.
var Options = []string{"explicit"}

// Mapping is the column layout of a struct type.
type Mapping struct {
	Type   reflect.Type
	Fields []Field
	byCol  map[string]int
}

// For maps the exported fields of struct type t. A field's column is its
// `db` tag, or its name in snake_case; `db:"-"` skips it. Embedded structs
// without a tag are flattened.
func For(t reflect.Type) (*Mapping, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s is not a struct", t)
	}
	m := &Mapping{Type: t, byCol: map[string]int{}}
	if err := m.walk(t, nil, ""); err != nil {
		return nil, err
	}
	if len(m.Fields) == 0 {
		return nil, fmt.Errorf("%s has no mapped fields", t)
	}
	return m, nil
}

func (m *Mapping) walk(t reflect.Type, index []int, prefix string) error {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("db")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		explicit := false
		for _, o := range strings.Split(opts, ",") {
			switch strings.TrimSpace(o) {
			case "":
			case "explicit":
				explicit = true
			default:
				return fmt.Errorf("field %s: unknown option %q in tag `db:%q` (the options are %s)", prefix+f.Name, o, tag, strings.Join(Options, ", "))
			}
		}
		idx := append(append([]int(nil), index...), i)
		if f.Anonymous && !hasTag && f.Type.Kind() == reflect.Struct {
			if err := m.walk(f.Type, idx, prefix+f.Name+"."); err != nil {
				return err
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = SnakeCase(f.Name)
		}
		if prev, dup := m.byCol[name]; dup {
			return fmt.Errorf("fields %s and %s both map to column %q", m.Fields[prev].Name, prefix+f.Name, name)
		}
		m.byCol[name] = len(m.Fields)
		m.Fields = append(m.Fields, Field{Column: name, Name: prefix + f.Name, Index: idx, Type: f.Type, Explicit: explicit})
	}
	return nil
}

// ForColumns is a mapping of the named columns with no struct behind it:
// enough to check a table and compile its statements, never to read or
// scan values.
func ForColumns(cols []string) *Mapping {
	m := &Mapping{byCol: map[string]int{}}
	for i, c := range cols {
		m.byCol[c] = i
		m.Fields = append(m.Fields, Field{Column: c, Name: c})
	}
	return m
}

// Lookup returns the position of the field mapped to column, or -1.
func (m *Mapping) Lookup(column string) int {
	if i, ok := m.byCol[column]; ok {
		return i
	}
	return -1
}

// Columns lists the mapped columns in field order.
func (m *Mapping) Columns() []string {
	cols := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		cols[i] = f.Column
	}
	return cols
}

// field returns the addressable field i of struct value v.
func (m *Mapping) field(v reflect.Value, i int) reflect.Value {
	idx := m.Fields[i].Index
	if len(idx) == 1 {
		return v.Field(idx[0])
	}
	return v.FieldByIndex(idx)
}

// Addrs appends pointers to every mapped field of *p to dst.
func (m *Mapping) Addrs(p reflect.Value, dst []any) []any {
	v := p.Elem()
	for i := range m.Fields {
		dst = append(dst, m.field(v, i).Addr().Interface())
	}
	return dst
}

// Values appends the value of every mapped field of *p to dst.
func (m *Mapping) Values(p reflect.Value, dst []any) []any {
	v := p.Elem()
	for i := range m.Fields {
		dst = append(dst, m.field(v, i).Interface())
	}
	return dst
}

// FieldOf returns the addressable field i of *p.
func (m *Mapping) FieldOf(p reflect.Value, i int) reflect.Value { return m.field(p.Elem(), i) }

// IsZero reports whether field i of *p holds its type's zero value.
func (m *Mapping) IsZero(p reflect.Value, i int) bool {
	return m.field(p.Elem(), i).IsZero()
}

// IsNull reports whether v is sent to the database as NULL.
func IsNull(v any) bool {
	if v == nil {
		return true
	}
	if val, ok := v.(driver.Valuer); ok {
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer && rv.IsNil() {
			return true
		}
		dv, err := val.Value()
		return err == nil && dv == nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		// A nil []byte (or json.RawMessage) is sent as NULL by the drivers.
		return rv.IsNil()
	}
	return false
}

// SnakeCase turns a Go field name into a column name: CreatedAt -> created_at, ID -> id.
func SnakeCase(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
		} else {
			b.WriteRune(c)
		}
	}
	return b.String()
}
