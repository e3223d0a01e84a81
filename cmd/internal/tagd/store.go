package tagd

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/getorcreate/getorcreate"
)

// ErrNotFound is returned for an unknown tag or item.
var ErrNotFound = errors.New("not found")

// MaxTagsPerItem bounds one PUT /api/items/{item}/tags request.
const MaxTagsPerItem = 100

// Tag is one row of the tags table.
type Tag struct {
	ID        int64     `db:"id" json:"id"`
	Key       string    `db:"tag_key" json:"key"`
	Name      string    `db:"name" json:"name"`
	Count     int64     `db:"count" json:"count"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
	UpdatedAt time.Time `db:"updated_at" json:"updated_at"`
}

// itemTag links an item to a tag; its primary key (item, tag_id) is what
// makes counting each tag once per item race-free.
type itemTag struct {
	Item      string    `db:"item"`
	TagID     int64     `db:"tag_id"`
	CreatedAt time.Time `db:"created_at"`
}

// tagMinute counts a tag's submissions in one minute; a tag's minutes add
// up to its count.
type tagMinute struct {
	TagID      int64 `db:"tag_id"`
	UnixMinute int64 `db:"unix_minute"` // Unix time / 60
	Count      int64 `db:"count"`
}

// MaxHistoryMinutes is the longest history GET /api/tags/{key}/history
// returns.
const MaxHistoryMinutes = 1440

// Attached is one tag of a PUT /api/items/{item}/tags answer.
type Attached struct {
	Tag
	Created  bool `json:"created"`  // this request created the tag
	Attached bool `json:"attached"` // this request attached it to the item
}

// Store keeps tags and item links in one database, on the getorcreate
// library. It is safe for concurrent use, and several processes may share
// one database.
type Store struct {
	db      *sql.DB
	kind    string
	prefix  string
	tags    *getorcreate.Table[Tag]
	links   *getorcreate.Table[itemTag]
	minutes *getorcreate.Table[tagMinute]
	// requests is the ledger of Idempotency-Keys: a keyed write and its
	// answer are recorded in one transaction.
	requests *getorcreate.Ledger
	// lib counts what the library's calls did, from its Tracer.
	lib *libraryTracer
	// replica, when set, serves Get and List (see UseReplica).
	replica *sql.DB
	// coalesce: the tables coalesce (OpenStoreCoalescing), and Submit uses
	// the calls that do.
	coalesce bool
}

// Coalescing reports whether the store's tables coalesce concurrent calls.
func (s *Store) Coalescing() bool { return s.coalesce }

var prefixRE = regexp.MustCompile(`^[a-z0-9_]{0,32}$`)

// OpenStore migrates the schema (tables named with prefix, which may be
// empty) and returns a Store. kind is the dsn.Parsed kind: "sqlite",
// "postgres" or "mysql".
func OpenStore(ctx context.Context, db *sql.DB, kind, prefix string) (*Store, error) {
	return OpenStoreCoalescing(ctx, db, kind, prefix, false)
}

// OpenStoreCoalescing is OpenStore with getorcreate's Config.Coalesce set on
// its tables when coalesce is: Submit then sends the tag's and its minute's
// counts as two coalesced calls, which concurrent submissions share.
func OpenStoreCoalescing(ctx context.Context, db *sql.DB, kind, prefix string, coalesce bool) (*Store, error) {
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("tagd: table prefix %q: use at most 32 of a-z, 0-9 and _", prefix)
	}
	if err := migrate(ctx, db, kind, prefix); err != nil {
		return nil, err
	}
	s := &Store{db: db, kind: kind, prefix: prefix, lib: newLibraryTracer(prefix), coalesce: coalesce}
	var err error
	open := func(table string, key ...string) getorcreate.Config {
		return getorcreate.Config{Table: prefix + table, Key: key, Tracer: s.lib, Coalesce: coalesce}
	}
	if s.tags, err = getorcreate.OpenConfig[Tag](ctx, db, open("tags", "tag_key")); err != nil {
		return nil, fmt.Errorf("tagd: %w", err)
	}
	if s.links, err = getorcreate.OpenConfig[itemTag](ctx, db, open("item_tags", "item", "tag_id")); err != nil {
		return nil, fmt.Errorf("tagd: %w", err)
	}
	if s.minutes, err = getorcreate.OpenConfig[tagMinute](ctx, db, open("tag_minutes", "tag_id", "unix_minute")); err != nil {
		return nil, fmt.Errorf("tagd: %w", err)
	}
	// The ledger's DDL comes from the library (it is the library's table);
	// CREATE ... IF NOT EXISTS is safe for processes starting together.
	if s.requests, err = getorcreate.CreateLedger(ctx, db, prefix+"tagd_requests"); err != nil {
		return nil, fmt.Errorf("tagd: %w", err)
	}
	return s, nil
}

// DB returns the store's database handle.
func (s *Store) DB() *sql.DB { return s.db }

// Kind returns the database kind: "sqlite", "postgres" or "mysql".
func (s *Store) Kind() string { return s.kind }

// Tables returns the names of the store's tables, for tests and tools that
// clean up after themselves.
func (s *Store) Tables() []string { return TableNames(s.prefix) }

// TableNames returns the names of the tables a store with this prefix
// creates, in an order they can be dropped in (referencing tables first).
func TableNames(prefix string) []string {
	return []string{prefix + "tag_minutes", prefix + "item_tags", prefix + "tags", prefix + "tagd_requests", prefix + "tagd_schema"}
}

// now is truncated to microseconds, the precision all three databases keep,
// so a row written and read back compares equal.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Outcome reports how a get-or-create went, for metrics.
type Outcome struct {
	Created  bool
	Attempts int  // the attempts of its transaction
	Raced    bool // another request created the tag between this one's lookup and insert
}

// Submit counts one submission of name: it creates the tag with count 1, or
// adds one to its count, and adds one to the tag's current minute, in one
// transaction of two race-free UpdateOrCreate calls (the tag row first,
// then its minute, the order every writer takes, so they cannot deadlock on
// each other's rows).
//
// On a coalescing store the two are coalesced calls of their own, each in
// the library's own transaction, the tag's first: concurrent submissions
// share their statements, but a failure between them (the minute's write
// failing after the tag's committed) leaves the tag counted and the minute
// not, and the tag's count is a total that the minutes then undercount by
// one.
func (s *Store) Submit(ctx context.Context, name string) (Tag, Outcome, error) {
	if s.coalesce {
		return s.submitCoalesced(ctx, name)
	}
	var tag Tag
	var o Outcome
	attempts := 0
	err := getorcreate.RunTx(ctx, s.db, nil, func(tx *sql.Tx) error {
		attempts++ // RunTx reruns the whole function on a retryable error
		var err error
		tag, o, err = s.SubmitTx(ctx, tx, name)
		return err
	})
	if err != nil {
		return Tag{}, Outcome{}, err
	}
	o.Attempts = attempts
	return tag, o, nil
}

// SubmitTx is Submit inside the caller's transaction: the tag's count and
// its current minute's, in that order (the tag row is locked first, as in
// Attach, so two transactions cannot wait for each other).
func (s *Store) SubmitTx(ctx context.Context, tx *sql.Tx, name string) (Tag, Outcome, error) {
	key, display, err := Canonical(name)
	if err != nil {
		return Tag{}, Outcome{}, err
	}
	t := now()
	ctx, rec := withCallRecord(ctx)
	res, err := s.tags.UpdateOrCreateTx(ctx, tx,
		Tag{Key: key, Name: display, Count: 1, CreatedAt: t, UpdatedAt: t},
		getorcreate.Add("count", 1), getorcreate.Set("updated_at", t))
	if err != nil {
		return Tag{}, Outcome{}, err
	}
	if _, err := s.minutes.UpdateOrCreateTx(ctx, tx, tagMinute{res.Row.ID, unixMinute(t), 1}, getorcreate.Add("count", 1)); err != nil {
		return Tag{}, Outcome{}, err
	}
	return utc(res.Row), Outcome{Created: res.Created, Attempts: 1, Raced: rec.raced()}, nil
}

func (s *Store) submitCoalesced(ctx context.Context, name string) (Tag, Outcome, error) {
	key, display, err := Canonical(name)
	if err != nil {
		return Tag{}, Outcome{}, err
	}
	t := now()
	ctx, rec := withCallRecord(ctx)
	res, err := s.tags.UpdateOrCreate(ctx,
		Tag{Key: key, Name: display, Count: 1, CreatedAt: t, UpdatedAt: t},
		getorcreate.Add("count", 1), getorcreate.Set("updated_at", t))
	if err != nil {
		return Tag{}, Outcome{}, err
	}
	if _, err := s.minutes.UpdateOrCreate(ctx, tagMinute{res.Row.ID, unixMinute(t), 1}, getorcreate.Add("count", 1)); err != nil {
		return Tag{}, Outcome{}, err
	}
	return utc(res.Row), Outcome{Created: res.Created, Attempts: res.Attempts, Raced: rec.raced()}, nil
}

// Once runs fn at most once per request id (see getorcreate.Ledger.Once):
// tagd keeps there the answers to requests sent with an Idempotency-Key.
func (s *Store) Once(ctx context.Context, id, fingerprint string, fn func(tx *sql.Tx) ([]byte, error)) ([]byte, bool, error) {
	return s.requests.Once(ctx, id, fingerprint, fn)
}

// ExpireRequests forgets the Idempotency-Keys recorded before the given
// time, and says how many.
func (s *Store) ExpireRequests(ctx context.Context, before time.Time) (int64, error) {
	return s.requests.Expire(ctx, before)
}

func unixMinute(t time.Time) int64 { return t.Unix() / 60 }

// History returns the submissions of the tag named name in each of the
// last minutes minutes up to now.
func (s *Store) History(ctx context.Context, name string, minutes int, at time.Time) (HistoryAnswer, error) {
	if minutes < 1 || minutes > MaxHistoryMinutes {
		return HistoryAnswer{}, inputErrorf("invalid_minutes", "minutes must be 1 to %d", MaxHistoryMinutes)
	}
	tag, err := s.Get(ctx, name)
	if err != nil {
		return HistoryAnswer{}, err
	}
	last := unixMinute(at)
	first := last - int64(minutes) + 1
	rows, err := s.db.QueryContext(ctx, s.q("SELECT unix_minute, count FROM "+s.prefix+"tag_minutes WHERE tag_id = ? AND unix_minute BETWEEN ? AND ?"), tag.ID, first, last)
	if err != nil {
		return HistoryAnswer{}, err
	}
	defer rows.Close()
	h := HistoryAnswer{Key: tag.Key, Name: tag.Name, Minutes: minutes, Start: time.Unix(first*60, 0).UTC(), Counts: make([]int64, minutes)}
	for rows.Next() {
		var m, c int64
		if err := rows.Scan(&m, &c); err != nil {
			return HistoryAnswer{}, err
		}
		h.Counts[m-first] = c
	}
	return h, rows.Err()
}

// Get returns the tag whose key is the canonical form of name.
func (s *Store) Get(ctx context.Context, name string) (Tag, error) {
	// Not Canonical: a key can be longer than a name, since folding can
	// lengthen it ("ß" folds to "ss").
	d, err := clean("tag key", name)
	if err != nil {
		return Tag{}, err
	}
	if d == "" || utf8.RuneCountInString(d) > 3*MaxNameLen {
		return Tag{}, ErrNotFound
	}
	key := foldKey(d)
	if t, ok := s.getOnReplica(ctx, key); ok {
		return t, nil
	}
	rows, err := s.db.QueryContext(ctx, s.q("SELECT "+tagCols+" FROM "+s.prefix+"tags WHERE tag_key = ?"), key)
	if err != nil {
		return Tag{}, err
	}
	tags, err := scanTags(rows)
	if err != nil {
		return Tag{}, err
	}
	if len(tags) == 0 {
		return Tag{}, ErrNotFound
	}
	return tags[0], nil
}

// List returns up to limit tags whose key starts with the canonical form of
// prefix, by count descending then id, starting after cursor, and the cursor
// of the next page ("" when there is none). The cursor is the last tag's
// (count, id): a page never repeats a tag, but one whose count changes
// between pages can move across the cursor.
func (s *Store) List(ctx context.Context, prefix string, limit int, cursor string) ([]Tag, string, error) {
	p, err := canonicalPrefix(prefix)
	if err != nil {
		return nil, "", err
	}
	if limit < 1 || limit > 100 {
		return nil, "", inputErrorf("invalid_limit", "limit must be 1 to 100")
	}
	q := "SELECT " + tagCols + " FROM " + s.prefix + "tags WHERE tag_key LIKE ? ESCAPE '!'"
	args := []any{likeEscape(p) + "%"}
	if cursor != "" {
		c, id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		q += " AND (count < ? OR (count = ? AND id > ?))"
		args = append(args, c, c, id)
	}
	q += " ORDER BY count DESC, id ASC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.reader().QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, "", err
	}
	tags, err := scanTags(rows)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(tags) > limit {
		tags = tags[:limit]
		last := tags[limit-1]
		next = encodeCursor(last.Count, last.ID)
	}
	return tags, next, nil
}

// Attach attaches the named tags to item in one transaction, creating
// unknown tags and adding one to the count of each tag newly attached.
// Names with the same key count once. Attaching again changes nothing:
// the (item, tag) link is the get-or-create that decides who counts.
func (s *Store) Attach(ctx context.Context, item string, names []string) ([]Attached, []Outcome, error) {
	var out []Attached
	var outcomes []Outcome
	attempts := 0
	err := getorcreate.RunTx(ctx, s.db, nil, func(tx *sql.Tx) error {
		attempts++ // RunTx reruns the whole function on a retryable error
		var err error
		out, outcomes, err = s.AttachTx(ctx, tx, item, names)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for i := range outcomes {
		outcomes[i].Attempts = attempts
	}
	return out, outcomes, nil
}

// AttachTx is Attach inside the caller's transaction.
func (s *Store) AttachTx(ctx context.Context, tx *sql.Tx, item string, names []string) ([]Attached, []Outcome, error) {
	item, err := cleanItem(item)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 || len(names) > MaxTagsPerItem {
		return nil, nil, inputErrorf("invalid_tags", "tags must list 1 to %d tag names, got %d", MaxTagsPerItem, len(names))
	}
	var rows []Tag
	seen := map[string]bool{}
	for i, n := range names {
		key, display, err := Canonical(n)
		if err != nil {
			ie := err.(*InputError)
			return nil, nil, inputErrorf(ie.Code, "tags[%d]: %s", i, ie.Message)
		}
		if !seen[key] {
			seen[key] = true
			rows = append(rows, Tag{Key: key, Name: display})
		}
	}
	var out []Attached
	var outcomes []Outcome
	t := now()
	for i := range rows {
		rows[i].CreatedAt, rows[i].UpdatedAt = t, t
	}
	// An update that changes nothing, rather than GetOrCreateManyTx:
	// it write-locks the tag rows now, in the library's key order.
	// Reading them here and writing their counts below would let two
	// requests each hold a shared lock the other needs to upgrade, which
	// MariaDB breaks as a deadlock.
	got, err := s.tags.UpdateOrCreateManyTx(ctx, tx, rows, getorcreate.Add("count", 0))
	if err != nil {
		return nil, nil, err
	}
	links := make([]itemTag, len(got))
	for i, r := range got {
		links[i] = itemTag{Item: item, TagID: r.Row.ID, CreatedAt: t}
	}
	linked, err := s.links.GetOrCreateManyTx(ctx, tx, links)
	if err != nil {
		return nil, nil, err
	}
	out, outcomes = make([]Attached, len(got)), make([]Outcome, len(got))
	var inc []Tag
	var incAt []int
	for i, r := range got {
		out[i] = Attached{Tag: utc(r.Row), Created: r.Created, Attached: linked[i].Created}
		outcomes[i] = Outcome{Created: r.Created, Attempts: 1}
		if linked[i].Created {
			inc = append(inc, Tag{Key: r.Row.Key, Name: r.Row.Name, Count: 1, CreatedAt: t, UpdatedAt: t})
			incAt = append(incAt, i)
		}
	}
	if len(inc) == 0 {
		return out, outcomes, nil
	}
	// Only the links this transaction created add to a count, so a
	// repeated or concurrent identical request counts nothing twice.
	upd, err := s.tags.UpdateOrCreateManyTx(ctx, tx, inc, getorcreate.Add("count", 1), getorcreate.Set("updated_at", t))
	if err != nil {
		return nil, nil, err
	}
	mins := make([]tagMinute, len(upd))
	for j, r := range upd {
		out[incAt[j]].Tag = utc(r.Row)
		mins[j] = tagMinute{r.Row.ID, unixMinute(t), 1}
	}
	// The tag rows are locked above; their minutes come after them, as
	// in Submit.
	_, err = s.minutes.UpdateOrCreateManyTx(ctx, tx, mins, getorcreate.Add("count", 1))
	if err != nil {
		return nil, nil, err
	}
	return out, outcomes, nil
}

// ItemTags returns the tags attached to item, by key.
func (s *Store) ItemTags(ctx context.Context, item string) ([]Tag, error) {
	item, err := cleanItem(item)
	if err != nil {
		return nil, err
	}
	q := "SELECT t.id, t.tag_key, t.name, t.count, t.created_at, t.updated_at FROM " + s.prefix + "item_tags it JOIN " +
		s.prefix + "tags t ON t.id = it.tag_id WHERE it.item = ? ORDER BY t.tag_key"
	rows, err := s.db.QueryContext(ctx, s.q(q), item)
	if err != nil {
		return nil, err
	}
	tags, err := scanTags(rows)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, ErrNotFound
	}
	return tags, nil
}

const tagCols = "id, tag_key, name, count, created_at, updated_at"

func scanTags(rows *sql.Rows) ([]Tag, error) {
	defer rows.Close()
	tags := []Tag{}
	for rows.Next() {
		var t Tag
		if err := rows.Scan(&t.ID, &t.Key, &t.Name, &t.Count, &t.CreatedAt, &t.UpdatedAt); err != nil {
			return nil, err
		}
		tags = append(tags, utc(t))
	}
	return tags, rows.Err()
}

func utc(t Tag) Tag {
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return t
}

// q rewrites ? placeholders for PostgreSQL. The queries here hold no other
// question marks.
func (s *Store) q(query string) string {
	if s.kind != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func likeEscape(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

func encodeCursor(count, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(count, 10) + ":" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (count, id int64, err error) {
	bad := inputErrorf("invalid_cursor", "cursor is not one this server returned")
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, bad
	}
	cs, is, ok := strings.Cut(string(b), ":")
	if !ok {
		return 0, 0, bad
	}
	if count, err = strconv.ParseInt(cs, 10, 64); err != nil {
		return 0, 0, bad
	}
	if id, err = strconv.ParseInt(is, 10, 64); err != nil {
		return 0, 0, bad
	}
	return count, id, nil
}
