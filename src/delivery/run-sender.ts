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
   */
  async send(
    run: ClaimedRun,
    lastStart: number,
    report: ReportBatch,
    stopped: () => boolean,
  ): Promise<RunEnd> {
    const { hook } = run
    const unsent: number[] = []
    let outcomes: DeliveryOutcome[] = []
    let lastReport = performance.now()
    let stop = false
    for (const [index, delivery] of run.deliveries.entries()) {
      if (stop || stopped() || Date.now() > lastStart) {
        unsent.push(delivery.id)
        continue
      }
      const outcome = await this.attempt(hook, delivery)
      outcomes.push(outcome)
      // An ordered queue waits for a retry; a hook that is gone has nothing more to send.
      if (outcome.result === 'retry' || outcome.result === 'gone') stop = true
      const next = run.deliveries[index + 1]
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
function webhookDelivery(hook: HookRecord, eventId: string, body: string, now: number) {
  const secrets = [hook.secret!]
  if (hook.previous_secret !== null && (hook.previous_secret_until ?? 0) > now)
    secrets.push(hook.previous_secret)
  const headers = signedHeaders(eventId, body, secrets, now)
  headers['user-agent'] = 'Herald-Webhooks'
  return { headers, body }
}
