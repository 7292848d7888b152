import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import { type RawData, WebSocket, WebSocketServer } from 'ws'
import { may } from '../access/principal.ts'
import { type RateVerdict, rateLimitedError, rateLimitHeaders } from '../access/rate-limit.ts'
import { errors, HeraldError } from '../core/errors.ts'
import { parseEventObject, type StoredEvent, ulid } from '../core/event.ts'
import { type CompiledFilter, parseFilter } from '../core/filter.ts'
import { assertPublishable, validateTopic } from '../core/topic.ts'
import { type Principal, requestToken } from '../http/access.ts'
import type { HttpContext } from '../http/context.ts'
import { rawProblem } from '../http/problem.ts'
import type { Gap, Sink, Subscription } from '../log/feeds.ts'
import type { StreamCounters } from '../metrics/metrics.ts'
import { drainOrClose, SendProgress, type StreamConnection } from './connections.ts'
import { FrameCache } from './frame-cache.ts'
import { type PresenceChange, type PresenceMember, parsePresence, subOf } from './presence.ts'

export const WS_PATH = '/v1/ws'
export const WS_SUBPROTOCOL = 'herald.v1'
/**
 * Close code for a consumer that fell more than --stream-buffer behind, or took nothing for
 * --stream-stall-timeout (private-use range).
 */
export const CLOSE_SLOW_CONSUMER = 4008
/** An administrator closed the socket (DELETE /v1/connections/{id}). */
export const CLOSE_BY_ADMINISTRATOR = 4000
/** The socket's credentials expired (with no fresh `auth` before) or were revoked. */
export const CLOSE_UNAUTHORIZED = 4401
/** RFC 6455 codes Herald closes with. */
const CLOSE_UNSUPPORTED_DATA = 1003
const CLOSE_POLICY_VIOLATION = 1008
const CLOSE_SERVICE_RESTART = 1012
const CLOSE_TRY_AGAIN_LATER = 1013
/**
 * Messages one socket may have in progress (publishes waiting for their commit, subscribes reading
 * the head). Past it the socket is not read until they finish: a client that floods messages is slowed
 * by TCP, not queued for in memory.
 */
const MAX_PENDING_MESSAGES = 64
/** A socket that has not authenticated by then is closed. */
const AUTH_DEADLINE_MS = 10_000
/** Catch-up pauses while this much is waiting to be sent. */
const CATCH_UP_HIGH_WATER = 64 * 1024

/**
 * `{"op":"event",…}` for one event as a whole WebSocket frame, built once and written as it is to
 * every socket subscribed to its topic: one write of shared bytes per socket, no per-socket framing.
 */
const eventFrames = new FrameCache((event) =>
  textFrame(Buffer.from(`{"op":"event","topic":${JSON.stringify(event.topic)},"event":${event.json}}`)),
)

/** An unfragmented, unmasked text frame (RFC 6455 §5.2), as a server sends one. */
function textFrame(payload: Buffer): Buffer {
  const length = payload.length
  const headerLength = length < 126 ? 2 : length < 65_536 ? 4 : 10
  const frame = Buffer.allocUnsafe(headerLength + length)
  frame[0] = 0x81 // FIN, opcode 1 (text)
  if (length < 126) {
    frame[1] = length
  } else if (length < 65_536) {
    frame[1] = 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 127
    frame.writeBigUInt64BE(BigInt(length), 2)
  }
  payload.copy(frame, headerLength)
  return frame
}

