import type { Logger } from 'pino'
import type { Agent } from 'undici'
import { ulid } from '../core/event.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type {
  ClaimedDelivery,
  ClaimedRun,
  DeliveryOutcome,
  HookRecord,
  SettleResult,
  Store,
} from '../store/store.ts'
import { post } from './attempt.ts'
import { nextDelay } from './retry.ts'
import { signedHeaders } from './signing.ts'
import { websubDistribution } from './websub.ts'

/**
 * The topic Herald publishes operator events on: delivery.failing (a hook's deliveries began failing),
 * delivery.failed (one was given up), hook.disabled, hook.removed (410).
 */
export const SYSTEM_TOPIC = 'herald.system'

/** Deliveries of one ordered queue claimed at once and sent back to back. */
const RUN_LENGTH = 256
/** A run settles its outcomes in batches of this many, or after this long, whichever comes first. */
const SETTLE_BATCH = 256
const SETTLE_INTERVAL_MS = 200
/** How often the queue is looked at when nothing woke the dispatcher (retries coming due, other nodes). */
const POLL_MS = 1000
/** While due work waits for capacity (in-flight or rate caps), look again this soon at the latest. */
const BUSY_POLL_MS = 100

export interface DispatcherOptions {
  store: Store
  log: TopicLog
  metrics: Metrics
  logger: Logger
  agent: Agent
  retryScheduleMs: number[]
  timeoutMs: number
  concurrency: number
  disableAfterMs: number
  /** The WebSub hub's URL, for the Link header of distributions. */
  hubUrl: string
}

/**
 * Sends webhook deliveries from the Store's durable queue. It claims due deliveries under a lease (so
 * that several dispatchers, on several nodes, never send the same one twice while they live), sends
 * them, and settles each attempt in the Store: delivered, retried later, given up, or the hook gone.
 *
 * Order: an ordered hook's deliveries of one topic come as a run; the next is sent only after the
 * previous succeeded or was given up. A retry stops the run, and the queue waits for that delivery.
 */
export class Dispatcher {
  private readonly options: DispatcherOptions
  /** Distinguishes this dispatcher's leases from other processes'. */
  private readonly owner = `dispatcher-${ulid()}`
  /** The longest a claim is ours: an attempt is never started that could outlive it. */
  private readonly leaseMs: number
  private running = 0
  private readonly runningByHook = new Map<string, number>()
  private readonly rates = new Map<string, TokenBucket>()
  private readonly runs = new Set<Promise<void>>()
  private timer: NodeJS.Timeout | undefined
  private claiming = false
  private wakeAgain = false
  private stopped = false

  /** The attempts counter bound to each outcome once, not looked up per attempt. */
  private readonly attemptCounters: Record<DeliveryOutcome['result'], { inc(): void }>

  constructor(options: DispatcherOptions) {
    this.options = options
    const counter = options.metrics.deliveryAttempts
    this.attemptCounters = {
      delivered: counter.labels('delivered'),
      retry: counter.labels('retry'),
      failed: counter.labels('failed'),
      gone: counter.labels('gone'),
    }
    this.leaseMs = options.timeoutMs * 2 + 5_000
  }

  start(): void {
    this.schedule(0)
  }

  /**
   * New deliveries were created, or a run finished: claim now (in this turn, so that the claim shares
   * the commit of whatever was just written) rather than at the next poll.
   */
  wake(): void {
    if (this.stopped) return
    if (this.claiming) this.wakeAgain = true
    else void this.claim()
  }

