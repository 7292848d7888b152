import type { HookRecord } from '../store/store.ts'

/**
 * Hooks' rate limits, kept by the dispatcher where it claims: a claim takes at most as many
 * deliveries of a hook as its bucket holds tokens, so that a run is sent without waiting and never
 * outlives its lease on a token wait. Counted per process (each Herald node keeps its own buckets).
 */
export class RateLimits {
  private readonly buckets = new Map<string, TokenBucket>()

  /** Deliveries `hook` may be sent now: Infinity without a rate limit. */
  available(hook: HookRecord, now = performance.now()): number {
    if (hook.rate_limit === null) return Number.POSITIVE_INFINITY
    return this.bucket(hook.id, hook.rate_limit, now).available(now)
  }

  /** Takes `count` tokens from `hook`'s bucket (what a claim took). */
  take(hook: HookRecord, count: number, now = performance.now()): void {
    if (hook.rate_limit === null) return
    this.bucket(hook.id, hook.rate_limit, now).take(count, now)
  }

  private bucket(id: string, rate: number, now: number): TokenBucket {
    let bucket = this.buckets.get(id)
    if (!bucket || bucket.rate !== rate) {
      // Hooks come and go: a full map starts over rather than growing (a bucket refills within a second).
      if (this.buckets.size >= 10_000) this.buckets.clear()
      bucket = new TokenBucket(rate, now)
      this.buckets.set(id, bucket)
    }
    return bucket
  }
}

/** Deliveries per second: a bucket that holds one second's worth (at least one delivery). */
class TokenBucket {
  readonly rate: number
  private readonly size: number
  private tokens: number
  private updated: number

  constructor(rate: number, now: number) {
    this.rate = rate
    this.size = Math.max(1, rate)
    this.tokens = this.size
    this.updated = now
  }

  available(now: number): number {
    this.tokens = Math.min(this.size, this.tokens + ((now - this.updated) / 1000) * this.rate)
    this.updated = now
    return this.tokens
  }

  take(count: number, now: number): void {
    this.tokens = this.available(now) - count
  }
}