/** Serves `GET /v1/ws` on the HTTP server's upgrade requests. */
export function attachWebSocket(server: Server, context: HttpContext, logger: FastifyBaseLogger): void {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: context.config.bodyLimitBytes, // larger messages are closed with 1009
    clientTracking: false,
    perMessageDeflate: false,
    handleProtocols: (offered) => (offered.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  })
  // ws checks the rest of the handshake itself (the method, Upgrade, Sec-WebSocket-Key and
  // Sec-WebSocket-Protocol) and would answer its refusals in text/html: they are answered as every
  // other Herald error is, in problem+json.
  wss.on('wsClientError', (error: Error, socket: Duplex) => refuse(socket, handshakeError(error.message)))
  // The upgrade counted against a budget: the 101 says what is left of it, as other answers do.
  const verdicts = new WeakMap<IncomingMessage, RateVerdict>()
  wss.on('headers', (headers: string[], request: IncomingMessage) => {
    const verdict = verdicts.get(request)
    if (verdict === undefined) return
    for (const [name, value] of Object.entries(rateLimitHeaders(verdict))) headers.push(`${name}: ${value}`)
  })
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://herald')
    if (url.pathname !== WS_PATH)
      return refuse(socket, errors.notFound(`No WebSocket endpoint at ${url.pathname}.`))
    if (context.draining.aborted) return refuse(socket, errors.unavailable('The server is draining.'))
    // A browser opens a WebSocket to any origin (no CORS): in open mode, foreign pages are refused.
    try {
      context.access.checkBrowserReach(request.headers)
    } catch (error) {
      return refuse(socket, error as HeraldError)
    }
    // RFC 6455 §4.2.2: refuse versions other than 13 and say which one is spoken (ws would also take 8).
    if (request.headers['sec-websocket-version'] !== '13') {
      return refuse(
        socket,
        errors.invalidRequest('Herald speaks WebSocket version 13.', 'Sec-WebSocket-Version', {
          'Sec-WebSocket-Version': '13',
        }),
      )
    }
    // The key may come in the query (a browser's WebSocket cannot set headers) or, later, in a first
    // `auth` message; a socket that presents none is let in unauthenticated, for that message.
    const token = requestToken(request.headers, Object.fromEntries(url.searchParams), true)
    void upgrade(token).catch((error: unknown) => {
      if (error instanceof HeraldError) return refuse(socket, error)
      logger.error({ err: error }, 'websocket upgrade failed')
      refuse(socket, errors.internal('Something went wrong on the server; it has been logged.'))
    })
    async function upgrade(token: string | undefined): Promise<void> {
      let principal: Principal | undefined
      try {
        principal =
          !context.access.keyRequired || token !== undefined
            ? await context.access.authenticate(token)
            : undefined
      } catch (error) {
        await context.rateLimits?.countRefusal(request.socket.remoteAddress ?? '')
        throw error
      }
      // The upgrade is one request of its budget (a socket that authenticates later: of its address).
      const verdict = await context.rateLimits?.consume(principal, request.socket.remoteAddress ?? '')
      if (verdict !== undefined) {
        if (!verdict.allowed) throw rateLimitedError(verdict)
        verdicts.set(request, verdict)
      }
      context.connections.admit('ws', principal !== undefined)
      // The socket may have gone while its key was looked up: ws then destroys it.
      wss.handleUpgrade(request, socket, head, (ws) => {
        new WsConnection(ws, socket, context, principal, logger)
      })
    }
  })
}

/** The header each of ws's handshake refusals is about, by its message. */
const HANDSHAKE_FIELDS: Array<[prefix: string, field: string]> = [
  ['Invalid Upgrade header', 'Upgrade'],
  ['Missing or invalid Sec-WebSocket-Key', 'Sec-WebSocket-Key'],
  ['Missing or invalid Sec-WebSocket-Version', 'Sec-WebSocket-Version'],
  ['Invalid Sec-WebSocket-Protocol', 'Sec-WebSocket-Protocol'],
]

/** One of ws's handshake refusals as a Herald error: 405 for a method other than GET, else 400. */
function handshakeError(message: string): HeraldError {
  if (message === 'Invalid HTTP method') {
    return errors.methodNotAllowed('A WebSocket handshake is a GET request.', undefined, { Allow: 'GET' })
  }
  const field = HANDSHAKE_FIELDS.find(([prefix]) => message.startsWith(prefix))?.[1]
  return errors.invalidRequest(`This is not a valid WebSocket handshake: ${message}.`, field)
}

/** Answers an upgrade request with an HTTP error (problem+json) instead of switching protocols. */
function refuse(socket: Duplex, error: HeraldError): void {
  socket.end(rawProblem(error))
}

const connectionOf = new WeakMap<WebSocket, WsConnection>()

function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  connectionOf.get(this)?.onMessage(data, isBinary)
}
function onPong(this: WebSocket): void {
  connectionOf.get(this)?.pong()
}
function onError(this: WebSocket, error: Error): void {
  connectionOf.get(this)?.error(error)
}
function onClose(this: WebSocket): void {
  connectionOf.get(this)?.cleanUp()
}

