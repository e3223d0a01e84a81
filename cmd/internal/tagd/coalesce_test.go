package tagd_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/getorcreate/getorcreate/cmd/internal/tagd"
	"github.com/getorcreate/getorcreate/internal/testdb"
)

// startCoalescing serves a coalescing store, as tagd runs by default.
func startCoalescing(t *testing.T, d *testdb.DB) (*httptest.Server, string) {
	t.Helper()
	pfx := prefix()
	db := openDSN(t, d, d.DSN, pfx)
	store, err := tagd.OpenStoreCoalescing(context.Background(), db, d.Kind, pfx, true)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tagd.NewServer(store, tagd.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, pfx
}

// TestCoalescedSubmit: on a coalescing store (tagd's default), 48 clients
// POST one new tag at once: one 201, the count and the minutes both 48.
// Then the minutes table refuses writes (a trigger): a POST is still
// answered 200 and counted once, since its tag's write committed, and an
// error would have the client send it again and count it twice.
func TestCoalescedSubmit(t *testing.T) {
	testdb.EachOf(t, []string{"sqlite", "postgres", "mysql"}, func(t *testing.T, d *testdb.DB) {
		srv, pfx := startCoalescing(t, d)
		const clients = 48
		var wg sync.WaitGroup
		var mu sync.Mutex
		status := map[int]int{}
		start := make(chan struct{})
		for range clients {
			wg.Go(func() {
				<-start
				a := postTag(t, srv.URL, "Coalesced")
				mu.Lock()
				status[a.Status]++
				mu.Unlock()
			})
		}
		close(start)
		wg.Wait()
		if status[201] != 1 || status[200] != clients-1 {
			t.Fatalf("answers %v, want one 201 and %d 200", status, clients-1)
		}
		count := func() (tag, minutes int64) {
			t.Helper()
			if err := d.SQL.QueryRow("SELECT count FROM " + pfx + "tags WHERE tag_key = 'coalesced'").Scan(&tag); err != nil {
				t.Fatal(err)
			}
			if err := d.SQL.QueryRow("SELECT COALESCE(SUM(m.count), 0) FROM " + pfx + "tag_minutes m JOIN " + pfx + "tags g ON g.id = m.tag_id WHERE g.tag_key = 'coalesced'").Scan(&minutes); err != nil {
				t.Fatal(err)
			}
			return tag, minutes
		}
		if tag, minutes := count(); tag != clients || minutes != clients {
			t.Fatalf("count %d, minutes %d: want %d each", tag, minutes, clients)
		}

		tm := pfx + "tag_minutes"
		var ddl []string
		switch d.Kind {
		case "sqlite":
			for _, ev := range []string{"INSERT", "UPDATE"} {
				ddl = append(ddl, fmt.Sprintf("CREATE TRIGGER %s_no_%s BEFORE %s ON %s BEGIN SELECT RAISE(ABORT, 'minutes refused'); END", tm, ev, ev, tm))
			}
		case "postgres":
			ddl = []string{
				fmt.Sprintf("CREATE FUNCTION %s_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'minutes refused'; END $$", tm),
				fmt.Sprintf("CREATE TRIGGER %s_no BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s_refuse()", tm, tm, tm),
			}
			t.Cleanup(func() { d.SQL.Exec("DROP FUNCTION IF EXISTS " + tm + "_refuse() CASCADE") })
		case "mysql":
			for _, ev := range []string{"INSERT", "UPDATE"} {
				ddl = append(ddl, fmt.Sprintf("CREATE TRIGGER %s_no_%s BEFORE %s ON %s FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'minutes refused'", tm, ev, ev, tm))
			}
		}
		for _, q := range ddl {
			if _, err := d.SQL.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if a := postTag(t, srv.URL, "Coalesced"); a.Status != 200 {
			t.Fatalf("POST with the minutes refused: %d %s; want 200 (the tag is counted)", a.Status, a.Body)
		}
		if tag, minutes := count(); tag != clients+1 || minutes != clients {
			t.Fatalf("count %d, minutes %d: want %d and %d", tag, minutes, clients+1, clients)
		}
	})
}
