-- Webhook subscriptions. topic NULL: every topic; event NULL: every type. event_root is the first
-- dot-separated segment of the event pattern ('*' when it starts with a wildcard), so that the
-- hooks matching a published event are found by index, not by reading every hook.
-- kind 'websub': a WebSub subscription (target_url is hub.callback, topic_url is hub.topic, topic the
-- Herald topic its content is published on); it ends at expires_at (its lease).
CREATE TABLE hooks (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL DEFAULT 'webhook',
  target_url TEXT NOT NULL,
  topic TEXT,
  topic_url TEXT,
  event TEXT,
  event_root TEXT,
  -- NULL only for a WebSub subscription without hub.secret (its deliveries are not signed)
  secret TEXT,
  lease_seconds INTEGER,
  expires_at INTEGER,
  -- the secret before the last rotation, still signed with until previous_secret_until
  previous_secret TEXT,
  previous_secret_until INTEGER,
  ordered INTEGER NOT NULL,
  max_in_flight INTEGER NOT NULL,
  rate_limit REAL,
  -- active | paused (deliveries queue up, none are sent) | disabled (nothing is queued)
  state TEXT NOT NULL,
  disabled_reason TEXT,
  -- when the current run of failures began (NULL while the last attempt succeeded)
  failing_since INTEGER,
  description TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE INDEX hooks_by_topic ON hooks (topic) WHERE topic IS NOT NULL;
CREATE INDEX hooks_by_event_root ON hooks (event_root) WHERE topic IS NULL;
-- One WebSub subscription per topic and callback: subscribing again replaces it.
CREATE UNIQUE INDEX websub_by_topic_callback ON hooks (topic_url, target_url) WHERE kind = 'websub';
CREATE INDEX hooks_by_expiry ON hooks (expires_at) WHERE expires_at IS NOT NULL;

-- WebSub verifications of intent, as they went (the admin API shows them; pruned with deliveries).
CREATE TABLE websub_verifications (
  id INTEGER PRIMARY KEY,
  mode TEXT NOT NULL,
  topic_url TEXT NOT NULL,
  callback TEXT NOT NULL,
  -- pending | verified | failed | denied
  state TEXT NOT NULL,
  error TEXT,
  requested_at INTEGER NOT NULL,
  completed_at INTEGER
);

CREATE INDEX websub_verifications_by_topic ON websub_verifications (topic_url, id);

-- One row per (hook, event). state: pending | delivered | failed. A pending row is sent once due_at
-- has passed; due_at NULL means it waits behind an earlier pending row of its ordered queue (the
-- same hook and topic). lease_owner/lease_until mark a row a dispatcher has claimed: another takes
-- it only after the lease ran out (that dispatcher died).
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  hook_id TEXT NOT NULL REFERENCES hooks (id) ON DELETE CASCADE,
  topic_id INTEGER NOT NULL REFERENCES topics (id),
  seq INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  due_at INTEGER,
  lease_owner TEXT,
  lease_until INTEGER,
  last_status INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE UNIQUE INDEX deliveries_by_event ON deliveries (hook_id, topic_id, seq);
-- The pending part of each ordered queue, without the delivered history in front of it.
CREATE INDEX deliveries_queue ON deliveries (hook_id, topic_id, seq) WHERE state = 'pending';
-- The delivery that makes an ordered queue busy: due, waiting for a retry, or at the front of a run
-- in flight (a run keeps due_at on its next unsent delivery). Leases are not indexed: claiming a run
-- writes its rows, not an index.
CREATE INDEX deliveries_queue_busy ON deliveries (hook_id, topic_id) WHERE state = 'pending' AND due_at IS NOT NULL;
-- Only the rows that are due (or waiting for a retry): the rest of an ordered queue waits with
-- due_at NULL and costs this index nothing as it is claimed and settled.
CREATE INDEX deliveries_due ON deliveries (hook_id, due_at) WHERE state = 'pending' AND due_at IS NOT NULL;

-- The attempts log: one row per HTTP attempt. status NULL: no response (error says why).
CREATE TABLE attempts (
  id INTEGER PRIMARY KEY,
  delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  hook_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  at INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  status INTEGER,
  error TEXT,
  response TEXT
);

CREATE INDEX attempts_by_hook ON attempts (hook_id, id);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
