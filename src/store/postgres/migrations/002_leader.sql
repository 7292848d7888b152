-- The leadership of the nodes serving this schema (src/store/postgres/leader.ts): one row, the
-- current lease. expires_at is the database's time (ms since the epoch) at which the lease ends
-- unless renewed; a graceful stop sets it to 0. term grows by one at each new leadership and never
-- goes back, so the row is never deleted.
CREATE TABLE leader (
  id integer PRIMARY KEY CHECK (id = 1),
  node_id text NOT NULL,
  term bigint NOT NULL,
  expires_at bigint NOT NULL
);
