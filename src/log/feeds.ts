import { setTimeout as sleep } from 'node:timers/promises'
import type { Bus } from '../bus/bus.ts'
import { isUnavailable } from '../core/errors.ts'
import { jsonBytes, type StoredEvent } from '../core/event.ts'
import type { EventStore } from '../store/store.ts'

/**
 * One consumer of a topic: SSE, NDJSON, WebSocket or a held long poll. It gets events in seq order,
 * each exactly once, from its cursor on.
 */
export interface Sink {
  /** Takes the next events (all with seq > the subscription's cursor, in order). */
  push(events: StoredEvent[]): void
  /**
   * True when the sink is behind but still taking what it has (an HTTP/2 stream waiting its turn on a
   * connection its session shares): it is handed nothing, and what it did not take is read from the
   * store once it has drained (see Subscription.fallBehind).
   */
  behind?(): boolean
  /** Resolves when the sink can take more (catch-up waits for it between pages). */
  drained?(): Promise<void>
  /**
   * Called if reading the EventStore fails for another reason than the store being unreachable (then the
   * read is tried again, and the stream stays open); the subscription is closed.
   */
  fail?(error: unknown): void
  /**
   * Whether the sink waits out an unreachable store (a stream, which keeps its connection and its
   * heartbeats) rather than failing at once (a long poll, which answers 503 and is retried).
   */
  waitsOutages?: boolean
  /**
   * Told, before the next events (if any), that the subscription does not continue from its cursor:
   * retention removed events after it (`pruned`), or the cursor is past the topic's head (`ahead`).
   */
  gap?(gap: Gap): void
}

/**
 * What a consumer missed, or why its cursor could not be kept. `pruned`: the events `after+1 …
 * first_seq-1` are gone (retention), and delivery continues with `first_seq`. `ahead`: `after` is past
 * the topic's head (`head_seq`; a store restored from an older backup), and delivery continues with
 * the events after `head_seq`.
 */
export type Gap =
  | { topic: string; after: number; first_seq: number; reason: 'pruned' }
  | { topic: string; after: number; head_seq: number; reason: 'ahead' }

/** Where delivery continues after a gap: the new cursor. */
export function gapCursor(gap: Gap): number {
  return gap.reason === 'pruned' ? gap.first_seq - 1 : gap.head_seq
}

/**
 * Whether a cursor whose first read came back empty is past the head (`ahead`), or below a floor that
 * retention raised past everything after it (`pruned`, with nothing retained after the cursor). Undefined
 * when the cursor is the head, or when events came after it since the read (then read again).
 */
export async function emptyReadGap(
  store: EventStore,
  topic: string,
  after: number,
): Promise<Gap | undefined> {
  const head = (await store.heads([topic])).get(topic) ?? 0
  if (head === after) return undefined
  if (head < after) return { topic, after, head_seq: head, reason: 'ahead' }
  const info = await store.topic(topic)
  if (info === undefined || info.first_seq <= after + 1) return undefined
  return { topic, after, first_seq: info.first_seq, reason: 'pruned' }
}

/** The first wait before reading an unreachable store again, and the longest. */
const OUTAGE_RETRY_MS = 500
const OUTAGE_RETRY_MAX_MS = 5_000

/** Waits before the next try, longer each time up to the maximum; resolves the next delay. */
async function backOff(delayMs: number): Promise<number> {
  await sleep(delayMs)
  return Math.min(delayMs * 2, OUTAGE_RETRY_MAX_MS)
}

/**
 * Events per catch-up page: a page is one store read and one socket write, and its cost per event falls
 * with its size (1,000 against 500: about 5% less server CPU per replayed event, BENCHMARKS.md).
 */
const CATCH_UP_PAGE = 1000
/**
 * And at most this many bytes of event JSON per page (one event more may pass it): what one stream
 * writes before it waits for its socket to drain, so a stalled reader holds about this much, whatever
 * the size of the events.
 */
const CATCH_UP_BYTES = 1024 * 1024