  /** Stops claiming and waits for the runs in flight to finish and settle (each attempt is bounded). */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await Promise.allSettled([...this.runs])
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => void this.claim(), Math.max(0, delayMs))
    this.timer.unref()
  }

  private async claim(): Promise<void> {
    if (this.stopped) return
    if (this.claiming) {
      this.wakeAgain = true
      return
    }
    this.claiming = true
    let next = POLL_MS
    try {
      const free = this.options.concurrency - this.running
      const now = Date.now()
      const runs =
        free <= 0
          ? []
          : await this.options.store.claimDeliveries({
              owner: this.owner,
              now,
              leaseMs: this.leaseMs,
              capacity: (hook) => this.capacity(hook),
              runLength: RUN_LENGTH,
              limit: free,
            })
      for (const run of runs) this.track(run)
      const due = await this.options.store.nextDueAt()
      if (due !== null) {
        // Something due that could not be claimed waits for capacity: a finishing run wakes us.
        next = due <= Date.now() ? (runs.length > 0 ? 0 : BUSY_POLL_MS) : Math.min(POLL_MS, due - Date.now())
      }
    } catch (error) {
      this.options.logger.error({ err: error }, 'claiming webhook deliveries failed')
    } finally {
      this.claiming = false
    }
    if (this.wakeAgain) {
      this.wakeAgain = false
      next = 0
    }
    this.schedule(next)
  }

  /** How many more runs this dispatcher may start for `hook` now. */
  private capacity(hook: HookRecord): number {
    const room = hook.max_in_flight - (this.runningByHook.get(hook.id) ?? 0)
    if (hook.rate_limit === null) return room
    return Math.min(room, this.bucket(hook).available())
  }

  private bucket(hook: HookRecord): TokenBucket {
    let bucket = this.rates.get(hook.id)
    if (!bucket || bucket.rate !== hook.rate_limit) {
      bucket = new TokenBucket(hook.rate_limit!)
      this.rates.set(hook.id, bucket)
    }
    return bucket
  }

  private track(run: ClaimedRun): void {
    const id = run.hook.id
    this.running++
    this.runningByHook.set(id, (this.runningByHook.get(id) ?? 0) + 1)
    let released = false
    // Frees the run's slot and looks for more work: called by the run as it settles its last
    // outcomes, so that the next claim joins that settlement's commit (one transaction, not two).
    const finish = () => {
      if (released) return
      released = true
      this.running--
      const left = (this.runningByHook.get(id) ?? 1) - 1
      if (left === 0) this.runningByHook.delete(id)
      else this.runningByHook.set(id, left)
      this.wake()
    }
    const done = this.send(run, finish)
      .catch((error: unknown) => this.options.logger.error({ err: error, hook: id }, 'webhook run failed'))
      .finally(() => {
        finish()
        this.runs.delete(done)
      })
    this.runs.add(done)
  }

  /**
   * Sends a run in order. Outcomes are settled in batches as the run goes (every SETTLE_BATCH, or
   * SETTLE_INTERVAL_MS), without waiting for a commit before the next POST: the Store group-commits
   * them. A crash before a commit means those deliveries are sent again, with the same webhook-id: at
   * least once, never lost.
   */
  private async send(run: ClaimedRun, finish: () => void): Promise<void> {
    const { hook } = run
    const { store, retryScheduleMs, timeoutMs, disableAfterMs } = this.options
    const lastStart = Date.now() + this.leaseMs - timeoutMs - 1_000
    const settling: Array<Promise<SettleResult>> = []
    const released: number[] = []
    let outcomes: DeliveryOutcome[] = []
    let lastSettled = performance.now()
    const settle = (final: boolean, next?: ClaimedDelivery) => {
      const topic = run.deliveries[0]!.topic
      settling.push(
        store.settleDeliveries({
          now: Date.now(),
          outcomes,
          released: final ? released : [],
          advanced: final && hook.ordered ? [{ hookId: hook.id, topic }] : [],
          disableAfterMs,
          ...(next === undefined ? {} : { carry: next.id }),
        }),
      )
      outcomes = []
      lastSettled = performance.now()
    }
    let stop = false
    for (const [index, delivery] of run.deliveries.entries()) {
      if (stop || this.stopped || Date.now() > lastStart) {
        released.push(delivery.id)
        continue
      }
      if (hook.rate_limit !== null) await this.bucket(hook).take()
      const outcome = await this.attempt(hook, delivery, retryScheduleMs)
      this.attemptCounters[outcome.result].inc()
      this.options.metrics.deliveryDuration.observe(outcome.attempt.duration_ms / 1000)
      outcomes.push(outcome)
      if (outcomes.length >= SETTLE_BATCH || performance.now() - lastSettled >= SETTLE_INTERVAL_MS) {
        settle(false, run.deliveries[index + 1])
      }
      if (outcome.result === 'failed') this.announceFailed(hook, delivery, outcome)
      // An ordered queue waits for a retry; a hook that is gone has nothing more to send.
      if (outcome.result === 'retry' || outcome.result === 'gone') stop = true
    }
    settle(true)
    finish()
    for (const result of await Promise.all(settling)) {
      for (const failing of result.failing) {
        const why = `deliveries to ${failing.target_url} began failing; they are retried on the schedule`
        this.announce('delivery.failing', failing, why)
      }
      for (const disabled of result.disabled)
        this.announce('hook.disabled', disabled, disabled.disabled_reason)
      for (const removed of result.removed)
        this.announce('hook.removed', removed, 'the target answered 410 Gone')
    }
  }

  private async attempt(
    hook: HookRecord,
    delivery: ClaimedDelivery,
    scheduleMs: number[],
  ): Promise<DeliveryOutcome> {
    const base = { id: delivery.id, hookId: hook.id }
    if (delivery.body === null) {
      const at = Date.now()
      const error = 'the event was removed by retention before it could be delivered'
      return {
        ...base,
        result: 'failed',
        attempt: { at, duration_ms: 0, status: null, error, response: null },
      }
    }
    const now = Date.now()
    if (hook.expires_at !== null && hook.expires_at <= now) {
      const error = "the WebSub subscription's lease ended"
      return {
        ...base,
        result: 'failed',
        attempt: { at: now, duration_ms: 0, status: null, error, response: null },
      }
    }
    const { headers, body } =
      hook.kind === 'websub'
        ? websubDistribution(hook, delivery.body, this.options.hubUrl)
        : webhookDelivery(hook, delivery.event_id, delivery.body, now)
    const result = await post({
      url: hook.target_url,
      headers,
      body,
      timeoutMs: this.options.timeoutMs,
      agent: this.options.agent,
    })
    const { retryAfterMs, ...attempt } = result
    if (result.status !== null && result.status >= 200 && result.status < 300) {
      return { ...base, result: 'delivered', attempt }
    }
    if (result.status === 410) return { ...base, result: 'gone', attempt }
    const delay = nextDelay(scheduleMs, delivery.attempts + 1, retryAfterMs)
    if (delay === null) return { ...base, result: 'failed', attempt }
    return { ...base, result: 'retry', attempt, dueAt: Date.now() + delay }
  }

  private announceFailed(hook: HookRecord, delivery: ClaimedDelivery, outcome: DeliveryOutcome): void {
    // Never about the system topic's own deliveries: a failing hook on it would feed itself.
    if (delivery.topic === SYSTEM_TOPIC) return
    this.publish('delivery.failed', {
      hook_id: hook.id,
      target_url: hook.target_url,
      delivery_id: delivery.id,
      event_id: delivery.event_id,
      topic: delivery.topic,
      seq: delivery.seq,
      attempts: delivery.attempts + 1,
      last_status: outcome.attempt.status,
      last_error: outcome.attempt.error,
    })
  }

  private announce(type: string, hook: HookRecord, reason: string | null): void {
    this.options.logger.warn({ hook: hook.id, target_url: hook.target_url, reason }, type)
    this.publish(type, { hook_id: hook.id, target_url: hook.target_url, reason })
  }

  private publish(type: string, data: Record<string, unknown>): void {
    this.options.log
      .publish(SYSTEM_TOPIC, [{ type, source: '/herald', data }])
      .catch((error: unknown) =>
        this.options.logger.error({ err: error, type }, 'publishing a system event failed'),
      )
  }
}

