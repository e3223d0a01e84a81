-- Submissions per tag and minute, for the page's chart. Counts before this
-- version go to the minute of each tag's last update, so that a tag's
-- minutes always add up to its count.
CREATE TABLE {p}tag_minutes (
	tag_id BIGINT NOT NULL REFERENCES {p}tags (id),
	unix_minute BIGINT NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (tag_id, unix_minute));
INSERT INTO {p}tag_minutes (tag_id, unix_minute, count)
SELECT id, floor(extract(epoch FROM updated_at) / 60)::bigint, count FROM {p}tags WHERE count > 0
