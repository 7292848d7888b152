import type { Logger } from 'pino'
import type { MaintenanceStore } from '../store/store.ts'

/**
 * How long a leadership lasts unless renewed: long enough that a slow commit or a busy event loop
 * does not lose it (five renewals may fail), short enough that a killed leader's work (retention,
 * expired leases) waits seconds, not minutes, for another node to take it.
 */
export const LEADER_LEASE_MS = 10_000
/** How often the leader renews its lease, and the others try to take it. */
export const LEADER_RENEW_MS = 2_000
/**
 * The leader stops acting this long before its lease could end: time for a task it started just
 * before to finish, and room for the two clocks (this process's, the database's) to run at slightly
 * different rates.
 */
export const LEADER_MARGIN_MS = 3_000

export interface LeadershipOptions {
  store: Pick<MaintenanceStore, 'claimLeadership' | 'releaseLeadership'>
  nodeId: string
  logger: Logger
  leaseMs?: number
  renewMs?: number
  marginMs?: number
  /** Told when this node becomes the leader (with its term) and when it stops being it. */
  onChange?: (leading: boolean, term: number) => void
}

/**
 * This node's claim to lead its store (River's `internal/leadership`): it claims at start, then
 * renews (or tries to take over) every `renewMs`, and releases at stop so that another node takes
 * over at its next try rather than a lease later.
 *
 * When may it act? Only until its lease could have ended. The store starts the lease when it applies
 * the claim, by its own clock (the database's `now()`), which is after this process sent the claim.
 * So the lease ends no earlier than `leaseMs` after the sending, on any clock that runs at the same
 * rate: the deadline is counted from the sending, less a margin, on the monotonic clock (which no
 * step of the wall clock moves). The wall clock is checked as well, and whichever of the two is
 * reached first ends the leadership: a monotonic clock may stand still while a virtual machine is
 * suspended, the database's does not. A leader whose renewals fail (the database away, the process
 * paused) therefore stops acting by itself, before another node can take over; no answer is needed.
 *
 * One leader at a time is for economy, not correctness: every maintenance task is a transaction that
 * may run twice (a second pruning or recovery finds nothing left to do), so a task that overruns its
 * leader's deadline costs work, never data.
 */
export class Leadership {
  private readonly options: Required<Omit<LeadershipOptions, 'onChange'>> &
    Pick<LeadershipOptions, 'onChange'>
  /** Until when this node may act as the leader: monotonic (performance.now) and wall clock (ms). */
  private deadline = { monotonic: Number.NEGATIVE_INFINITY, wall: Number.NEGATIVE_INFINITY }
  private term = 0
  /** What was last reported (logged, onChange): leading, and in which term. */
  private reported = { leading: false, term: 0 }
  private timer: NodeJS.Timeout | undefined
  private claiming: Promise<void> | undefined
  /** Whether the store may hold this node as the leader (its last answer said so): released at stop. */
  private mayHold = false
  private stopped = false

  constructor(options: LeadershipOptions) {
    this.options = {
      leaseMs: LEADER_LEASE_MS,
      renewMs: LEADER_RENEW_MS,
      marginMs: LEADER_MARGIN_MS,
      ...options,
    }
    if (this.options.marginMs >= this.options.leaseMs)
      throw new Error('The margin must be shorter than the lease.')
  }

  /** Whether this node may act as the leader now. */
  isLeader(): boolean {
    return performance.now() < this.deadline.monotonic && Date.now() < this.deadline.wall
  }

  /** The term of this node's leadership (meaningful while isLeader()). */
  get currentTerm(): number {
    return this.term
  }

  /** Claims once (a failure is logged, not thrown: the next try comes at the next renewal), then renews. */
  async start(): Promise<void> {
    this.stopped = false
    await this.tick()
  }

  private tick(): Promise<void> {
    if (!this.stopped) {
      this.timer = setTimeout(() => void this.tick(), this.options.renewMs)
      this.timer.unref()
    }
    // A deadline passed while a claim went unanswered is reported now, not when the answer comes.
    this.report()
    // A claim still unanswered is not doubled: the deadline already bounds how long it is waited for.
    this.claiming ??= this.claim().finally(() => {
      this.claiming = undefined
    })
    return this.claiming
  }

  private async claim(): Promise<void> {
    const { store, nodeId, leaseMs, marginMs, logger } = this.options
    const sent = { monotonic: performance.now(), wall: Date.now() }
    try {
      const claim = await store.claimLeadership(nodeId, leaseMs)
      this.mayHold = claim.isMe
      if (claim.isMe && !this.stopped) {
        this.term = claim.term
        this.deadline = {
          monotonic: sent.monotonic + leaseMs - marginMs,
          wall: sent.wall + leaseMs - marginMs,
        }
      } else {
        this.deadline = { monotonic: Number.NEGATIVE_INFINITY, wall: Number.NEGATIVE_INFINITY }
      }
    } catch (error) {
      // The lease held, if any, runs out by itself (isLeader says so at the deadline).
      logger.warn({ err: error }, 'claiming the leadership failed')
    }
    this.report()
  }

  /** Logs and reports a change: becoming the leader, a new term, or no longer leading. */
  private report(): void {
    const leading = this.isLeader()
    const term = leading ? this.term : 0
    if (leading === this.reported.leading && term === this.reported.term) return
    const was = this.reported
    this.reported = { leading, term }
    const { logger, onChange } = this.options
    if (leading) logger.info({ term }, 'this node is the leader')
    else if (this.stopped) logger.info({ term: was.term }, 'this node is no longer the leader: it stops')
    else logger.warn({ term: was.term }, 'this node is no longer the leader')
    onChange?.(leading, term)
  }

  /** Stops acting as the leader and claiming, at once; `stop` then releases the leadership. */
  stepDown(): void {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
    this.deadline = { monotonic: Number.NEGATIVE_INFINITY, wall: Number.NEGATIVE_INFINITY }
    this.report()
  }

  /** Steps down and releases the leadership, so that another node takes over now. */
  async stop(): Promise<void> {
    this.stepDown()
    await this.claiming
    if (!this.mayHold) return
    this.mayHold = false
    try {
      await this.options.store.releaseLeadership(this.options.nodeId)
    } catch (error) {
      // Its lease then runs out and another node takes over then.
      this.options.logger.warn({ err: error }, 'releasing the leadership failed')
    }
  }
}
