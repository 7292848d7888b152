-- Presence (src/streams/presence.ts): one row per WebSocket member of a topic. `client` is the socket's
-- server-made id; `node_id` the node holding the socket, which pushes `expires_at` forward while it
-- lives (a row past it is ignored and deleted); `info` is the member's JSON text. Times are epoch ms.
CREATE TABLE presence (
  topic TEXT NOT NULL,
  client TEXT NOT NULL,
  node_id TEXT NOT NULL,
  sub TEXT,
  info TEXT,
  since INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (topic, client)
);
CREATE INDEX presence_node ON presence (node_id);
CREATE INDEX presence_expiry ON presence (expires_at);
