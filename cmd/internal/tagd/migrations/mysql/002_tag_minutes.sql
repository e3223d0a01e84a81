-- Submissions per tag and minute, for the page's chart. Counts before this
-- version go to the minute of each tag's last update, so that a tag's
-- minutes always add up to its count. TIMESTAMPDIFF, not UNIX_TIMESTAMP:
-- the DATETIME columns hold UTC, whatever the session's time zone.
CREATE TABLE {p}tag_minutes (
	tag_id BIGINT NOT NULL,
	unix_minute BIGINT NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (tag_id, unix_minute),
	FOREIGN KEY (tag_id) REFERENCES {p}tags (id)) ENGINE=InnoDB;
INSERT INTO {p}tag_minutes (tag_id, unix_minute, count)
SELECT id, TIMESTAMPDIFF(MINUTE, '1970-01-01 00:00:00', updated_at), count FROM {p}tags WHERE count > 0