/** A webhook delivery: the event's JSON, signed per Standard Webhooks (both secrets while rotating). */
function webhookDelivery(hook: HookRecord, eventId: string, body: string, now: number) {
  const secrets = [hook.secret!]
  if (hook.previous_secret !== null && (hook.previous_secret_until ?? 0) > now)
    secrets.push(hook.previous_secret)
  const headers = signedHeaders(eventId, body, secrets, now)
  headers['user-agent'] = 'Herald-Webhooks'
  return { headers, body }
}

/** Deliveries per second for one hook: a bucket that holds at most one second's worth. */
class TokenBucket {
  readonly rate: number
  private tokens: number
  private updated = performance.now()

  constructor(rate: number) {
    this.rate = rate
    this.tokens = Math.max(1, rate)
  }

  private refill(): void {
    const now = performance.now()
    this.tokens = Math.min(Math.max(1, this.rate), this.tokens + ((now - this.updated) / 1000) * this.rate)
    this.updated = now
  }

  /** Whole tokens available now (how many runs may start). */
  available(): number {
    this.refill()
    return Math.floor(this.tokens)
  }

  /** Waits for a token and takes it. */
  async take(): Promise<void> {
    for (;;) {
      this.refill()
      if (this.tokens >= 1) {
        this.tokens -= 1
        return
      }
      await new Promise((resolve) => setTimeout(resolve, ((1 - this.tokens) / this.rate) * 1000))
    }
  }
}
