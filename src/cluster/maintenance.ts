import type { Logger } from 'pino'
import { logFailure } from '../core/errors.ts'
import type { MaintenanceStore, Retention, Store } from '../store/store.ts'
import { Leadership, type LeadershipOptions } from './leadership.ts'

/**
 * How often the leader looks for expired delivery leases and stalled queues. The look reads every
 * leased and pending row, so it is not done at each claim; a lease is long anyway (twice the delivery
 * timeout and 5 s), and the quick way out for a dead node's leases is the heartbeats' rescue.
 */
export const RECOVERY_INTERVAL_MS = 5_000

export interface MaintenanceOptions {
  store: MaintenanceStore & Pick<Store, 'prune' | 'now'>
  nodeId: string
  logger: Logger
  retention: Retention
  idempotencyTtlMs: number
  /** How often retention runs (--prune-interval). */
  pruneIntervalMs: number
  recoveryIntervalMs?: number
  /** The leadership's timings (tests shorten them). */
  leadership?: Pick<LeadershipOptions, 'leaseMs' | 'renewMs' | 'marginMs'>
  /** Events removed by a retention pass (the metrics count them). */
  onPruned?: (events: number) => void
  /** Deliveries were made claimable again: the local dispatcher may claim them now. */
  onRecovered?: () => void
}

/**
 * The work that runs once per cluster, on the leader only (DESIGN: River's maintenance services):
 *
 * - retention: events past their topic's limits, expired idempotency keys, settled deliveries past
 *   the events' maximum age, ended WebSub subscriptions and old verifications (Store.prune), every
 *   --prune-interval;
 * - recovery: delivery leases that ran out, and stalled queues (Store.recoverDeliveries), every 5 s,
 *   and at once when this node becomes the leader (it may follow one that died).
 *
 * Each runs on its own timer, jittered by ±10% so that nodes started together do not keep asking the
 * database at the same instant, and only while this node is the leader (checked when the timer fires).
 * Not here: rescuing the leases of a dead node, which every node's heartbeat does (src/cluster/node.ts
 * says why).
 */
export class MaintenanceService {
  readonly leadership: Leadership
  private readonly options: MaintenanceOptions
  private readonly tasks: { prune: Periodic; recover: Periodic }

  constructor(options: MaintenanceOptions) {
    this.options = options
    const { store, nodeId, logger } = options
    this.leadership = new Leadership({
      store,
      nodeId,
      logger,
      ...options.leadership,
      onChange: (leading) => {
        if (leading) this.tasks.recover.runNow()
      },
    })
    this.tasks = {
      prune: new Periodic(options.pruneIntervalMs, () => this.prune()),
      recover: new Periodic(options.recoveryIntervalMs ?? RECOVERY_INTERVAL_MS, () => this.recover()),
    }
  }

  /** Claims the leadership (or learns who has it), then runs the timers. */
  async start(): Promise<void> {
    this.tasks.prune.start()
    this.tasks.recover.start()
    await this.leadership.start()
  }

  isLeader(): boolean {
    return this.leadership.isLeader()
  }

  private async prune(): Promise<void> {
    if (!this.isLeader()) return
    const { store, retention, idempotencyTtlMs, logger, onPruned } = this.options
    try {
      const result = await store.prune(store.now(), retention, idempotencyTtlMs)
      onPruned?.(result.events)
      if (result.events > 0) logger.info(result, 'retention pruned events')
    } catch (error) {
      this.failed(error, 'retention pruning failed')
    }
  }

  private async recover(): Promise<void> {
    if (!this.isLeader()) return
    const { store, logger, onRecovered } = this.options
    try {
      const result = await store.recoverDeliveries(store.now())
      if (result.released > 0) {
        logger.warn({ released: result.released }, 'released the deliveries whose lease ran out')
      }
      if (result.stalled > 0)
        logger.warn({ queues: result.stalled }, 'made stalled delivery queues due again')
      if (result.released > 0 || result.stalled > 0) onRecovered?.()
    } catch (error) {
      this.failed(error, 'recovering expired delivery leases failed')
    }
  }

  /** A database outage is a warning (it is reported elsewhere, and passes); anything else an error. */
  private failed(error: unknown, message: string): void {
    logFailure(this.options.logger, error, {}, message)
  }

  /**
   * Stops acting as the leader at once, waits for a task under way, then releases the leadership:
   * another node takes over at its next try (within 2 s) rather than when the lease runs out, and
   * not while this node's last task still runs.
   */
  async stop(): Promise<void> {
    this.leadership.stepDown()
    await Promise.all([this.tasks.prune.stop(), this.tasks.recover.stop()])
    await this.leadership.stop()
  }
}

/** `interval` ± 10%. */
function jittered(intervalMs: number): number {
  return intervalMs * (0.9 + Math.random() * 0.2)
}

/** One task on a jittered timer: one run at a time, the next timer set when a run ends. */
class Periodic {
  private readonly intervalMs: number
  private readonly work: () => Promise<void>
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> = Promise.resolve()
  private stopped = true

  constructor(intervalMs: number, work: () => Promise<void>) {
    this.intervalMs = intervalMs
    this.work = work
  }

  start(): void {
    this.stopped = false
    this.schedule()
  }

  /** Runs the task now (after the run under way, if any), then on the timer again. */
  runNow(): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.running = this.running.then(async () => {
      if (!this.stopped) await this.work()
      this.schedule()
    })
  }

  private schedule(): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.runNow(), jittered(this.intervalMs))
    this.timer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    await this.running
  }
}
