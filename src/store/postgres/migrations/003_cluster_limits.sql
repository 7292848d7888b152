-- A hook's max_in_flight is counted across the nodes, at each claim, from its runs leased at the time
-- (see PostgresDeliveries.claim). Each run in flight has one leased row that is due: an ordered run's
-- next unsent delivery (its head, then the carry of each settlement), an unordered delivery itself.
-- Only those rows are in this index, so a run costs it an entry as its carry moves, not one per row
-- leased and settled.
CREATE INDEX deliveries_running ON deliveries (hook_id) WHERE lease_owner IS NOT NULL AND due_at IS NOT NULL;
