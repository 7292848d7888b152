-- Scoped API keys (/v1/keys). secret_hash is the SHA-256 of the key: the key itself is shown once, at
-- creation, and never stored. scopes and rate_limit are JSON; times are epoch ms.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  secret_hash BLOB NOT NULL,
  scopes TEXT NOT NULL,
  expires_at INTEGER,
  rate_limit TEXT,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL
);
