-- Scoped API keys (/v1/keys). secret_hash is the SHA-256 of the key: the key itself is shown once, at
-- creation, and never stored. scopes and rate_limit are JSON text (read back as they were written);
-- times are epoch ms.
CREATE TABLE api_keys (
  id text PRIMARY KEY,
  name text NOT NULL,
  secret_hash bytea NOT NULL,
  scopes text NOT NULL,
  expires_at bigint,
  rate_limit text,
  created_at bigint NOT NULL,
  created_by text NOT NULL
);