/**
 * Catch-up then live, without a gap or a duplicate, for every protocol.
 *
 * A new subscription first reads the EventStore in pages from its cursor. When a page comes back short it
 * tries to join its topic's Feed: it may join only if the Feed has not dispatched anything past the
 * subscription's cursor, else it reads again. The Feed subscribes to the Bus *before* any subscription
 * makes its last read, so an event committed after that read is dispatched by the Feed; one committed
 * before it is in the read. Each subscription also drops what is at or below its cursor, so an event
 * the Feed dispatches that the subscription already read is not sent twice.
 *
 * Live, one Feed per topic reads each new batch of events from the EventStore once and hands the same
 * objects to every caught-up subscription: serialization happens once per event and format (the sinks
 * cache frames per event), never once per subscriber.
 */
export class Feeds {
  private readonly store: EventStore
  private readonly bus: Bus
  private readonly feeds = new Map<string, Feed>()

  constructor(store: EventStore, bus: Bus) {
    this.store = store
    this.bus = bus
  }

  /** Starts delivering events of `topic` after `after` to `sink`, until the subscription is closed. */
  subscribe(topic: string, after: number, sink: Sink, pageSize = CATCH_UP_PAGE): Subscription {
    let feed = this.feeds.get(topic)
    if (!feed) {
      feed = new Feed(topic, this.store, this.bus, () => this.feeds.delete(topic))
      this.feeds.set(topic, feed)
    }
    const subscription = new Subscription(feed, after, sink, this.store, pageSize)
    feed.attach(subscription)
    void subscription.catchUp(this.bus.ready())
    return subscription
  }
}

export class Subscription {
  readonly topic: string
  /** The seq of the last event handed to the sink. */
  cursor: number
  closed = false
  private readonly feed: Feed
  private readonly sink: Sink
  private readonly store: EventStore
  private readonly pageSize: number

  constructor(feed: Feed, after: number, sink: Sink, store: EventStore, pageSize: number) {
    this.feed = feed
    this.topic = feed.topic
    this.cursor = after
    this.sink = sink
    this.store = store
    this.pageSize = pageSize
  }

  /** Reads from the cursor in pages, then joins the live Feed; `busReady`: see Bus.ready. */
  async catchUp(busReady: Promise<void>): Promise<void> {
    const { store, pageSize } = this
    let retryMs = OUTAGE_RETRY_MS
    try {
      // The Feed's bus subscription is acknowledged before any read, so that the last read comes
      // after it: an event another node commits in between wakes the Feed.
      await busReady
      // The first read checks the cursor against the topic (see emptyReadGap); later ones start where
      // the one before ended, and a page that starts past the cursor is a gap too (see deliver).
      let first = true
      for (;;) {
        if (this.closed) return
        let events: StoredEvent[]
        try {
          events = await store.read(this.topic, this.cursor, pageSize, CATCH_UP_BYTES)
          if (first && events.length === 0) {
            const gap = await emptyReadGap(store, this.topic, this.cursor)
            if (this.closed) return
            first = false
            if (gap !== undefined) this.skip(gap)
            // A gap moved the cursor: read from there. (Events committed since the empty read are
            // dispatched by the Feed, as for any last read.)
            if (gap !== undefined) continue
          }
          first = false
        } catch (error) {
          if (!isUnavailable(error) || !this.waitsOutages) throw error
          retryMs = await backOff(retryMs)
          continue
        }
        retryMs = OUTAGE_RETRY_MS
        if (this.closed) return
        // A page the sink did not take is read again once it has drained.
        const taken = this.deliver(events)
        // A page short in count and in bytes reached the head (as it was): time to go live.
        if (
          taken &&
          events.length < pageSize &&
          jsonBytes(events) < CATCH_UP_BYTES &&
          this.feed.tryJoin(this)
        )
          return
        if (this.sink.drained) await this.sink.drained()
      }
    } catch (error) {
      this.fail(error)
    }
  }

  /**
   * Hands the sink what is new to it. False when the sink is behind (Sink.behind): it is handed
   * nothing, the cursor stays, and the events are read again from the store.
   */
  deliver(events: StoredEvent[]): boolean {
    if (this.closed || events.length === 0) return true
    let start = 0
    while (start < events.length && events[start]!.seq <= this.cursor) start++
    if (start === events.length) return true
    const fresh = start === 0 ? events : events.slice(start)
    // Seqs are gapless and retention removes the oldest events only: a jump is what retention took.
    const next = fresh[0]!.seq
    if (next > this.cursor + 1) {
      this.skip({ topic: this.topic, after: this.cursor, first_seq: next, reason: 'pruned' })
      if (this.closed) return true
    }
    if (this.sink.behind?.()) return false
    this.cursor = fresh.at(-1)!.seq
    this.sink.push(fresh)
    return true
  }

