import type { Logger } from 'pino'
import type { NodeStore } from '../store/store.ts'

/** How often the node tells the store it is alive. */
export const HEARTBEAT_INTERVAL_MS = 2_000
/**
 * A node silent this long is taken for dead and its leases are released: five missed heartbeats, so
 * that a busy event loop or a slow commit is not mistaken for a death, and well under a delivery lease
 * (twice the delivery timeout and 5 s: 35 s by default), which stays the backstop.
 */
export const STALE_AFTER_MS = 10_000

export interface NodeServiceOptions {
  store: NodeStore
  /** This node's id (HERALD_NODE_ID), the owner of its dispatcher's leases. */
  nodeId: string
  logger: Logger
  intervalMs?: number
  staleMs?: number
}

/**
 * This node's membership of the store: it joins before the dispatcher starts (on SQLite that releases
 * every lease a killed process left, so that its deliveries are sent again at once rather than after
 * a whole lease), heartbeats while it runs (releasing the leases of nodes found dead), and leaves after
 * the dispatcher stopped and before the store closes (its own leases let go at once).
 *
 * Why every node rescues the dead, not only the leader (which runs the rest of the maintenance,
 * src/cluster/maintenance.ts): the dead node may be the leader, and another node may lead only once
 * its lease has run out (10 s after its last renewal, so that there are never two leaders): a
 * leader-only rescue would free a dead leader's deliveries 10 to 12 s after its death, past the 10 s
 * the cluster promises. A rescue is safe to run from several nodes at once (the dead nodes' rows are
 * locked SKIP LOCKED, a release of what is already free changes nothing), and costs one small read per
 * heartbeat (the nodes, and pg_locks for their sessions' locks).
 */
export class NodeService {
  private readonly options: Required<NodeServiceOptions>
  private timer: NodeJS.Timeout | undefined
  private beating: Promise<unknown> = Promise.resolve()
  private joined = false

  constructor(options: NodeServiceOptions) {
    this.options = { intervalMs: HEARTBEAT_INTERVAL_MS, staleMs: STALE_AFTER_MS, ...options }
  }

  get nodeId(): string {
    return this.options.nodeId
  }

  /** Joins the cluster (a failure is the start's failure), then heartbeats until stopped. */
  async start(): Promise<void> {
    await this.options.store.joinCluster(this.options.nodeId)
    this.joined = true
    this.timer = setInterval(() => this.beat(), this.options.intervalMs)
    this.timer.unref()
  }

  private beat(): void {
    const { store, nodeId, staleMs, logger } = this.options
    // One heartbeat at a time: a slow store does not pile them up.
    this.beating = this.beating.then(() =>
      store.heartbeat(nodeId, staleMs).then(
        (released) => {
          if (released > 0) logger.warn({ released }, 'released the deliveries leased by nodes found dead')
        },
        (error: unknown) => logger.warn({ err: error }, 'the node heartbeat failed'),
      ),
    )
  }

  /** Stops heartbeating and leaves: the node's leases are released. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.beating
    if (!this.joined) return
    this.joined = false
    try {
      await this.options.store.leaveCluster(this.options.nodeId)
    } catch (error) {
      // Its leases then run out, or the next start releases them.
      this.options.logger.warn({ err: error }, 'leaving the cluster failed')
    }
  }
}
