-- A hook's max_in_flight is counted in the store, at each claim, from its runs leased at the time
-- (see DeliveryTables.claim). Each run in flight has one leased row that is due: an ordered run's
-- next unsent delivery (its head, then the carry of each settlement), an unordered delivery itself.
-- Only those rows are in this index, so a run costs it an entry as its carry moves, not one per row
-- leased and settled.
CREATE INDEX deliveries_running ON deliveries (hook_id) WHERE lease_until IS NOT NULL AND due_at IS NOT NULL;

-- A hook's rate_limit is one token bucket per store (src/delivery/rate-limit.ts): the tokens it held at
-- updated_at (ms), taken from in the claim's transaction. No row: a full bucket.
CREATE TABLE rate_buckets (
  hook_id TEXT PRIMARY KEY REFERENCES hooks (id) ON DELETE CASCADE,
  tokens REAL NOT NULL,
  updated_at INTEGER NOT NULL
);

-- A WebSub verification of intent is durable work: a pending one holds what doing it again needs
-- (lease_seconds, the lease granted; secret, hub.secret, kept like hooks' secrets and only until the
-- verification is done) and who does it until when (lease_owner, the node; lease_token, which its
-- outcome must carry; lease_until). A node that dies mid-verification leaves it to another.
ALTER TABLE websub_verifications ADD COLUMN lease_seconds INTEGER;
ALTER TABLE websub_verifications ADD COLUMN secret TEXT;
ALTER TABLE websub_verifications ADD COLUMN lease_owner TEXT;
ALTER TABLE websub_verifications ADD COLUMN lease_token TEXT;
ALTER TABLE websub_verifications ADD COLUMN lease_until INTEGER;
-- Those a process left pending before cannot be done again (their secret was not kept).
UPDATE websub_verifications SET state = 'failed', completed_at = requested_at,
  error = 'the server stopped during the verification (before verifications were kept in the store)'
  WHERE state = 'pending';
-- The pending ones, by topic and callback: what a node looks for, and what goes before each.
CREATE INDEX websub_verifications_pending ON websub_verifications (topic_url, callback, id) WHERE state = 'pending';