/** One WebSocket client: several topic subscriptions, publishing, and the keep-alive. */
class WsConnection implements StreamConnection, Sink {
  readonly protocol = 'ws' as const
  readonly id = ulid()
  readonly since = Date.now()
  readonly remote: string | undefined
  private readonly ws: WebSocket
  /**
   * The upgraded socket under `ws`: event frames are written to it directly. Safe because `ws` sends
   * everything else synchronously (no compression, no fragmentation), so frames never interleave.
   */
  private readonly socket: Duplex
  private readonly context: HttpContext
  private readonly logger: FastifyBaseLogger
  /** The client's address, which the budget of a socket without a key or `sub` counts by. */
  private readonly address: string
  private readonly subscriptions = new Map<string, Subscription>()
  /** The `filter` of each topic's subscription that has one. */
  private readonly filters = new Map<string, CompiledFilter>()
  /** Topics whose subscribe is under way (it holds a slot of --max-subscriptions-per-socket). */
  private readonly subscribing = new Set<string>()
  /** Topics whose presence this socket is a member of (as `client` = its id). */
  private readonly present = new Set<string>()
  /** Topics whose joins and leaves this socket is sent (`presence_events`), and how to stop each. */
  private readonly watching = new Map<string, () => void>()
  private readonly counters: StreamCounters
  /** Who is on the other end; undefined until the socket has authenticated. */
  private principal: Principal | undefined
  private readonly progress: SendProgress
  private authDeadline: NodeJS.Timeout | undefined
  private missedPongs = 0
  /** Messages being handled (see MAX_PENDING_MESSAGES). */
  private pending = 0
  private closed = false

  constructor(
    ws: WebSocket,
    socket: Duplex,
    context: HttpContext,
    principal: Principal | undefined,
    logger: FastifyBaseLogger,
  ) {
    this.ws = ws
    this.socket = socket
    this.remote = (socket as Socket).remoteAddress
    this.context = context
    this.principal = principal
    this.logger = logger
    this.address = (socket as Socket).remoteAddress ?? ''
    this.counters = context.metrics.streams.ws
    this.progress = new SendProgress(socket as Socket)
    context.connections.add(this, principal !== undefined)
    if (principal) context.connections.bindCredentials(this, principal)
    else {
      this.authDeadline = setTimeout(
        () => ws.close(CLOSE_POLICY_VIOLATION, 'authentication required'),
        AUTH_DEADLINE_MS,
      )
    }
    // Shared handlers (ws calls them with `this` = the socket), not closures per connection: at
    // tens of thousands of idle sockets, every per-connection object shows in memory.
    connectionOf.set(ws, this)
    ws.on('message', onMessage)
    ws.on('pong', onPong)
    ws.on('error', onError)
    ws.on('close', onClose)
  }

  pong(): void {
    this.missedPongs = 0
  }

  error(error: Error): void {
    // ws closes protocol violations itself (1002, 1007, 1009) and reports them here first.
    this.logger.debug({ err: error }, 'websocket error')
  }

  heartbeat(): void {
    if (this.missedPongs >= 2) {
      this.ws.terminate() // missed two pings: the peer is gone
      return
    }
    this.missedPongs++
    this.ws.ping()
  }

  checkStall(now: number, timeoutMs: number): void {
    // A subscriber that stops reading (in catch-up as live) holds its slot and its buffer until cut.
    if (!this.closed && this.progress.stalled(now, timeoutMs)) this.cutSlowConsumer()
  }

  shutdown(): void {
    this.ws.close(CLOSE_SERVICE_RESTART, 'server restarting: reconnect and resubscribe with after')
  }

  topics(): string[] {
    return [...this.subscriptions.keys()]
  }

  who(): Principal | undefined {
    return this.principal
  }

  close(): void {
    this.ws.close(CLOSE_BY_ADMINISTRATOR, 'closed by an administrator')
    this.cleanUp()
  }

  expire(reason: 'expired' | 'revoked'): void {
    // Its credentials ran out with no fresh `auth` before, or its key was revoked (RFC 6455 §7.4.2:
    // 4000-4999 are for applications; 4401 is "unauthorized", as Centrifugo has it).
    this.ws.close(
      CLOSE_UNAUTHORIZED,
      `credentials ${reason}: reconnect with fresh ones, or send {"op":"auth"} before they expire`,
    )
    this.cleanUp()
  }

