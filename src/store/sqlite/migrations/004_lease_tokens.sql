-- Every claim leases its rows under a random token (lease_token), which its settlements and
-- extensions carry back: they change only the rows still leased under it, so a dispatcher paused past
-- its lease cannot settle what another one has claimed since. lease_owner is the node id; lease_owner,
-- lease_until and lease_token are set and cleared together. Rows leased before this migration have no
-- token: the node that opens the file next releases every lease in it (see `nodes`).
ALTER TABLE deliveries ADD COLUMN lease_token TEXT;

-- The nodes serving this file (one at a time: the data directory's lock), with their heartbeats. A
-- node that joins releases every lease left in the file (a dead process's); one that leaves releases
-- its own; a node whose heartbeat is stale has its leases released by the live one.
CREATE TABLE nodes (
  id TEXT PRIMARY KEY,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
