import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { Agent } from 'undici'
import { logFailure } from '../core/errors.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type {
  ClaimedDelivery,
  ClaimedRun,
  DeliveryOutcome,
  HookRecord,
  QueueStore,
  Settlement,
  SettleResult,
  Store,
} from '../store/store.ts'
import { type ExtendRun, type ReportBatch, type RunEnd, RunSender } from './run-sender.ts'
import type { ToWorker, WorkerConfig } from './sender-worker.ts'

/**
 * The topic Herald publishes operator events on: delivery.failing (a hook's deliveries began failing),
 * delivery.failed (one was given up), hook.disabled, hook.removed (410).
 */
export const SYSTEM_TOPIC = 'herald.system'

/**
 * Deliveries of one ordered queue claimed at once and sent back to back; a run in flight claims its
 * next this many before it runs out (see RunSender.send), so its queue never waits between runs.
 */
const RUN_LENGTH = 256
/** How often the queue is looked at when nothing woke the dispatcher (retries coming due, other nodes). */
const POLL_MS = 1000
/** While due work waits for capacity (in-flight or rate caps), look again this soon at the latest. */
const BUSY_POLL_MS = 100

export interface DispatcherOptions {
  /** The queue, and the store's clock its times are compared on. */
  store: QueueStore & Pick<Store, 'now'>
  /**
   * This node's id (src/cluster/node.ts): the owner of its leases, which are released when the node
   * stops, starts again, or is found dead by another node's heartbeat.
   */
  nodeId: string
  log: TopicLog
  metrics: Metrics
  logger: Logger
  /** For sending on the main thread (workers: 0); a worker makes its own, through the same guard. */
  agent: Agent
  allowPrivateTargets: boolean
  /**
   * 1: sign and send on a worker thread, so that the main thread's claims and settlements (and the
   * rest of the server) run beside the HTTP work; 0: all on the main thread.
   */
  workers: 0 | 1
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
 * Each settlement and extension of a run carries its claim's lease token (ClaimedRun.lease): once the
 * lease is rescued (this node was paused past it, and found dead), what this dispatcher reports
 * changes nothing that another one holds.
 *
 * Order: an ordered hook's deliveries of one topic come as a run; the next is sent only after the
 * previous succeeded or was given up. A retry stops the run, and the queue waits for that delivery.
 */
export class Dispatcher {
  private readonly options: DispatcherOptions
  /** The node this dispatcher's leases belong to. */
  private readonly owner: string
  /** The longest a claim is ours: an attempt is never started that could outlive it. */
  private readonly leaseMs: number
  private running = 0
  private readonly transport: RunTransport
  private readonly runs = new Set<Promise<void>>()
  private timer: NodeJS.Timeout | undefined
  /** The claim in flight, if any (stop() waits for it). */
  private claiming: Promise<void> | undefined
  private wakeAgain = false
  private stopped = false

  /** The attempts counter bound to each outcome once, not looked up per attempt. */
  private readonly attemptCounters: Record<DeliveryOutcome['result'], { inc(): void }>

