import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import type pg from 'pg'
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
  RateLimiterRes,
  RLWrapperTimeouts,
} from 'rate-limiter-flexible'
import { errors, type HeraldError } from '../core/errors.ts'
import { clientKey } from '../http/socket-guards.ts'
import { createPool } from '../store/postgres/database.ts'
import type { Principal, RateLimit } from './principal.ts'
import { rateText } from './rate.ts'

/**
 * Request budgets (HERALD_RATE_LIMIT, and a key's own `rate_limit`), counted by rate-limiter-flexible:
 * a fixed window of `seconds` that opens at a subject's first request and allows `points` requests.
 *
 * Who is counted (the subject): a scoped key by its id, a signed token by its `sub` (by the client
 * address when it has none), an anonymous client (open mode, or a WebSocket that has not
 * authenticated yet) by its address (IPv6: its /64). The root key (HERALD_API_KEY) is never counted:
 * it is the operator's own, and the way back in when a budget is set too low.
 *
 * Where the counts live: in this process on SQLite (one node); in Redis when the cluster's bus is
 * Redis; else in PostgreSQL when the store is (table `rate_limits` of Herald's schema). Shared
 * counts make one budget hold across every node. When Redis or PostgreSQL cannot answer within
 * STORE_TIMEOUT_MS, the request is counted in this process instead (an insurance limiter of the same
 * budget): an outage loosens a budget to one per node, never to a 500, never to no limit.
 */

/** Where the counts are kept. */
export type RateBackend =
  | { kind: 'memory' }
  | { kind: 'redis'; url: string; prefix: string }
  | { kind: 'postgres'; url: string; schema: string }

/** The outcome of one counted request. */
export interface RateVerdict {
  allowed: boolean
  /** Which budget counted it: `default` (HERALD_RATE_LIMIT) or `key` (the key's own `rate_limit`). */
  policy: 'default' | 'key'
  /** Requests the budget allows per window. */
  limit: number
  /** The window, in seconds. */
  windowSeconds: number
  /** Requests left in the current window. */
  remaining: number
  /** Whole seconds until the window ends (at least 1). */
  resetSeconds: number
}

/** Longest a shared store may take to count a request before this process counts it instead. */
const STORE_TIMEOUT_MS = 1_000
/**
 * Distinct budgets (points per window) with a limiter at once. Every key may have its own; past this
 * the least recently used limiter is dropped (on Redis and PostgreSQL its counts stay in the store).
 */
const MAX_BUDGETS = 256
/** Connections of the PostgreSQL counter pool: one statement per request, no transactions. */
const POSTGRES_CONNECTIONS = 3
/** How often expired rows are deleted from `rate_limits` (each node does it; it is idempotent). */
const POSTGRES_SWEEP_MS = 5 * 60_000
/** A `sub` longer than this is counted by its digest: the key of a count stays short. */
const MAX_SUB_LENGTH = 64

interface Budget {
  rate: RateLimit
  limiter: RateLimiterAbstract
  /** The per-process limiter of the same budget (the limiter itself on the memory backend). */
  insurance: RateLimiterMemory
}

interface Logger {
  warn(fields: object, message: string): void
  info(fields: object, message: string): void
}

/** The backend a configuration asks for: Redis with a Redis bus, else PostgreSQL with a database URL, else memory. */
export function rateBackendOf(config: {
  busUrl: string | undefined
  databaseUrl: string | undefined
  databaseSchema: string
}): RateBackend {
  const { busUrl, databaseUrl, databaseSchema } = config
  if (busUrl !== undefined && (busUrl.startsWith('redis://') || busUrl.startsWith('rediss://'))) {
    // Named after the schema, as the bus channel is: two clusters on one Redis never share counts.
    return { kind: 'redis', url: busUrl, prefix: `herald:${databaseSchema}:rl` }
  }
  if (databaseUrl !== undefined) return { kind: 'postgres', url: databaseUrl, schema: databaseSchema }
  return { kind: 'memory' }
}

