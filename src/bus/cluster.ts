import type { Logger } from 'pino'
import type { Bus } from './bus.ts'
import { LocalBus } from './local.ts'

/**
 * The cluster logic, written once above thin transports (redis.ts, nats.ts): a publish reaches this
 * node's listeners at once and the other nodes through the transport, as `{node, topic, head}` on one
 * channel per cluster; a node drops its own messages, and keeps the highest head seen per topic.
 *
 * The transport is a hint, never the truth (the Store is):
 * - pub/sub drops messages (a reconnect, a slow subscriber, a lookup in flight), so every topic with
 *   listeners here re-checks its head in the Store every POSITION_CHECK_MS (centrifuge's position
 *   check): a lost message costs seconds, never a stall until the next publish;
 * - while the transport is down, those heads are polled every DOWN_POLL_MS;
 * - when it comes back, they are read at once.
 * So an outage of Redis or NATS costs latency, never an event, and nodes recover by themselves.
 */

/** What a transport does: carry strings on the cluster's channel, and say when it is up or down. */
export interface BusTransport {
  /** Connects and subscribes; resolves once the subscription is acknowledged by the server. */
  start(handlers: TransportHandlers): Promise<void>
  /** Sends one message; a failure is the transport's to report (down), never thrown. */
  send(message: string): void
  close(): Promise<void>
}

export interface TransportHandlers {
  message(message: string): void
  /** Back after a down: it can send, and the server has its subscription again (acknowledged). */
  up(): void
  /** Lost: messages may be missed until `up` (it may be said again at each failed retry). */
  down(reason: string): void
}

/** What a ClusterBus reports as it goes, for the metrics (it knows nothing of prom-client). */
export interface BusHooks {
  /** A message handed to the transport (while it is down, it may be lost). */
  sent(): void
  /** A message from another node. */
  received(): void
  /** The transport came up (true) or went down (false). */
  connected(up: boolean): void
}

/** The heads of topics as the Store has them (topics it does not know are left out). */
export type HeadSource = (topics: string[]) => Promise<Map<string, number>>

/** How often each topic with listeners re-reads its head, whatever the transport says. */
export const POSITION_CHECK_MS = 3_000
/** How often, while the transport is down. */
export const DOWN_POLL_MS = 1_500

/** The two intervals above; tests shorten them. */
export interface BusTiming {
  positionCheckMs: number
  downPollMs: number
}

/** Topics read per position check query. */
const HEADS_PER_QUERY = 1_000

/** The longest message parsed: a node id (≤ 128), a topic (≤ 200) and a head, with JSON's escapes. */
const MAX_MESSAGE_LENGTH = 4096

interface Message {
  n: string
  t: string
  h: number
}

/**
 * Whether a value from the channel is a node's message. The channel is Herald's, but anyone with
 * access to the server can publish on it: a stray message is ignored, never thrown (a throw would
 * end the process under ioredis, and stop the NATS client reading its connection).
 */
function isMessage(value: unknown): value is Message {
  if (typeof value !== 'object' || value === null) return false
  const { n, t, h } = value as Record<string, unknown>
  return typeof n === 'string' && typeof t === 'string' && Number.isSafeInteger(h) && (h as number) > 0
}

export class ClusterBus extends LocalBus implements Bus {
  override readonly kind: Bus['kind']
  private readonly transport: BusTransport
  private readonly nodeId: string
  private readonly heads: HeadSource
  private readonly logger: Logger
  private readonly timing: BusTiming
  private readonly hooks: BusHooks | undefined
  /** The highest head seen per topic with listeners, so that an older message wakes no one. */
  private readonly highest = new Map<string, number>()
  private started: Promise<void> | undefined
  private up = false
  private closed = false
  private timer: NodeJS.Timeout | undefined
  private due = 0
  private checking = false
  /** A check was asked for while one was reading: it runs again at once after. */
  private recheck = false

  constructor(options: {
    kind: 'redis' | 'nats'
    transport: BusTransport
    nodeId: string
    heads: HeadSource
    logger: Logger
    timing?: BusTiming
    hooks?: BusHooks
  }) {
    super()
    this.kind = options.kind
    this.transport = options.transport
    this.nodeId = options.nodeId
    this.heads = options.heads
    this.logger = options.logger
    this.timing = options.timing ?? { positionCheckMs: POSITION_CHECK_MS, downPollMs: DOWN_POLL_MS }
    this.hooks = options.hooks
  }