  constructor(options: DispatcherOptions) {
    this.options = options
    this.owner = options.nodeId
    const counter = options.metrics.deliveryAttempts
    this.attemptCounters = {
      delivered: counter.labels('delivered'),
      retry: counter.labels('retry'),
      failed: counter.labels('failed'),
      gone: counter.labels('gone'),
    }
    const sending = {
      retryScheduleMs: options.retryScheduleMs,
      timeoutMs: options.timeoutMs,
      hubUrl: options.hubUrl,
    }
    this.transport =
      options.workers === 1
        ? new WorkerTransport(
            {
              ...sending,
              allowPrivateTargets: options.allowPrivateTargets,
              connectTimeoutMs: Math.min(10_000, options.timeoutMs),
            },
            options.logger,
          )
        : new InProcessTransport(new RunSender({ ...sending, agent: options.agent }))
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
    this.transport.stop()
    // A claim in flight lets its runs go (it sees `stopped`) before the runs are counted.
    await this.claiming
    await Promise.allSettled([...this.runs])
    await this.transport.close()
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
    let done: () => void = () => {}
    this.claiming = new Promise<void>((resolve) => {
      done = resolve
    })
    let next = POLL_MS
    try {
      // A hook's max_in_flight is counted by the store, across the nodes, from the runs leased now
      // (this node's among them). A count of this process's own runs would add nothing: a run is
      // leased rows until its last settlement is issued, which is also when it leaves `running`; only
      // a run whose lease was lost goes on unleased, and the store rightly no longer counts it. Its
      // rate_limit is the store's too: one bucket for every node, taken from in the claim.
      const free = this.options.concurrency - this.running
      const now = this.options.store.now()
      const runs =
        free <= 0
          ? []
          : await this.options.store.claimDeliveries({
              owner: this.owner,
              now,
              leaseMs: this.leaseMs,
              runLength: RUN_LENGTH,
              limit: free,
            })
      if (this.stopped) {
        // stop() came while the claim was in flight: these runs are let go, not started.
        await this.releaseClaimed(runs)
        return
      }
      for (const run of runs) this.track(run)
      const due = await this.options.store.nextDueAt()
      if (due !== null) {
        // Something due that could not be claimed waits for capacity: a finishing run wakes us.
        const storeNow = this.options.store.now()
        next = due <= storeNow ? (runs.length > 0 ? 0 : BUSY_POLL_MS) : Math.min(POLL_MS, due - storeNow)
      }
    } catch (error) {
      this.logFailure(error, {}, 'claiming webhook deliveries failed')
    } finally {
      this.claiming = undefined
      done()
    }
    if (this.stopped) return
    if (this.wakeAgain) {
      this.wakeAgain = false
      next = 0
    }
    this.schedule(next)
  }

  /** Claimed runs that will not be sent: their leases are let go at once. */
  private async releaseClaimed(runs: ClaimedRun[]): Promise<void> {
    const { store, disableAfterMs } = this.options
    await Promise.all(
      runs.map((run) =>
        store
          .settleDeliveries({
            lease: run.lease,
            now: store.now(),
            outcomes: [],
            released: run.deliveries.map((delivery) => delivery.id),
            advanced: run.hook.ordered ? [{ hookId: run.hook.id, topic: run.deliveries[0]!.topic }] : [],
            disableAfterMs,
          })
          .catch((error: unknown) =>
            this.logFailure(error, { hook: run.hook.id }, 'letting go of claimed runs failed'),
          ),
      ),
    )
  }

  private track(run: ClaimedRun): void {
    const id = run.hook.id
    this.running++
    let released = false
    // Frees the run's slot and looks for more work: called by the run as it settles its last
    // outcomes, so that the next claim joins that settlement's commit (one transaction, not two).
    const finish = () => {
      if (released) return
      released = true
      this.running--
      this.wake()
    }
    const done = this.send(run, finish)
      .catch((error: unknown) => this.logFailure(error, { hook: id }, 'webhook run failed'))
      .finally(() => {
        finish()
        this.runs.delete(done)
      })
    this.runs.add(done)
  }

