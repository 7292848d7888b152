import type { OutgoingHttpHeaders } from 'node:http'
import { type Http2ServerResponse, constants as http2constants, type ServerHttp2Stream } from 'node:http2'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyReply } from 'fastify'
import type { Principal } from '../access/principal.ts'
import { encodeCursor, type Positions } from '../core/cursor.ts'
import type { StoredEvent } from '../core/event.ts'
import { ulid } from '../core/event.ts'
import type { CompiledFilter } from '../core/filter.ts'
import { takeOverSocket } from '../http/take-over.ts'
import { type Gap, gapCursor, type Sink, type Subscription } from '../log/feeds.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import {
  type Connections,
  drainOrClose,
  type Protocol,
  SendProgress,
  type StreamConnection,
} from './connections.ts'
import { BatchFrameCache, FrameCache } from './frame-cache.ts'

/** How often an EventSource should wait before reconnecting, sent once as `retry:`. */
const SSE_RETRY_MS = 2000
/** Sent when draining: reconnect soon, to a node that is still up. */
const SSE_SHUTDOWN_RETRY_MS = 500

/** What differs between SSE and NDJSON: the framing. */
export interface Framing {
  protocol: Exclude<Protocol, 'ws'>
  contentType: string
  preamble: string
  heartbeat: string
  /** The frame of one event; `cursor` is the multi-topic token (null on a one-topic stream). */
  frame(event: StoredEvent, cursor: string | null): Buffer
  /** The frames of all `events` on a one-topic stream, as one Buffer (shared with other streams). */
  frames(events: StoredEvent[]): Buffer
  /** The frame that tells the consumer it does not continue from its cursor (see Gap). */
  gapFrame(gap: Gap): string
  /**
   * The frame that moves the consumer's cursor past events its filter skipped, without an event; null
   * where the framing has none (NDJSON: a consumer resumes from the last event it got, and the
   * skipped events after it are read and skipped again).
   */
  cursorFrame: ((cursor: string) => string) | null
  farewell: string
}

// Frames are bytes, encoded once: every socket then writes the same Buffer without copying it.
const sseFrames = new FrameCache((event) => Buffer.from(`id: ${event.seq}\ndata: ${event.json}\n\n`))
const sseNamedFrames = new FrameCache((event) =>
  Buffer.from(`id: ${event.seq}\nevent: ${eventType(event)}\ndata: ${event.json}\n\n`),
)
const ndjsonFrames = new FrameCache((event) => Buffer.from(`${event.json}\n`))
const sseBatches = new BatchFrameCache({ before: 'id: ', after: '\ndata: ', tail: '\n\n' })
const sseNamedBatches = new BatchFrameCache({
  head: (event) => `id: ${event.seq}\nevent: ${eventType(event)}\ndata: `,
  tail: '\n\n',
})
const ndjsonBatches = new BatchFrameCache({ tail: '\n' })

function eventType(event: StoredEvent): string {
  return (JSON.parse(event.json) as { type: string }).type
}

/** Server-Sent Events (WHATWG HTML §9.2). The event JSON never contains a raw line break. */
function sseFraming(named: boolean): Framing {
  return {
    protocol: 'sse',
    contentType: 'text/event-stream; charset=utf-8',
    preamble: `retry: ${SSE_RETRY_MS}\n\n`,
    heartbeat: ': heartbeat\n\n',
    frame(event, cursor) {
      if (cursor !== null) {
        return Buffer.from(
          `id: ${cursor}\n${named ? `event: ${eventType(event)}\n` : ''}data: ${event.json}\n\n`,
        )
      }
      return named ? sseNamedFrames.get(event) : sseFrames.get(event)
    },
    frames: (events) => (named ? sseNamedBatches.get(events) : sseBatches.get(events)),
    // No `id:` line: Last-Event-ID stays on the last event received.
    gapFrame: (gap) => `event: gap\ndata: ${JSON.stringify(gap)}\n\n`,
    // An `id:` and no data (WHATWG HTML §9.2.6): EventSource sets its last event ID and dispatches
    // nothing, so a reconnect resumes after the events the filter skipped.
    cursorFrame: (cursor) => `id: ${cursor}\n\n`,
    farewell: `retry: ${SSE_SHUTDOWN_RETRY_MS}\n\n`,
  }
}

/** SSE framings, built once: `named` adds an `event:` line with the event type. */
export const sseFramings = { plain: sseFraming(false), named: sseFraming(true) }