  /** Connects the transport; resolves once its subscription is acknowledged. */
  start(): Promise<void> {
    this.started ??= this.transport
      .start({
        message: (message) => this.receive(message),
        up: () => this.onUp(),
        down: (reason) => this.onDown(reason),
      })
      .then(() => {
        this.up = true
        this.hooks?.connected(true)
        this.schedule(this.timing.positionCheckMs)
      })
    return this.started
  }

  override ready(): Promise<void> {
    return this.start()
  }

  /** Whether the transport is connected (GET /v1/cluster, metrics). */
  get connected(): boolean {
    return this.up
  }

  override publish(topic: string, head: number): void {
    this.deliver(topic, head)
    if (this.closed) return
    this.transport.send(JSON.stringify({ n: this.nodeId, t: topic, h: head } satisfies Message))
    this.hooks?.sent()
  }

  override subscribe(topic: string, listener: (head: number) => void): () => void {
    const unsubscribe = super.subscribe(topic, listener)
    return () => {
      unsubscribe()
      if (!this.listeners.has(topic)) this.highest.delete(topic)
    }
  }

  /** Hands a head to this node's listeners of the topic, once per new highest head. */
  private deliver(topic: string, head: number): void {
    if (!this.listeners.has(topic)) return
    if (head <= (this.highest.get(topic) ?? 0)) return
    this.highest.set(topic, head)
    super.publish(topic, head)
  }

  private receive(raw: string): void {
    // A head message is a node id, a topic name (at most 200 characters) and a number: anything far
    // longer is not one of ours, and is not parsed.
    if (raw.length > MAX_MESSAGE_LENGTH) return
    let message: unknown
    try {
      message = JSON.parse(raw)
    } catch {
      return
    }
    if (!isMessage(message) || message.n === this.nodeId) return
    this.hooks?.received()
    this.deliver(message.t, message.h)
  }

  private onUp(): void {
    if (this.closed) return
    if (!this.up) {
      this.logger.info({ bus: this.kind }, 'bus connected again: re-reading the heads of live topics')
      this.hooks?.connected(true)
    }
    this.up = true
    // What was published while it was down reached no one here: read the heads now.
    this.schedule(0)
  }

  private onDown(reason: string): void {
    // Once per outage: a transport may say it again at each failed retry, and rescheduling then
    // would postpone the poll for as long as the retries come faster than it.
    if (this.closed || !this.up) return
    this.logger.warn({ bus: this.kind, reason }, 'bus disconnected: polling heads from the store')
    this.up = false
    this.hooks?.connected(false)
    this.schedule(this.timing.downPollMs)
  }

  /** Makes the next check come within `delayMs`: never later than one already due (a reconnect's). */
  private schedule(delayMs: number): void {
    if (this.closed) return
    const due = Date.now() + delayMs
    if (this.timer !== undefined && due >= this.due) return
    clearTimeout(this.timer)
    this.due = due
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.checkPositions()
    }, delayMs)
    this.timer.unref()
  }

  /** Reads the heads of every topic with listeners here, in a few queries, and hands on what moved. */
  private async checkPositions(): Promise<void> {
    if (this.closed) return
    if (this.checking) {
      // The read in flight may predate what asked for this one (a reconnect): read again after it.
      this.recheck = true
      return
    }
    this.checking = true
    this.recheck = false
    try {
      const topics = [...this.listeners.keys()]
      for (let start = 0; start < topics.length; start += HEADS_PER_QUERY) {
        const heads = await this.heads(topics.slice(start, start + HEADS_PER_QUERY))
        for (const [topic, head] of heads) this.deliver(topic, head)
      }
    } catch (error) {
      // The store is out of reach too: the next check tries again (the store's own 503s say why).
      this.logger.warn({ reason: (error as Error).message }, 'reading topic heads failed')
    } finally {
      this.checking = false
      this.schedule(this.recheck ? 0 : this.up ? this.timing.positionCheckMs : this.timing.downPollMs)
    }
  }

  override async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await this.transport.close()
    await super.close()
  }
}