  /**
   * Sends a run (through the transport) and settles its outcomes in batches as they come, without
   * waiting for a commit before the next POST: the Store group-commits them. A crash before a commit
   * means those deliveries are sent again, with the same webhook-id: at least once, never lost.
   */
  private async send(run: ClaimedRun, finish: () => void): Promise<void> {
    const { hook } = run
    const { store, timeoutMs, disableAfterMs } = this.options
    const topic = run.deliveries[0]!.topic
    const lastStart = (claimedAt: number) => claimedAt + this.leaseMs - timeoutMs - 1_000
    // The run's deliveries not reported yet (an extended run can be long: reported ones are dropped).
    const byId = new Map(run.deliveries.map((delivery) => [delivery.id, delivery]))
    // Each settlement, with the deliveries it names: if it fails (the database went away), those are
    // let go after the run (see releaseAfterFailure) rather than held until their lease runs out.
    const settling: Array<{ ids: number[]; result: Promise<SettleResult | undefined> }> = []
    const settle = (settlement: Settlement) => {
      const ids = [
        ...settlement.outcomes.map((outcome) => outcome.id),
        ...settlement.released,
        ...(settlement.carry === undefined ? [] : [settlement.carry]),
      ]
      // Handled at once: a failure mid-run must not be an unhandled rejection (it ends the process).
      const result = store.settleDeliveries(settlement).catch((error: unknown) => {
        this.logFailure(error, { hook: hook.id }, 'settling webhook deliveries failed')
        return undefined
      })
      settling.push({ ids, result })
    }
    const count = (outcomes: DeliveryOutcome[]) => {
      for (const outcome of outcomes) {
        this.attemptCounters[outcome.result].inc()
        this.options.metrics.deliveryDuration.observe(outcome.attempt.duration_ms / 1000)
        if (outcome.result === 'failed') this.announceFailed(hook, byId.get(outcome.id)!, outcome)
        byId.delete(outcome.id)
      }
    }
    // A batch while the run goes on: its next unsent delivery keeps the queue busy (carry).
    const report: ReportBatch = (outcomes, next) => {
      count(outcomes)
      settle({
        lease: run.lease,
        now: store.now(),
        outcomes: this.inStoreTime(outcomes),
        released: [],
        advanced: [],
        disableAfterMs,
        carry: next,
      })
    }
    // An ordered run goes on with the rest of its queue while a slot is free. With every slot taken,
    // other queues may be waiting for one: the run then ends at its length and its queue takes its
    // turn. A rate-limited hook's runs are cut to its tokens at each claim and are not extended.
    let extending: Promise<unknown> = Promise.resolve()
    const extend: ExtendRun = async (afterSeq) => {
      if (this.stopped || this.running >= this.options.concurrency) return undefined
      const now = Date.now()
      // Under the run's token: an extension leases its rows under it too, and gets nothing once the
      // run holds nothing of its queue any more (its lease ran out and was rescued by another node).
      const claimed = store.extendRun({
        owner: this.owner,
        lease: run.lease,
        now: store.now(),
        leaseMs: this.leaseMs,
        hookId: hook.id,
        topic,
        afterSeq,
        runLength: RUN_LENGTH,
      })
      extending = claimed.catch(() => undefined)
      const more = await claimed
      if (!more) return undefined
      for (const delivery of more.deliveries) byId.set(delivery.id, delivery)
      return { run: more, lastStart: lastStart(now) }
    }
    const extensible = hook.ordered && hook.rate_limit === null
    let end: RunEnd
    try {
      end = await this.transport.send(run, lastStart(Date.now()), report, extensible ? extend : undefined)
    } catch (error) {
      // The sender failed (its thread died): what it did not report is let go, to be sent again,
      // including what an extension claimed meanwhile.
      this.options.logger.error({ err: error, hook: hook.id }, 'sending a webhook run failed')
      await extending
      end = { outcomes: [], unsent: [...byId.keys()] }
    }
    count(end.outcomes)
    // The run's last outcomes, its unsent deliveries let go and its queue advanced, in one commit: a
    // crash cannot leave the queue with nothing due and nothing leased.
    settle({
      lease: run.lease,
      now: store.now(),
      outcomes: this.inStoreTime(end.outcomes),
      released: end.unsent,
      advanced: hook.ordered ? [{ hookId: hook.id, topic }] : [],
      disableAfterMs,
    })
    finish()
    const results = await Promise.all(settling.map((entry) => entry.result))
    const unsettled = settling.flatMap((entry, index) => (results[index] === undefined ? entry.ids : []))
    if (unsettled.length > 0) await this.releaseAfterFailure(run, topic, unsettled)
    for (const result of results) {
      if (result === undefined) continue
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

  /**
   * Some settlements of a run failed (the store was out of reach): what they named is let go, under
   * the run's token, as soon as the store answers again, so that its queue moves on then rather than
   * a whole lease later. Their outcomes are not recorded: those deliveries are sent again (at least
   * once). Tried with back-off until it succeeds, the dispatcher stops, or the lease has run out
   * anyway (then the store's recovery lets them go).
   */
  private async releaseAfterFailure(run: ClaimedRun, topic: string, ids: number[]): Promise<void> {
    const { store, disableAfterMs } = this.options
    const deadline = Date.now() + this.leaseMs
    for (let delayMs = 500; !this.stopped && Date.now() < deadline; delayMs = Math.min(delayMs * 2, 5_000)) {
      await new Promise((resolve) => setTimeout(resolve, delayMs).unref())
      try {
        await store.settleDeliveries({
          lease: run.lease,
          now: store.now(),
          outcomes: [],
          released: ids,
          advanced: run.hook.ordered ? [{ hookId: run.hook.id, topic }] : [],
          disableAfterMs,
        })
        this.options.logger.warn(
          { hook: run.hook.id, deliveries: ids.length },
          'deliveries whose settlement failed were let go, to be sent again',
        )
        this.wake()
        return
      } catch (error) {
        this.logFailure(error, { hook: run.hook.id }, 'letting go of unsettled deliveries failed')
      }
    }
  }

  /** A store out of reach is a warning the next claim retries past; anything else an error. */
  private logFailure(error: unknown, fields: Record<string, unknown>, message: string): void {
    logFailure(this.options.logger, error, fields, message)
  }

  /**
   * Retry times as the store's clock has them: the sender computes them from this process's clock,
   * and on PostgreSQL the queue runs on the database's (leases and due times compared across nodes).
   */
  private inStoreTime(outcomes: DeliveryOutcome[]): DeliveryOutcome[] {
    const offset = this.options.store.now() - Date.now()
    if (offset === 0) return outcomes
    return outcomes.map((outcome) =>
      outcome.result === 'retry' ? { ...outcome, dueAt: outcome.dueAt + offset } : outcome,
    )
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

/** Where runs are sent: on this thread, or on a worker. */
interface RunTransport {
  /**
   * Sends a run, reporting outcomes as they come, extending it with `extend` when given; resolves
   * with its last outcomes and what it did not send.
   */
  send(run: ClaimedRun, lastStart: number, report: ReportBatch, extend?: ExtendRun): Promise<RunEnd>
  /** No attempt is started after this (runs under way end at their current attempt). */
  stop(): void
  close(): Promise<void>
}

class InProcessTransport implements RunTransport {
  private readonly sender: RunSender
  private stopped = false

  constructor(sender: RunSender) {
    this.sender = sender
  }

  send(run: ClaimedRun, lastStart: number, report: ReportBatch, extend?: ExtendRun): Promise<RunEnd> {
    return this.sender.send(run, lastStart, report, () => this.stopped, extend)
  }

  stop(): void {
    this.stopped = true
  }

  async close(): Promise<void> {}
}

type FromWorker =
  | { type: 'batch'; id: number; outcomes: DeliveryOutcome[]; next: number }
  | { type: 'extend'; id: number; afterSeq: number }
  | { type: 'end'; id: number; end?: RunEnd; error?: string }

/** Runs sent on a worker thread; a thread that dies is replaced (its runs fail and are let go). */
class WorkerTransport implements RunTransport {
  private worker: Worker
  private readonly config: WorkerConfig
  private readonly logger: Logger
  private readonly pending = new Map<
    number,
    {
      report: ReportBatch
      extend: ExtendRun | undefined
      resolve: (end: RunEnd) => void
      reject: (error: Error) => void
    }
  >()
  private nextId = 0
  private closing = false

  constructor(config: WorkerConfig, logger: Logger) {
    this.config = config
    this.logger = logger
    this.worker = this.spawn()
  }

  private spawn(): Worker {
    const worker = new Worker(new URL('./sender-worker.ts', import.meta.url), { workerData: this.config })
    worker.unref() // the server keeps the process alive, not the sending thread
    worker.on('message', (message: FromWorker) => {
      const run = this.pending.get(message.id)
      if (!run) return
      if (message.type === 'batch') {
        run.report(message.outcomes, message.next)
      } else if (message.type === 'extend') {
        // Always answered, with nothing on a failed claim: the run waits for it before it ends.
        void (run.extend?.(message.afterSeq) ?? Promise.resolve(undefined))
          .catch(() => undefined)
          .then((extension) =>
            worker.postMessage({ type: 'extension', id: message.id, extension } satisfies ToWorker),
          )
      } else {
        this.pending.delete(message.id)
        if (message.error !== undefined) run.reject(new Error(message.error))
        else run.resolve(message.end!)
      }
    })
    worker.on('error', (error) => this.logger.error({ err: error }, 'the webhook sending thread failed'))
    worker.on('exit', (code) => {
      const error = new Error(`the webhook sending thread exited (${code})`)
      for (const run of this.pending.values()) run.reject(error)
      this.pending.clear()
      if (!this.closing) this.worker = this.spawn()
    })
    return worker
  }

  send(run: ClaimedRun, lastStart: number, report: ReportBatch, extend?: ExtendRun): Promise<RunEnd> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { report, extend, resolve, reject })
      this.worker.postMessage({
        type: 'run',
        id,
        run,
        lastStart,
        extensible: extend !== undefined,
      } satisfies ToWorker)
    })
  }

  stop(): void {
    this.worker.postMessage({ type: 'stop' } satisfies ToWorker)
  }

  async close(): Promise<void> {
    this.closing = true
    await this.worker.terminate()
  }
}
