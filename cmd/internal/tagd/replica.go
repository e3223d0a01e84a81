package tagd

import (
	"context"
	"database/sql"
)

// UseReplica makes a read replica of the store's database (a hot standby,
// --db-replica) serve Get and List. Get reads a tag there first and on
// the primary when the replica lacks it, the rule of the library's
// Config.Replica: a standby misses most rows committed a moment before
// (DATABASE-FACTS CL-5), so a miss says nothing. A tag found there may
// show an older count; List may lag the same way. Writes, their answers,
// history and item tags are read on the primary.
func (s *Store) UseReplica(r *sql.DB) { s.replica = r }

func (s *Store) reader() *sql.DB {
	if s.replica != nil {
		return s.replica
	}
	return s.db
}

// getOnReplica looks the key up on the replica; any failure there is a
// miss.
func (s *Store) getOnReplica(ctx context.Context, key string) (Tag, bool) {
	if s.replica == nil {
		return Tag{}, false
	}
	rows, err := s.replica.QueryContext(ctx, s.q("SELECT "+tagCols+" FROM "+s.prefix+"tags WHERE tag_key = ?"), key)
	if err != nil {
		return Tag{}, false
	}
	tags, err := scanTags(rows)
	if err != nil || len(tags) == 0 {
		return Tag{}, false
	}
	return tags[0], true
}