  cleanUp(): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.authDeadline)
    for (const subscription of this.subscriptions.values()) subscription.close()
    this.subscriptions.clear()
    for (const topic of [...this.present, ...this.watching.keys()]) this.dropPresence(topic)
    this.context.connections.remove(this)
  }

  /** Leaves the topic's presence and stops watching it (unsubscribed, closed, or no longer allowed). */
  private dropPresence(topic: string): void {
    this.watching.get(topic)?.()
    this.watching.delete(topic)
    if (!this.present.delete(topic)) return
    this.context.presence.leave(topic, this.id).catch((error: unknown) => {
      // It expires with the TTL instead (the node no longer refreshes it... unless it re-enters it).
      this.logger.warn({ reason: (error as Error).message, topic }, 'leaving presence failed')
    })
  }

  onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.ws.close(CLOSE_UNSUPPORTED_DATA, 'Herald takes JSON text messages')
      return
    }
    let message: unknown
    try {
      message = JSON.parse(data.toString())
    } catch {
      this.sendError(undefined, errors.invalidJson('The message is not valid JSON.'))
      return
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.sendError(undefined, errors.invalidRequest('A message is a JSON object with an "op".'))
      return
    }
    const fields = message as Record<string, unknown>
    const ref =
      typeof fields['ref'] === 'string' || typeof fields['ref'] === 'number' ? fields['ref'] : undefined
    if (++this.pending === MAX_PENDING_MESSAGES) this.ws.pause()
    this.handle(fields, ref)
      .catch((error: unknown) => this.sendError(ref, error))
      .finally(() => {
        if (this.pending-- === MAX_PENDING_MESSAGES) this.ws.resume()
      })
  }

  private async handle(message: Record<string, unknown>, ref: string | number | undefined): Promise<void> {
    const op = message['op']
    if (op === 'auth') return this.authenticate(message, ref)
    const principal = this.principal
    if (!principal) {
      throw errors.unauthorized('Authenticate first: {"op":"auth","token":"<key>"}.')
    }
    switch (op) {
      case 'subscribe':
        return this.subscribe(message, ref)
      case 'unsubscribe': {
        const topic = validateTopic(message['topic'])
        this.subscriptions.get(topic)?.close()
        this.subscriptions.delete(topic)
        this.filters.delete(topic)
        this.dropPresence(topic)
        return this.send({ op: 'unsubscribed', topic, ref })
      }
      case 'presence': {
        // Presence is a read: the subscribe right on the topic, as its events.
        const topic = validateTopic(message['topic'])
        this.context.access.authorize(principal, 'subscribe', topic)
        const members = await this.context.presence.members(topic)
        return this.send({ op: 'presence', topic, members, ref })
      }
      case 'publish':
        return this.publish(message, ref)
      default:
        throw errors.invalidRequest(
          // Named only when it is a short string: a nested value would not even serialize.
          `Unknown op${typeof op === 'string' && op.length <= 64 ? ` ${JSON.stringify(op)}` : ''}: use subscribe, unsubscribe, presence, publish or auth.`,
          'op',
        )
    }
  }

  private async authenticate(
    message: Record<string, unknown>,
    ref: string | number | undefined,
  ): Promise<void> {
    await this.countOp()
    const token = message['token']
    let principal: Principal
    try {
      principal = await this.context.access.authenticate(typeof token === 'string' ? token : '')
    } catch (error) {
      // The field is the message's token here, not a header; a store out of reach stays a 503.
      if (error instanceof HeraldError && error.status === 401)
        throw errors.unauthorized(error.message, 'token')
      throw error
    }
    if (this.closed) return
    if (this.principal === undefined) {
      try {
        this.context.connections.authenticated(this)
      } catch (error) {
        // Full: the socket had no slot, and gets none; the client tries again later.
        this.sendError(ref, error)
        this.ws.close(CLOSE_TRY_AGAIN_LATER, 'server full: try again later')
        return
      }
    }
    this.principal = principal
    clearTimeout(this.authDeadline)
    // Fresh credentials: the socket now lives as long as they do, and keeps only what they may read.
    this.context.connections.bindCredentials(this, principal)
    for (const [topic, subscription] of this.subscriptions) {
      if (may(principal, 'subscribe', topic)) continue
      subscription.close()
      this.subscriptions.delete(topic)
      this.filters.delete(topic)
      this.dropPresence(topic)
      this.sendError(
        undefined,
        errors.forbidden(
          `These credentials do not hold the "subscribe" right on the topic "${topic}": unsubscribed.`,
          'topic',
        ),
      )
    }
    this.send({ op: 'authenticated', ref })
  }

  private async subscribe(message: Record<string, unknown>, ref: string | number | undefined): Promise<void> {
    const topic = validateTopic(message['topic'])
    this.context.access.authorize(this.principal!, 'subscribe', topic)
    const after = message['after']
    if (after !== undefined && (!Number.isSafeInteger(after) || (after as number) < 0)) {
      throw errors.invalidRequest('"after" is a seq: a whole number of at least 0.', 'after')
    }
    const filter = message['filter'] === undefined ? undefined : parseFilter(message['filter'])
    const presence = parsePresence(message['presence'])
    const presenceEvents = message['presence_events']
    if (presenceEvents !== undefined && typeof presenceEvents !== 'boolean') {
      throw errors.invalidRequest('"presence_events" is true or false.', 'presence_events')
    }
    // Each topic costs a subscription and, for a new topic, a feed (--max-subscriptions-per-socket).
    // Subscribes still under way hold their slot: several sent at once cannot all pass the check.
    const max = this.context.config.maxSubscriptionsPerSocket
    if (
      !this.subscriptions.has(topic) &&
      !this.subscribing.has(topic) &&
      this.subscriptions.size + this.subscribing.size >= max
    ) {
      throw errors.invalidRequest(
        `One WebSocket follows at most ${max} topics; unsubscribe from one first.`,
        'topic',
      )
    }
    this.subscribing.add(topic)
    try {
      await this.countOp()
      const start =
        (after as number | undefined) ?? (await this.context.log.store.topic(topic))?.head_seq ?? 0
      if (this.closed) return
      // Checked again after the awaits: an `auth` op handled meanwhile may have narrowed the rights,
      // and a subscription made now would outlive them.
      this.context.access.authorize(this.principal!, 'subscribe', topic)
      await this.updatePresence(topic, presence, presenceEvents === true)
      if (this.closed) return
      // And once more after joining: the rights may have changed during that await too.
      try {
        this.context.access.authorize(this.principal!, 'subscribe', topic)
      } catch (error) {
        await this.updatePresence(topic, undefined, false)
        throw error
      }
      this.subscriptions.get(topic)?.close() // subscribing again restarts from the new position
      this.send({ op: 'subscribed', topic, ref })
      if (filter === undefined) this.filters.delete(topic)
      else this.filters.set(topic, filter)
      this.subscriptions.set(topic, this.context.log.subscribe(topic, start, this))
    } finally {
      this.subscribing.delete(topic)
    }
  }

  /**
   * Makes the socket's presence on the topic what a subscribe asks: a member (with this info) or not,
   * watching or not. A subscribe states the whole subscription, so one without `presence` leaves.
   * A join refused (the topic is full) throws before anything else changes: nothing is subscribed.
   */
  private async updatePresence(
    topic: string,
    presence: { info: string | undefined } | undefined,
    watch: boolean,
  ): Promise<void> {
    const service = this.context.presence
    if (presence !== undefined) {
      await service.join(topic, this.id, subOf(this.principal!), presence.info)
      if (this.closed) {
        await service.leave(topic, this.id) // closed while it joined: cleanUp did not know of it
        return
      }
      this.present.add(topic)
    } else if (this.present.has(topic)) {
      this.present.delete(topic)
      await service.leave(topic, this.id)
    }
    if (watch && !this.watching.has(topic)) {
      const stop = await service.watch(topic, (change: PresenceChange, member: PresenceMember) =>
        this.send({ op: change, topic, member }),
      )
      if (this.closed || this.watching.has(topic)) stop()
      else this.watching.set(topic, stop)
    } else if (!watch) {
      this.watching.get(topic)?.()
      this.watching.delete(topic)
    }
  }

  /** A database outage: the socket stays open (pings go on) and its subscriptions resume after. */
  readonly waitsOutages = true

  // The connection is the Sink of each of its subscriptions (one object, whatever the topics).

  push(events: StoredEvent[]): void {
    // A denial-of-service guard: a reader that has not taken what it was sent before is closed,
    // not buffered for; it resubscribes with `after`.
    if (this.ws.bufferedAmount > this.context.config.streamBufferBytes) {
      this.cutSlowConsumer()
      return
    }
    if (this.ws.readyState !== WebSocket.OPEN) return // closing: no data frame may follow a close
    // A push holds events of one topic. Skipped events are not told: the protocol's position is the
    // seq of the last event the client got, and a resubscribe with it reads them and skips them again.
    const filter = this.filters.get(events[0]!.topic)
    const sent = filter === undefined ? events : events.filter((event) => filter.matches(event))
    if (sent.length === 0) return
    let bytes = 0
    const corked = sent.length > 1 // several frames, one write to the socket
    if (corked) this.socket.cork()
    for (const event of sent) {
      const frame = eventFrames.get(event)
      bytes += frame.length
      this.socket.write(frame)
    }
    if (corked) process.nextTick(() => this.socket.uncork())
    this.counters.events.inc(sent.length)
    this.counters.bytes.inc(bytes)
  }

  /** The subscription does not continue from its `after`: said before the events that follow. */
  gap(gap: Gap): void {
    if (this.ws.readyState !== WebSocket.OPEN) return
    this.send({ op: 'gap', ...gap })
  }

  /**
   * Catch-up waits here between pages. Event frames and ws's own frames are written to the socket as
   * they are sent (no compression, no fragmentation), so past the high-water mark the socket says
   * 'drain' when it has sent them all, or 'close' when it is cut.
   */
  drained(): Promise<void> {
    if (this.closed || this.ws.bufferedAmount <= CATCH_UP_HIGH_WATER) return Promise.resolve()
    return drainOrClose(this.socket)
  }

  /** Closes a consumer that does not take what it is sent; it resubscribes with `after`. */
  private cutSlowConsumer(): void {
    this.counters.slowConsumers.inc()
    this.ws.close(CLOSE_SLOW_CONSUMER, 'slow consumer: reconnect and resubscribe with after')
    // The close frame waits behind what the consumer did not take: do not wait for it long.
    setTimeout(() => this.ws.terminate(), 1000).unref()
    this.cleanUp()
  }

  /** A subscription could not read the Store (it closed itself): say which topic to subscribe again. */
  fail(error: unknown): void {
    for (const [topic, subscription] of this.subscriptions) {
      if (!subscription.closed) continue
      this.subscriptions.delete(topic)
      this.logger.error({ err: error, topic }, 'subscription failed')
      this.sendError(
        undefined,
        errors.internal(`Reading the topic ${topic} failed; subscribe again.`, 'topic'),
      )
    }
  }

  private async publish(message: Record<string, unknown>, ref: string | number | undefined): Promise<void> {
    const { op: _op, ref: _ref, topic: rawTopic, ...attributes } = message
    const topic = assertPublishable(validateTopic(rawTopic))
    this.context.access.authorize(this.principal!, 'publish', topic)
    await this.countOp()
    const input = parseEventObject(attributes, false)
    const result = await this.context.log.publish(topic, [input])
    this.sendRaw(`{"op":"published","ref":${JSON.stringify(ref ?? null)},"event":${result.events[0]!.json}}`)
  }

  /**
   * Each publish, subscribe and auth op is one request of the socket's budget (its principal's, or
   * its address's before it authenticates): past it an error with status 429 and `retry_after`; the
   * socket stays open.
   */
  private async countOp(): Promise<void> {
    const verdict = await this.context.rateLimits?.consume(this.principal, this.address)
    if (verdict !== undefined && !verdict.allowed) throw rateLimitedError(verdict)
  }

  private send(message: Record<string, unknown>): void {
    this.sendRaw(JSON.stringify(message))
  }

  private sendRaw(text: string): void {
    if (!this.closed) this.ws.send(text)
  }

  /** A problem-style error message; the connection stays open. */
  private sendError(ref: string | number | undefined, error: unknown): void {
    const problem =
      error instanceof HeraldError
        ? error
        : errors.internal('Something went wrong on the server; it has been logged.')
    if (!(error instanceof HeraldError)) this.logger.error({ err: error }, 'websocket message failed')
    const { status, title, detail, code, type, field } = problem.toProblem()
    // A refusal that says when to try again (429, 503) says it here too, in seconds.
    const retryAfter = Number(problem.headers['Retry-After'] ?? problem.headers['retry-after'])
    this.send({
      ...problem.members, // a schema mismatch's `errors`
      op: 'error',
      ref,
      status,
      title,
      detail,
      code,
      type,
      ...(field === undefined ? {} : { field }),
      ...(Number.isInteger(retryAfter) ? { retry_after: retryAfter } : {}),
    })
  }
}
