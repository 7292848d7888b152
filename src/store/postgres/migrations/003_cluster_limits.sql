-- A hook's max_in_flight is counted across the nodes, at each claim, from its runs leased at the time
-- (see PostgresDeliveries.claim). Each run in flight has one leased row that is due: an ordered run's
-- next unsent delivery (its head, then the carry of each settlement), an unordered delivery itself.
-- Only those rows are in this index, so a run costs it an entry as its carry moves, not one per row
-- leased and settled.
CREATE INDEX deliveries_running ON deliveries (hook_id) WHERE lease_owner IS NOT NULL AND due_at IS NOT NULL;

-- A hook's rate_limit is one token bucket for all the nodes (src/delivery/rate-limit.ts): the tokens it
-- held at updated_at (database time, ms), taken from in the claim's transaction, under the hook's lock.
-- No row: a full bucket.
CREATE TABLE rate_buckets (
  hook_id text PRIMARY KEY REFERENCES hooks (id) ON DELETE CASCADE,
  tokens double precision NOT NULL,
  updated_at bigint NOT NULL
);

-- A WebSub verification of intent is durable work: a pending one holds what doing it again needs
-- (lease_seconds, the lease granted; secret, hub.secret, kept like hooks' secrets and only until the
-- verification is done) and which node does it until when (lease_owner, lease_token, which its
-- outcome must carry, lease_until, database time). A node that dies mid-verification leaves it to
-- another.
ALTER TABLE websub_verifications ADD COLUMN lease_seconds bigint, ADD COLUMN secret text,
  ADD COLUMN lease_owner text, ADD COLUMN lease_token text, ADD COLUMN lease_until bigint;
-- Those a process left pending before cannot be done again (their secret was not kept).
UPDATE websub_verifications SET state = 'failed', completed_at = requested_at,
  error = 'the server stopped during the verification (before verifications were kept in the store)'
  WHERE state = 'pending';
-- The pending ones, by topic and callback: what a node looks for, and what goes before each.
CREATE INDEX websub_verifications_pending ON websub_verifications (topic_url, callback, id) WHERE state = 'pending';
