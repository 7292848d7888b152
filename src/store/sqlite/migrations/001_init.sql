-- Topics own their position: head_seq is read and advanced inside the writing transaction, which is
-- what keeps seq gapless without any in-process counter.
CREATE TABLE topics (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  head_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  retention_max_age_ms INTEGER,
  retention_max_events INTEGER
);

-- body is the event's final JSON (topic and seq included), served to readers as it is.
CREATE TABLE events (
  topic_id INTEGER NOT NULL REFERENCES topics (id),
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  stored_at INTEGER NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (topic_id, seq)
) WITHOUT ROWID;

CREATE UNIQUE INDEX events_by_id ON events (topic_id, id);

-- response is the JSON array of the events the first request stored, returned again on a repeat.
CREATE TABLE idempotency_keys (
  topic_id INTEGER NOT NULL REFERENCES topics (id),
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (topic_id, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
