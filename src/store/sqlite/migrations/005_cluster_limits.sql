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
