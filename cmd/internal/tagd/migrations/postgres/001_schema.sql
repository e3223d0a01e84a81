CREATE TABLE {p}tags (
	id BIGSERIAL PRIMARY KEY,
	tag_key TEXT NOT NULL,
	name TEXT NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	CONSTRAINT {p}tags_key UNIQUE (tag_key));
CREATE INDEX {p}tags_by_count ON {p}tags (count DESC, id);
CREATE TABLE {p}item_tags (
	item TEXT NOT NULL,
	tag_id BIGINT NOT NULL REFERENCES {p}tags (id),
	created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	PRIMARY KEY (item, tag_id))
