-- utf8mb4_bin: equality must be exactly the canonical key; a _ci or
-- accent-insensitive collation would merge tags we keep apart.
CREATE TABLE {p}tags (
	id BIGINT AUTO_INCREMENT PRIMARY KEY,
	tag_key VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	count BIGINT NOT NULL DEFAULT 0,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	UNIQUE KEY {p}tags_key (tag_key),
	KEY {p}tags_by_count (count, id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE {p}item_tags (
	item VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	tag_id BIGINT NOT NULL,
	created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (item, tag_id),
	FOREIGN KEY (tag_id) REFERENCES {p}tags (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