/** NDJSON: one event per line; empty lines are keep-alives (NDJSON parsers may skip them). */
export const ndjsonFraming: Framing = {
  protocol: 'ndjson',
  contentType: 'application/x-ndjson',
  preamble: '',
  heartbeat: '\n',
  frame: (event) => ndjsonFrames.get(event),
  frames: (events) => ndjsonBatches.get(events),
  // Told apart from events, which always have `specversion`.
  gapFrame: (gap) => `{"gap":${JSON.stringify(gap)}}\n`,
  cursorFrame: null,
  farewell: '',
}

export interface HttpStreamOptions {
  log: TopicLog
  connections: Connections
  metrics: Metrics
  bufferLimit: number
  /** Every topic and the seq to start after. */
  positions: Positions
  /** Several topics: each frame carries the token of all positions. */
  multiTopic: boolean
  framing: Framing
  /** Who opened the stream: it ends when their credentials expire or are revoked. */
  principal: Principal
  /** `?filter=`: only the events it matches are sent; the others still move the cursor. */
  filter?: CompiledFilter | undefined
}

/** Headers that name the connection, not the answer: HTTP/2 has none (RFC 9113 §8.2.2; node refuses them). */
const CONNECTION_HEADERS = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
])

/** The stream's own headers over what the reply already holds (CORS, rate-limit headers). */
function streamHeaders(reply: FastifyReply, framing: Framing): Record<string, unknown> {
  return {
    ...reply.getHeaders(),
    'content-type': framing.contentType,
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  }
}

/**
 * The status line and headers of a stream, written by hand: the body that follows is close-delimited
 * (RFC 9112 §6.3: no Content-Length, no chunked coding), so that each frame is one write of shared
 * bytes to the socket instead of a chunk header, the frame and a CRLF through node's ServerResponse.
 */
function head(reply: FastifyReply, framing: Framing): string {
  const headers: Record<string, unknown> = { ...streamHeaders(reply, framing), connection: 'close' }
  let text = 'HTTP/1.1 200 OK\r\n'
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    for (const each of Array.isArray(value) ? value : [value]) text += `${name}: ${String(each)}\r\n`
  }
  return `${text}\r\n${framing.preamble}`
}

/**
 * Where a stream's frames go: the taken-over socket (HTTP/1.1) or the request's HTTP/2 stream, one
 * of many on its connection.
 */
interface Outlet {
  out: Duplex
  progress: SendProgress
  remote: string | undefined
  /** An HTTP/2 stream: its connection is shared with the session's other streams. */
  shared: boolean
}

/**
 * How recently an HTTP/2 stream past its buffer limit must have sent something to be taken as waiting
 * its turn on its connection rather than as a reader that does not read.
 */
const SHARED_MOVING_MS = 1000

/** HTTP/1.1: the stream takes the socket over from node's HTTP server, status line and all. */
function socketOutlet(reply: FastifyReply, framing: Framing): Outlet {
  const preamble = head(reply, framing)
  // Freed from node's HTTP server and its parser (src/http/take-over.ts): an idle stream keeps little
  // more than its socket.
  const socket: Socket = takeOverSocket(reply.request.raw, reply.raw)
  socket.setNoDelay(true)
  socket.write(preamble)
  return {
    out: socket,
    progress: new SendProgress(socket),
    remote: socket.remoteAddress,
    shared: false,
  }
}

/**
 * HTTP/2: the frames are DATA frames of the request's own stream, so that many streams share one
 * connection (a browser's EventSources to one origin are not limited to six). What the stream has
 * not handed to its session yet (flow control: the reader's window is shut) is its `writableLength`;
 * what it handed is what was written less that, which is how a stall is seen.
 */
function http2Outlet(reply: FastifyReply, framing: Framing): Outlet {
  const stream = (reply.raw as unknown as Http2ServerResponse).stream
  const headers: OutgoingHttpHeaders = { ':status': 200 }
  for (const [name, value] of Object.entries(streamHeaders(reply, framing))) {
    if (value !== undefined && !CONNECTION_HEADERS.has(name))
      headers[name] = value as OutgoingHttpHeaders[string]
  }
  // A stream the client reset while the request was handled: nothing is answered, and the 'close'
  // already emitted is seen below (destroyed), so that the stream ends at once.
  stream.on('error', () => undefined) // a reset with an error code: 'close' follows
  if (!stream.destroyed && !stream.closed) stream.respond(headers)
  let written = 0
  const write = stream.write
  // Counted at every write: SendProgress reads `bytesWritten` as what was given to the stream.
  stream.write = function (this: ServerHttp2Stream, chunk: unknown, ...rest: unknown[]): boolean {
    written += typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Buffer).length
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof stream.write
  if (framing.preamble !== '') stream.write(framing.preamble)
  const measured = {
    get writableLength() {
      return stream.writableLength
    },
    get bytesWritten() {
      return written
    },
  }
  return {
    out: stream,
    progress: new SendProgress(measured),
    remote: stream.session?.socket?.remoteAddress,
    shared: true,
  }
}