export class RateLimits {
  readonly backend: RateBackend
  private readonly defaultRate: RateLimit | null
  private readonly logger: Logger | undefined
  /** By `points/seconds`, in order of last use (a Map keeps insertion order). */
  private readonly budgets = new Map<string, Budget>()
  private redis: Redis | undefined
  private pool: pg.Pool | undefined
  private sweep: NodeJS.Timeout | undefined
  /** Settles once the Redis connection is ready, or STORE_TIMEOUT_MS after it was opened. */
  private opened: Promise<void> = Promise.resolve()
  private closed = false

  constructor(options: { defaultRate: RateLimit | null; backend: RateBackend; logger?: Logger }) {
    this.defaultRate = options.defaultRate
    this.backend = options.backend
    this.logger = options.logger
    // With a default budget nearly every request is counted: connect now rather than at the first.
    if (this.defaultRate !== null) this.openStore()
  }

  /** The budget `principal`'s requests are counted against, or null when none applies. */
  budgetOf(principal: Principal | undefined): { rate: RateLimit; policy: 'default' | 'key' } | null {
    if (principal?.kind === 'root') return null
    if (principal?.kind === 'key' && principal.rateLimit !== null) {
      return { rate: principal.rateLimit, policy: 'key' }
    }
    return this.defaultRate === null ? null : { rate: this.defaultRate, policy: 'default' }
  }

  /**
   * Counts one request of `principal` (undefined: a client that has not authenticated) from the
   * client address `ip`. Undefined when no budget applies (the root key, or no budget set).
   */
  /**
   * Refused credentials (a 401) count against the client address's budget, on every route and at a
   * WebSocket upgrade: guessing keys is a request too. Throws the 429 once past it.
   */
  async countRefusal(ip: string): Promise<void> {
    const verdict = await this.consume(undefined, ip)
    if (verdict !== undefined && !verdict.allowed) throw rateLimitedError(verdict)
  }

  async consume(principal: Principal | undefined, ip: string): Promise<RateVerdict | undefined> {
    const budget = this.budgetOf(principal)
    if (budget === null || this.closed) return undefined
    const { rate, policy } = budget
    const subject = subjectOf(principal, ip)
    const limiters = this.limiterOf(rate)
    await this.opened
    let allowed: boolean
    let result: RateLimiterRes
    try {
      result = await limiters.limiter.consume(subject)
      allowed = true
    } catch (error) {
      if (error instanceof RateLimiterRes) {
        result = error
        allowed = false
      } else {
        // Not a verdict: a failure past the insurance (it is in memory; this should not happen).
        // Counted there all the same rather than answered 500 or let through.
        this.logger?.warn({ err: error }, 'rate limit store failed: counting in this process')
        ;[allowed, result] = await limiters.insurance.consume(subject).then(
          (res) => [true, res] as const,
          (res: unknown) =>
            [false, res instanceof RateLimiterRes ? res : new RateLimiterRes(0, 1000)] as const,
        )
      }
    }
    return {
      allowed,
      policy,
      limit: rate.points,
      windowSeconds: rate.seconds,
      remaining: allowed ? Math.max(0, result.remainingPoints) : 0,
      resetSeconds: Math.max(1, Math.ceil(result.msBeforeNext / 1000)),
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.sweep)
    this.budgets.clear()
    this.redis?.disconnect()
    await this.pool?.end().catch(() => {})
  }

  private limiterOf(rate: RateLimit): Budget {
    const name = `${rate.points}/${rate.seconds}`
    let budget = this.budgets.get(name)
    if (budget !== undefined) {
      this.budgets.delete(name) // moved to the end: the most recently used
      this.budgets.set(name, budget)
      return budget
    }
    if (this.budgets.size >= MAX_BUDGETS) this.budgets.delete(this.budgets.keys().next().value!)
    budget = this.createBudget(rate, name)
    this.budgets.set(name, budget)
    return budget
  }

