import type { Agent } from 'undici'
import type { ClaimedDelivery, ClaimedRun, DeliveryOutcome, HookRecord } from '../store/store.ts'
import { post } from './attempt.ts'
import { nextDelay } from './retry.ts'
import { signedHeaders } from './signing.ts'
import { websubDistribution } from './websub.ts'

/**
 * Sending one claimed run: the HTTP side of the dispatcher, with nothing of the Store in it, so that
 * it can run on a worker thread (src/delivery/sender-worker.ts) while the main thread claims and
 * settles. Each delivery of the run is attempted in order; outcomes are reported in batches.
 */

/** A run reports its outcomes in batches of this many, or after this long, whichever comes first. */
const REPORT_BATCH = 256
const REPORT_INTERVAL_MS = 200

export interface SenderConfig {
  retryScheduleMs: number[]
  timeoutMs: number
  /** The WebSub hub's URL, for the Link header of distributions. */
  hubUrl: string
  /** Through the SSRF guard (createGuardedAgent). */
  agent: Agent
}

/**
 * Outcomes known so far; `next` is the run's next unsent delivery, which carries the queue's busy
 * mark once these are settled (see Settlement.carry).
 */
export type ReportBatch = (outcomes: DeliveryOutcome[], next: number) => void

/** The end of a run: its outcomes not reported yet, and the deliveries it did not send. */
export interface RunEnd {
  outcomes: DeliveryOutcome[]
  unsent: number[]
}

/** More of a run, claimed while it is sent; `lastStart` bounds these deliveries as it does the run's. */
export interface RunExtension {
  run: ClaimedRun
  lastStart: number
}

/**
 * Asks for the deliveries that follow `afterSeq` in the run's queue (QueueStore.extendRun);
 * undefined, or none, when the run is to end with what it has.
 */
export type ExtendRun = (afterSeq: number) => Promise<RunExtension | undefined>

/** An extended run asks for more once this many of its deliveries are left to send. */
const EXTEND_WHEN_LEFT = 128
/** An extended run drops the deliveries it sent once there are this many (their bodies with them). */
const FORGET_AFTER = 1024

export class RunSender {
  private readonly config: SenderConfig

  constructor(config: SenderConfig) {
    this.config = config
  }

  /**
   * Sends `run` in order, until it ends, a delivery must wait for a retry (or the hook is gone), it
   * is past `lastStart` (its lease would end during the next attempt) or `stopped()`. Outcomes are
   * reported in batches while the run goes on; the last ones come back with the deliveries it did not
   * send, so that the caller settles them, lets the rest go and advances the queue in one commit.
   *
   * With `extend`, the run asks for more of its queue before it runs out, so that the queue does not
   * wait for a claim between runs; it ends only once an extension brings nothing. An extension asked
   * for is always awaited, and what it brought is sent or returned unsent, never dropped.
   */
  async send(
    run: ClaimedRun,
    lastStart: number,
    report: ReportBatch,
    stopped: () => boolean,
    extend?: ExtendRun,
  ): Promise<RunEnd> {
    let hook = run.hook
    const deliveries = [...run.deliveries]
    // Each delivery's latest start: its own claim's lease bounds it.
    const lastStarts = deliveries.map(() => lastStart)
    const unsent: number[] = []
    let outcomes: DeliveryOutcome[] = []
    let lastReport = performance.now()
    let stop = false
    let more = extend !== undefined
    let extending: Promise<void> | undefined
    const askForMore = (afterSeq: number) => {
      extending = extend!(afterSeq)
        .then(
          (extension) => {
            if (!extension || extension.run.deliveries.length === 0) {
              more = false
              return
            }
            // The hook as it is now: a changed URL or secret applies from here on.
            hook = extension.run.hook
            for (const delivery of extension.run.deliveries) {
              deliveries.push(delivery)
              lastStarts.push(extension.lastStart)
            }
          },
          () => {
            more = false
          },
        )
        .finally(() => {
          extending = undefined
        })
    }
    let index = 0
    for (;;) {
      if (index >= deliveries.length) {
        if (extending === undefined) break
        await extending
        continue
      }
      if (more && extending === undefined && !stop && deliveries.length - index <= EXTEND_WHEN_LEFT) {
        askForMore(deliveries.at(-1)!.seq)
      }
      // What was sent is let go: an extended run may go on for a long time.
      if (index >= FORGET_AFTER) {
        deliveries.splice(0, index)
        lastStarts.splice(0, index)
        index = 0
      }
      const delivery = deliveries[index]!
      if (stop || stopped() || Date.now() > lastStarts[index]!) {
        unsent.push(delivery.id)
        stop = true
        index++
        continue
      }
      const outcome = await this.attempt(hook, delivery)
      index++
      outcomes.push(outcome)
      // An ordered queue waits for a retry; a hook that is gone has nothing more to send.
      if (outcome.result === 'retry' || outcome.result === 'gone') stop = true
      const next = deliveries[index]
      if (
        !stop &&
        next !== undefined &&
        (outcomes.length >= REPORT_BATCH || performance.now() - lastReport >= REPORT_INTERVAL_MS)
      ) {
        report(outcomes, next.id)
        outcomes = []
        lastReport = performance.now()
      }
    }
    return { outcomes, unsent }
  }

  private async attempt(hook: HookRecord, delivery: ClaimedDelivery): Promise<DeliveryOutcome> {
    const base = { id: delivery.id, hookId: hook.id }
    const now = Date.now()
    const skipped = (error: string): DeliveryOutcome => ({
      ...base,
      result: 'failed',
      attempt: { at: now, duration_ms: 0, status: null, error, response: null },
    })
    if (delivery.body === null)
      return skipped('the event was removed by retention before it could be delivered')
    if (hook.expires_at !== null && hook.expires_at <= now)
      return skipped("the WebSub subscription's lease ended")
    const { headers, body } =
      hook.kind === 'websub'
        ? websubDistribution(hook, delivery.body, this.config.hubUrl)
        : webhookDelivery(hook, delivery.event_id, delivery.body, now)
    const result = await post({
      url: hook.target_url,
      headers,
      body,
      timeoutMs: this.config.timeoutMs,
      agent: this.config.agent,
    })
    const { retryAfterMs, header: _header, ...attempt } = result
    if (result.status !== null && result.status >= 200 && result.status < 300) {
      return { ...base, result: 'delivered', attempt }
    }
    if (result.status === 410) return { ...base, result: 'gone', attempt }
    const delay = nextDelay(this.config.retryScheduleMs, delivery.attempts + 1, retryAfterMs)
    if (delay === null) return { ...base, result: 'failed', attempt }
    return { ...base, result: 'retry', attempt, dueAt: Date.now() + delay }
  }
}

/** A webhook delivery: the event's JSON, signed per Standard Webhooks (both secrets while rotating). */
export function webhookDelivery(hook: HookRecord, eventId: string, body: string, now: number) {
  const secrets = [hook.secret!]
  if (hook.previous_secret !== null && (hook.previous_secret_until ?? 0) > now)
    secrets.push(hook.previous_secret)
  const headers = signedHeaders(eventId, body, secrets, now)
  headers['user-agent'] = 'Herald-Webhooks'
  return { headers, body }
}