  /**
   * Out of the live set (the sink was behind at a live batch): once the sink has drained, the
   * subscription reads from its cursor as a new one does, a page at a time, and joins again. A
   * consumer behind but moving costs a page of memory, where buffering every live batch for it would
   * not be bounded.
   */
  async fallBehind(): Promise<void> {
    if (this.sink.drained) await this.sink.drained()
    if (this.closed) return
    await this.catchUp(Promise.resolve())
  }

  /** Tells the sink about a gap, and moves the cursor past it. */
  private skip(gap: Gap): void {
    this.cursor = gapCursor(gap)
    this.sink.gap?.(gap)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.feed.detach(this)
  }

  get waitsOutages(): boolean {
    return this.sink.waitsOutages === true
  }

  /** Ends the subscription because the EventStore could not be read. */
  fail(error: unknown): void {
    this.close()
    this.sink.fail?.(error)
  }
}

class Feed {
  readonly topic: string
  private readonly store: EventStore
  private readonly live = new Set<Subscription>()
  private readonly attached = new Set<Subscription>()
  private readonly unsubscribe: () => void
  private readonly onEmpty: () => void
  /** The last seq dispatched to live subscriptions; undefined until the first one joins. */
  private dispatched: number | undefined
  private latestHead = 0
  private pumping = false
  private retryTimer: NodeJS.Timeout | undefined
  private retryMs = OUTAGE_RETRY_MS

  constructor(topic: string, store: EventStore, bus: Bus, onEmpty: () => void) {
    this.topic = topic
    this.store = store
    this.onEmpty = onEmpty
    this.unsubscribe = bus.subscribe(topic, (head) => this.onHead(head))
  }

  attach(subscription: Subscription): void {
    this.attached.add(subscription)
  }

  /** Joins the live set if nothing past the subscription's cursor has been dispatched yet. */
  tryJoin(subscription: Subscription): boolean {
    if (subscription.closed) return true
    if (this.dispatched === undefined) this.dispatched = subscription.cursor
    if (subscription.cursor < this.dispatched) return false
    this.live.add(subscription)
    if (this.latestHead > this.dispatched) void this.pump()
    return true
  }

  detach(subscription: Subscription): void {
    this.live.delete(subscription)
    this.attached.delete(subscription)
    if (this.attached.size === 0) {
      clearTimeout(this.retryTimer)
      this.retryTimer = undefined
      this.unsubscribe()
      this.onEmpty()
    }
  }

  private onHead(head: number): void {
    if (head > this.latestHead) this.latestHead = head
    if (this.dispatched !== undefined && this.live.size > 0) void this.pump()
  }

  /** Reads what is new once, and hands it to every live subscription. */
  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.dispatched !== undefined && this.dispatched < this.latestHead && this.live.size > 0) {
        const events = await this.store.read(this.topic, this.dispatched, CATCH_UP_PAGE, CATCH_UP_BYTES)
        if (events.length === 0) break
        this.dispatched = events.at(-1)!.seq
        for (const subscription of this.live) {
          if (subscription.deliver(events)) continue
          this.live.delete(subscription) // deleting the current entry: the iteration goes on
          void subscription.fallBehind()
        }
      }
    } catch (error) {
      for (const subscription of [...this.live]) {
        if (!isUnavailable(error) || !subscription.waitsOutages) subscription.fail(error)
      }
      if (isUnavailable(error) && this.live.size > 0) this.retryPump()
    } finally {
      this.pumping = false
    }
  }

  /** The store was unreachable: the live subscriptions stay, and the read is tried again later. */
  private retryPump(): void {
    if (this.retryTimer !== undefined) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.retryMs = Math.min(this.retryMs * 2, OUTAGE_RETRY_MAX_MS)
      void this.pump().then(() => {
        if (this.retryTimer === undefined) this.retryMs = OUTAGE_RETRY_MS
      })
    }, this.retryMs)
    this.retryTimer.unref()
  }
}