  private createBudget(rate: RateLimit, name: string): Budget {
    const base = { points: rate.points, duration: rate.seconds, keyPrefix: name }
    const insurance = new RateLimiterMemory(base)
    if (this.backend.kind === 'memory') return { rate, limiter: insurance, insurance }
    this.openStore()
    const store =
      this.backend.kind === 'redis'
        ? new RateLimiterRedis({
            ...base,
            keyPrefix: `${this.backend.prefix}:${name}`,
            storeClient: this.redis,
            // Down or reconnecting: counted in this process at once, not queued.
            rejectIfRedisNotReady: true,
          })
        : new RateLimiterPostgres({
            ...base,
            storeClient: this.pool,
            storeType: 'pool',
            schemaName: this.backend.schema,
            // Created by migration 005 (src/store/postgres/migrations/), with the rest of the schema.
            tableName: 'rate_limits',
            tableCreated: true,
            // One sweep for every budget (they share the table), below, instead of one timer each.
            clearExpiredByTimeout: false,
          })
    // A store that fails, or hangs (a partition, a full pool), which is no better, passes the request
    // to the insurance. Only the wrapper has it: a store that fails after the timeout must not have
    // the same request counted there a second time.
    const limiter = new RLWrapperTimeouts({
      limiter: store,
      timeoutMs: STORE_TIMEOUT_MS,
      insuranceLimiter: insurance,
    })
    return { rate, limiter: limiter as unknown as RateLimiterAbstract, insurance }
  }

  /** The store's client, opened at the first budget that needs it. */
  private openStore(): void {
    if (this.backend.kind === 'redis' && this.redis === undefined) {
      const redis = new Redis(this.backend.url, {
        // Never queue while disconnected: the request is counted in this process instead.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        retryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
        connectTimeout: 5_000,
      })
      this.redis = redis
      let down = false
      // Unheard, an error would end the process; reported once per outage.
      redis.on('error', (error: Error) => {
        if (down || this.closed) return
        down = true
        this.logger?.warn(
          { reason: error.message },
          'rate limits: Redis is out of reach; each node counts its own requests until it is back',
        )
      })
      redis.on('ready', () => {
        if (!down) return
        down = false
        this.logger?.info({}, 'rate limits: Redis is back; budgets are shared again')
      })
      this.opened = new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer)
          redis.off('ready', done)
          resolve()
        }
        const timer = setTimeout(done, STORE_TIMEOUT_MS)
        redis.once('ready', done)
      })
    }
    if (this.backend.kind === 'postgres' && this.pool === undefined) {
      const pool = createPool({
        url: this.backend.url,
        schema: this.backend.schema,
        maxConnections: POSTGRES_CONNECTIONS,
      })
      this.pool = pool
      const table = `${this.backend.schema}.rate_limits`
      this.sweep = setInterval(() => {
        pool.query(`DELETE FROM ${table} WHERE expire < $1`, [Date.now()]).catch(() => {})
      }, POSTGRES_SWEEP_MS)
      this.sweep.unref()
    }
  }
}

/** Who a request is counted against: `key:<id>`, `sub:<sub>` or `ip:<address>`. */
export function subjectOf(principal: Principal | undefined, ip: string): string {
  if (principal?.kind === 'key') return `key:${principal.id}`
  if (principal?.kind === 'token' && principal.sub !== undefined && principal.sub !== '') {
    const sub = principal.sub
    // A long sub by its digest, under a prefix of its own (no short sub can name a digest's count).
    return sub.length <= MAX_SUB_LENGTH
      ? `sub:${sub}`
      : `subh:${createHash('sha256').update(sub).digest('base64url')}`
  }
  return `ip:${clientKey(ip)}`
}

/**
 * `RateLimit-Policy` and `RateLimit` (IETF httpapi draft "RateLimit header fields", structured
 * fields): the budget and what is left of it. Sent on every counted answer, the 429 included.
 */
export function rateLimitHeaders(verdict: RateVerdict): Record<string, string> {
  return {
    'RateLimit-Policy': `"${verdict.policy}";q=${verdict.limit};w=${verdict.windowSeconds}`,
    RateLimit: `"${verdict.policy}";r=${verdict.remaining};t=${verdict.resetSeconds}`,
  }
}

/** The 429 of a request over its budget: problem+json, `Retry-After` and the budget's headers. */
export function rateLimitedError(verdict: RateVerdict): HeraldError {
  const whose = verdict.policy === 'key' ? "this key's own budget" : 'the budget of these credentials'
  return errors.rateLimited(
    `Over ${whose}: ${rateText({ points: verdict.limit, seconds: verdict.windowSeconds })}. Try again in ${verdict.resetSeconds} s.`,
    undefined,
    { 'Retry-After': String(verdict.resetSeconds), ...rateLimitHeaders(verdict) },
  )
}
