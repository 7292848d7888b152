-- Herald's tables in PostgreSQL. The same model as the SQLite store (src/store/sqlite/migrations):
-- times are milliseconds since the epoch (bigint), the event JSON is stored as the text served.

-- Topics own their position: head_seq is read and advanced under the topic row's lock inside the
-- writing transaction, which keeps seq gapless with any number of nodes (never a sequence: a
-- rolled-back transaction would leave a gap).
CREATE TABLE topics (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- "C": names sort byte by byte, as in SQLite, whatever the database's collation.
  name text COLLATE "C" NOT NULL UNIQUE,
  head_seq bigint NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  retention_max_age_ms bigint,
  retention_max_events bigint
);

-- body is the event's final JSON (topic and seq included). source is set only for events whose id
-- the client supplied (CloudEvents identifies an event by source and id together).
CREATE TABLE events (
  topic_id bigint NOT NULL REFERENCES topics (id),
  seq bigint NOT NULL,
  id text NOT NULL,
  source text,
  stored_at bigint NOT NULL,
  body text NOT NULL,
  PRIMARY KEY (topic_id, seq)
);

CREATE UNIQUE INDEX events_by_source_id ON events (topic_id, source, id) WHERE source IS NOT NULL;

-- response is the JSON array of the events the first request stored, returned again on a repeat.
CREATE TABLE idempotency_keys (
  topic_id bigint NOT NULL REFERENCES topics (id),
  key text NOT NULL,
  request_hash text NOT NULL,
  response text NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (topic_id, key)
);

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- Webhook subscriptions and WebSub subscriptions (kind 'websub'), as in SQLite's 002_hooks.sql.
CREATE TABLE hooks (
  id text PRIMARY KEY,
  kind text NOT NULL DEFAULT 'webhook',
  target_url text NOT NULL,
  topic text,
  topic_url text,
  event text,
  event_root text,
  secret text,
  lease_seconds bigint,
  expires_at bigint,
  previous_secret text,
  previous_secret_until bigint,
  ordered boolean NOT NULL,
  max_in_flight integer NOT NULL,
  rate_limit double precision,
  state text NOT NULL,
  disabled_reason text,
  failing_since bigint,
  description text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE INDEX hooks_by_topic ON hooks (topic) WHERE topic IS NOT NULL;
CREATE INDEX hooks_by_event_root ON hooks (event_root) WHERE topic IS NULL;
CREATE UNIQUE INDEX websub_by_topic_callback ON hooks (topic_url, target_url) WHERE kind = 'websub';
CREATE INDEX hooks_by_expiry ON hooks (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE websub_verifications (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  mode text NOT NULL,
  topic_url text NOT NULL,
  callback text NOT NULL,
  state text NOT NULL,
  error text,
  requested_at bigint NOT NULL,
  completed_at bigint
);

CREATE INDEX websub_verifications_by_topic ON websub_verifications (topic_url, id);

-- One row per (hook, event), as in SQLite. A claimed row carries lease_owner (the node), lease_token
-- (the claim: every settlement is fenced by it) and lease_until (database time, ms).
CREATE TABLE deliveries (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  hook_id text NOT NULL REFERENCES hooks (id) ON DELETE CASCADE,
  topic_id bigint NOT NULL REFERENCES topics (id),
  seq bigint NOT NULL,
  event_id text NOT NULL,
  state text NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  due_at bigint,
  lease_owner text,
  lease_token text,
  lease_until bigint,
  last_status integer,
  last_error text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);

CREATE UNIQUE INDEX deliveries_by_event ON deliveries (hook_id, topic_id, seq);
CREATE INDEX deliveries_queue ON deliveries (hook_id, topic_id, seq) WHERE state = 'pending';
CREATE INDEX deliveries_queue_busy ON deliveries (hook_id, topic_id) WHERE state = 'pending' AND due_at IS NOT NULL;
CREATE INDEX deliveries_due ON deliveries (hook_id, due_at) WHERE state = 'pending' AND due_at IS NOT NULL;
-- Leases by node: a dead node's rows are found without reading every pending row.
CREATE INDEX deliveries_leased ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE attempts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  delivery_id bigint NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  hook_id text NOT NULL,
  attempt integer NOT NULL,
  at bigint NOT NULL,
  duration_ms double precision NOT NULL,
  status integer,
  error text,
  response text
);

CREATE INDEX attempts_by_hook ON attempts (hook_id, id);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);

-- The nodes serving this database. A node holds a session-level advisory lock (lock_key) on one of
-- its connections while it lives: a killed process loses its session, so its death is seen at once;
-- heartbeat_at (database time, ms) catches a node that is alive but stopped (SIGSTOP, a frozen VM).
CREATE TABLE nodes (
  id text PRIMARY KEY,
  lock_key integer NOT NULL,
  started_at bigint NOT NULL,
  heartbeat_at bigint NOT NULL
);
