-- Request budgets shared by the nodes (src/access/rate-limit.ts): rate-limiter-flexible's
-- RateLimiterPostgres table, one row per subject and budget ("100/1:key:<id>"), holding the requests
-- counted in the current window and when it ends (epoch ms). Created here, with the rest of the
-- schema, rather than by the library at the first request.
CREATE TABLE rate_limits (
  key varchar(255) PRIMARY KEY,
  points integer NOT NULL DEFAULT 0,
  expire bigint
);