/**
 * An SSE or NDJSON stream on a hijacked reply: the backlog, then live events, each written once,
 * with keep-alives while idle. A consumer that still has more than `bufferLimit` unsent when new
 * events arrive is disconnected, and so is one whose socket takes nothing of what it has to send for
 * --stream-stall-timeout (in catch-up too, where no new event ever comes while it waits); it resumes
 * from its cursor (`Last-Event-ID`) without loss.
 *
 * On HTTP/1.1 the stream takes the socket over from node's HTTP server: the request and response
 * objects are let go (an idle stream costs the socket and its HttpStream, little more), and nothing
 * else is ever answered on this connection. On HTTP/2 it writes to its own HTTP/2 stream, and the
 * same rules apply to that stream alone.
 */
export function openHttpStream(reply: FastifyReply, options: HttpStreamOptions): void {
  reply.hijack()
  const outlet =
    reply.request.raw.httpVersionMajor === 2
      ? http2Outlet(reply, options.framing)
      : socketOutlet(reply, options.framing)
  if (outlet.out.destroyed) return // the client left before the stream began
  new HttpStream(outlet, options).start()
}

/**
 * One open stream: its connection record (Connections), and the sink of its topics' subscriptions.
 * A class rather than closures over openHttpStream's scope: an idle stream is held for hours, and its
 * methods on the prototype cost nothing per stream, where a closure each cost ~0.8 KB of heap per
 * stream in all (BENCHMARKS.md, "SSE idle memory").
 */
class HttpStream implements StreamConnection, Sink {
  readonly protocol: Exclude<Protocol, 'ws'>
  readonly id = ulid()
  readonly since = Date.now()
  readonly remote: string | undefined
  /** A database outage: the stream stays open (heartbeats go on) and resumes when it is back. */
  readonly waitsOutages = true
  private readonly out: Duplex
  private readonly progress: SendProgress
  /** An HTTP/2 stream, whose connection its session's other streams share. */
  private readonly shared: boolean
  private readonly options: HttpStreamOptions
  /** Only a multi-topic stream tracks positions itself (to write them into each frame's cursor). */
  private readonly positions: Map<string, number> | undefined
  private readonly subscriptions: Subscription[] = []
  private wroteSinceHeartbeat = true
  private closed = false

  constructor(outlet: Outlet, options: HttpStreamOptions) {
    this.protocol = options.framing.protocol
    this.out = outlet.out
    this.progress = outlet.progress
    this.remote = outlet.remote
    this.shared = outlet.shared
    this.options = options
    this.positions = options.multiTopic ? new Map(options.positions) : undefined
  }

  start(): void {
    const { connections, positions, principal, log } = this.options
    connections.add(this)
    connections.bindCredentials(this, principal)
    this.out.on('close', () => this.release())
    for (const [topic, after] of positions) this.subscriptions.push(log.subscribe(topic, after, this))
  }

  // --- StreamConnection -------------------------------------------------------------------------

  heartbeat(): void {
    // Idle for a whole interval: keep proxies from timing the stream out.
    if (!this.wroteSinceHeartbeat && !this.closed) this.out.write(this.options.framing.heartbeat)
    this.wroteSinceHeartbeat = false
  }

  checkStall(now: number, timeoutMs: number): void {
    if (!this.closed && this.progress.stalled(now, timeoutMs)) this.cutSlowConsumer()
  }

  shutdown(): void {
    if (this.closed) return
    this.out.end(this.options.framing.farewell)
    this.release()
  }

  /** The stream lives no longer than its credentials: the client reconnects with fresh ones. */
  expire(): void {
    this.close()
  }

  topics(): string[] {
    return [...this.options.positions.keys()]
  }

  who(): Principal {
    return this.options.principal
  }

  close(): void {
    if (this.closed) return
    this.out.end()
    this.release()
  }

