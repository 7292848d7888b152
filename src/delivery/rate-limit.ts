/**
 * Hooks' rate limits, the policy both store backends apply. A hook's `rate_limit` is one token bucket
 * in the store (a row per hook: the tokens it held at `updated_at`, by the store's clock, which is the
 * database's on PostgreSQL), taken from inside the claim's transaction: the nodes of a cluster share
 * one budget. A claim takes at most as many deliveries of a hook as its bucket holds whole tokens, so
 * that a run is sent without waiting and never outlives its lease on a token wait.
 */

/** A hook's bucket as stored: the tokens it held at `updated_at` (ms). */
export interface TokenBucket {
  tokens: number
  updated_at: number
}

/**
 * The tokens a bucket holds at `now` for `rate` deliveries per second: refilled at the rate since it
 * was last taken from, up to one second's worth (at least one delivery); a hook without a bucket yet
 * has a full one. A clock behind the bucket's (another node's, by a few ms) refills nothing.
 */
export function tokensAt(rate: number, bucket: TokenBucket | undefined, now: number): number {
  const size = Math.max(1, rate)
  if (bucket === undefined) return size
  return Math.min(size, bucket.tokens + (Math.max(0, now - bucket.updated_at) / 1000) * rate)
}

/** The bucket once `taken` deliveries are claimed at `now` from the `available` tokens it held then. */
export function afterTaking(
  available: number,
  taken: number,
  bucket: TokenBucket | undefined,
  now: number,
): TokenBucket {
  return { tokens: available - taken, updated_at: Math.max(now, bucket?.updated_at ?? now) }
}
