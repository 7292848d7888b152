-- Presence (src/streams/presence.ts): one row per WebSocket member of a topic, shared by the nodes.
-- `client` is the socket's server-made id; `node_id` the node holding the socket, which pushes
-- `expires_at` forward while it lives, so that a dead node's members are ignored (and deleted) once it
-- passes; `info` is the member's JSON text. Times are epoch ms by the database's clock.
CREATE TABLE presence (
  topic text NOT NULL,
  client text NOT NULL,
  node_id text NOT NULL,
  sub text,
  info text,
  since bigint NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (topic, client)
);
CREATE INDEX presence_node ON presence (node_id);
CREATE INDEX presence_expiry ON presence (expires_at);