  // --- Sink -------------------------------------------------------------------------------------

  push(events: StoredEvent[]): void {
    if (this.closed) return
    const { out, options } = this
    const { framing, filter, multiTopic } = options
    const counters = this.counters
    // A denial-of-service guard: a reader that has not taken what it was sent before (more than
    // `bufferLimit` still unsent when new events come) must not make the server hold an unbounded
    // backlog for it. It is cut off and resumes from its cursor.
    // (An HTTP/2 stream that still sends is not pushed to past the limit: see `behind`.)
    if (out.writableLength > options.bufferLimit) {
      this.cutSlowConsumer()
      return
    }
    if (filter === undefined && !multiTopic) {
      // Every event is sent, each frame as it is for every one-topic stream: the batch's frames are
      // one Buffer, one write (a catch-up page, or a live batch shared with the other streams).
      const frames = framing.frames(events)
      out.write(frames)
      this.wroteSinceHeartbeat = true
      counters.events.inc(events.length)
      counters.bytes.inc(frames.length)
      return
    }
    const positions = this.positions
    let bytes = 0
    let sent = 0
    // Skipped events at the end of the batch: the cursor frame after them says where the stream is.
    let skippedLast = false
    const corked = events.length > 1 // several frames, one write to the socket
    if (corked) out.cork()
    for (const event of events) {
      if (positions !== undefined) positions.set(event.topic, event.seq)
      if (filter !== undefined && !filter.matches(event)) {
        skippedLast = true
        continue
      }
      skippedLast = false
      const frame = framing.frame(event, positions !== undefined ? encodeCursor(positions) : null)
      bytes += frame.length
      sent++
      out.write(frame)
    }
    if (skippedLast && framing.cursorFrame !== null) {
      const cursor = framing.cursorFrame(
        positions !== undefined ? encodeCursor(positions) : String(events.at(-1)!.seq),
      )
      bytes += cursor.length
      out.write(cursor)
    }
    if (corked) process.nextTick(uncork, out)
    if (sent > 0 || bytes > 0) this.wroteSinceHeartbeat = true
    counters.events.inc(sent)
    counters.bytes.inc(bytes)
  }

  gap(found: Gap): void {
    if (this.closed) return
    // A multi-topic stream's next cursor carries the topic's position past the gap: told once.
    this.positions?.set(found.topic, gapCursor(found))
    this.out.write(this.options.framing.gapFrame(found))
    this.wroteSinceHeartbeat = true
  }

  /**
   * The streams of an HTTP/2 session share its connection, so a burst to 250 of them leaves each with
   * a backlog while the connection sends the others'. One past the limit that still sends is handed
   * nothing and reads from the store once it has drained (Subscription.fallBehind): its memory stays
   * bounded, and it is not cut for the others' traffic. One that has sent nothing for a second has a
   * reader that does not read (its window is shut): `push` cuts it.
   */
  behind(): boolean {
    return (
      this.shared &&
      this.out.writableLength > this.options.bufferLimit &&
      this.progress.movedWithin(Date.now(), SHARED_MOVING_MS)
    )
  }

  drained(): Promise<void> {
    const { out } = this
    return out.writableLength < out.writableHighWaterMark || this.closed
      ? Promise.resolve()
      : drainOrClose(out)
  }

  fail(): void {
    this.abort()
    this.release()
  }

  // --- Its own ----------------------------------------------------------------------------------

  private get counters() {
    return this.options.metrics.streams[this.protocol]
  }

  /** Cuts off a consumer that does not take what it is sent; it resumes from its cursor. */
  private cutSlowConsumer(): void {
    this.counters.slowConsumers.inc()
    this.abort()
    this.release()
  }

  /**
   * Ends it without a goodbye (a slow consumer, a failure): the socket is destroyed, the HTTP/2 stream
   * reset (RST_STREAM CANCEL), its connection's other streams going on.
   */
  private abort(): void {
    const { out } = this
    if (out.destroyed) return
    if (this.shared) (out as ServerHttp2Stream).close(http2constants.NGHTTP2_CANCEL)
    else out.destroy()
  }

  /** Its subscriptions and its place in Connections go; the socket is someone else's concern. */
  private release(): void {
    if (this.closed) return
    this.closed = true
    for (const subscription of this.subscriptions) subscription.close()
    this.options.connections.remove(this)
  }
}

function uncork(out: Duplex): void {
  out.uncork()
}
