-- Submissions per tag and minute, for the page's chart. Counts before this
-- version go to the minute of each tag's last update, so that a tag's
-- minutes always add up to its count. The driver stores times as Go
-- prints them ("2026-12-01 10:17:56.5 +0000 UTC"), which SQLite's date
-- functions do not read; tagd writes UTC, so the first 19 characters are
-- the UTC time to the second.
CREATE TABLE {p}tag_minutes (
	tag_id INTEGER NOT NULL REFERENCES {p}tags (id),
	unix_minute INTEGER NOT NULL,
	count INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (tag_id, unix_minute));
INSERT INTO {p}tag_minutes (tag_id, unix_minute, count)
SELECT id, unixepoch(substr(updated_at, 1, 19)) / 60, count FROM {p}tags WHERE count > 0
