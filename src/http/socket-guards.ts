import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { isIPv6, type Socket } from 'node:net'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import type { RateLimit } from '../access/principal.ts'
import { errors } from '../core/errors.ts'
import { ipv6Groups } from '../core/ipv6.ts'
import { SendProgress, stallCheckInterval } from '../streams/connections.ts'
import { rawProblem } from './problem.ts'

/**
 * Requests one connection may have sent and not yet had answered in full, at most. HTTP/1.1 lets a
 * client pipeline requests; one that sends thousands and reads no answer had the server compute and
 * hold every answer for it (30,000 `GET /metrics` held ~400 MB). Clients that pipeline send a few.
 */
export const MAX_UNANSWERED_REQUESTS = 64
/**
 * Bytes of answers a connection may have left unread when it sends a further request. (Node stops
 * reading a connection whose answers do not drain, but only after the read under way.)
 */
export const MAX_UNREAD_ANSWER_BYTES = 1024 * 1024

/**
 * Connections of an address past --max-connections-per-ip that may wait at once to be told so (a
 * 503, then the close); past these, more are closed without a word, so refusing costs no descriptors.
 */
const MAX_REFUSALS_UNDER_WAY_PER_IP = 8
/** How long a refused connection may take to read its 503 before it is closed anyway. */
const REFUSAL_LINGER_MS = 1000

/** Why a guard closed a connection (the `reason` label of herald_http_connections_closed_total). */
export type GuardReason = 'pipelining' | 'stalled' | 'timeout' | 'per-ip' | 'connection-rate'

export interface SocketGuardOptions {
  /** Longest a client may take to send a request's headers (--headers-timeout). */
  headersTimeoutMs: number
  /** Longest a client may take to send a whole request, body included (--request-timeout). */
  requestTimeoutMs: number
  /** Connections one client address may hold open (--max-connections-per-ip); null: no limit. */
  maxConnectionsPerIp: number | null
  /** New connections one client address may open per window (--connection-rate-per-ip); null: no limit. */
  connectionRatePerIp: RateLimit | null
  /**
   * A connection with an answer under way that has unsent bytes and sends none of them this long is
   * closed (--stream-stall-timeout, the same rule as for streams).
   */
  stallTimeoutMs: number
  /** Called for every connection a guard closes or refuses. */
  onClose(reason: GuardReason): void
}

/** Requests received on a connection and not yet answered in full; none once released to a stream. */
const unanswered = new WeakMap<Socket, number>()
const progress = new WeakMap<Socket, SendProgress>()

/**
 * Guards the server's connections against clients that make it hold memory for them. Applied once,
 * after the application's request listener is attached and before the server listens.
 */
export function applySocketGuards(server: Server, options: SocketGuardOptions): void {
  guardRequestTime(server, options)
  if (options.maxConnectionsPerIp !== null)
    guardConnectionsPerIp(server, options.maxConnectionsPerIp, options)
  // After the per-address count, so that it wraps it: a connection past the rate is not counted there.
  if (options.connectionRatePerIp !== null) guardConnectionRate(server, options.connectionRatePerIp, options)
  /** This server's connections with a request unanswered: the ones the stall check looks at. */
  const answering = new Set<Socket>()
  guardPipelining(server, answering, options)
  const timer = setInterval(
    () => closeStalled(answering, options),
    stallCheckInterval(options.stallTimeoutMs),
  )
  timer.unref()
  server.on('close', () => clearInterval(timer))
}

/**
 * A stream (SSE, NDJSON) has taken the connection over from the HTTP server: its answer never ends,
 * and the stream's own rules (--stream-buffer, --stream-stall-timeout) apply to it from now on.
 */
export function releaseSocket(socket: Socket): void {
  unanswered.delete(socket)
}

type RequestListener = (request: IncomingMessage, response: ServerResponse) => void

/**
 * Closes a connection that pipelines more than MAX_UNANSWERED_REQUESTS, or sends a request while
 * more than MAX_UNREAD_ANSWER_BYTES of answers wait unread. The application's request listeners are
 * wrapped, so the requests of a closed connection (the rest of what was read with the one past the
 * bound) never reach the application: nothing is computed for them.
 */
function guardPipelining(server: Server, answering: Set<Socket>, options: SocketGuardOptions): void {
  const listeners = server.listeners('request') as RequestListener[]
  server.removeAllListeners('request')
  const forget = function (this: Socket) {
    answering.delete(this)
  }
  const answered = function (this: ServerResponse) {
    const socket = this.req.socket
    const count = unanswered.get(socket)
    if (count === undefined) return // released to a stream
    unanswered.set(socket, count - 1)
    if (count === 1) answering.delete(socket)
  }
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    // HTTP/2 (over TLS): many requests share the connection by design, bounded by the session's
    // SETTINGS_MAX_CONCURRENT_STREAMS and flow control, not by this count.
    if (request.httpVersionMajor === 2) {
      for (const listener of listeners) listener.call(server, request, response)
      return
    }
    const socket = request.socket
    if (socket.destroyed) return
    const before = unanswered.get(socket)
    const count = (before ?? 0) + 1
    if (count > MAX_UNANSWERED_REQUESTS || socket.writableLength > MAX_UNREAD_ANSWER_BYTES) {
      options.onClose('pipelining')
      socket.destroy()
      return
    }
    // `on`, not `once`: a socket closes once, and `once` would keep a wrapper (a closure and its scope)
    // for as long as the connection lasts, hours for a stream's.
    if (before === undefined) socket.on('close', forget)
    unanswered.set(socket, count)
    answering.add(socket)
    response.once('close', answered)
    for (const listener of listeners) listener.call(server, request, response)
  })
}

/**
 * Closes connections whose answers wait unsent while their reader takes none of them: what the server
 * holds for a client that stopped reading (one large answer, or the few it pipelined) is held for
 * --stream-stall-timeout at most, not for as long as the client keeps the connection open.
 */
function closeStalled(answering: Set<Socket>, options: SocketGuardOptions): void {
  const now = Date.now()
  for (const socket of answering) {
    if (!unanswered.has(socket)) {
      answering.delete(socket) // released to a stream
      continue
    }
    if (socket.writableLength === 0) continue // nothing unsent: a long poll waiting, or work under way
    let watch = progress.get(socket)
    if (watch === undefined) {
      watch = new SendProgress(socket, now)
      progress.set(socket, watch)
    }
    if (watch.stalled(now, options.stallTimeoutMs)) {
      answering.delete(socket)
      options.onClose('stalled')
      socket.destroy()
    }
  }
}

/**
 * Node's own deadlines for receiving a request: its headers within `headersTimeoutMs` of its first
 * byte (or of the connection), the whole of it within `requestTimeoutMs`. A connection that sends
 * slower is answered 408 (problem+json) and closed. They bound the request only: a long poll or a
 * stream, once its request is in, is a response, which they do not limit.
 */
function guardRequestTime(server: Server, options: SocketGuardOptions): void {
  server.headersTimeout = options.headersTimeoutMs
  server.requestTimeout = options.requestTimeoutMs
  // Node checks the deadlines every connectionsCheckingInterval (30 s by default, a createServer
  // option that @types/node does not list as a property), read when the server starts listening.
  const checked = server as Server & { connectionsCheckingInterval: number }
  const shortest = Math.min(options.headersTimeoutMs, options.requestTimeoutMs)
  checked.connectionsCheckingInterval = Math.max(10, Math.min(1000, Math.floor(shortest / 4)))
  // Fastify answers a timeout with its own JSON; Herald's errors are problem+json. Other client
  // errors (malformed requests, oversized headers) stay with Fastify's handler.
  const listeners = server.listeners('clientError') as Array<(error: Error, socket: Socket) => void>
  server.removeAllListeners('clientError')
  const timedOut = rawProblem(
    errors.requestTimeout(
      `The request was not received in time: headers within ${seconds(options.headersTimeoutMs)}, ` +
        `all of it within ${seconds(options.requestTimeoutMs)}.`,
    ),
  )
  server.on('clientError', (error: Error & { code?: string }, socket: Socket) => {
    if (error.code !== 'ERR_HTTP_REQUEST_TIMEOUT') {
      for (const listener of listeners) listener.call(server, error, socket)
      return
    }
    options.onClose('timeout')
    if (socket.writable) socket.write(timedOut)
    socket.destroy()
  })
}

/**
 * Refuses a connection when its client address (an IPv6 client: its /64, what one host is usually
 * given) already holds `max` of them, before any HTTP parsing: one client cannot take every
 * descriptor (with slow requests, idle keep-alives or streams). The refused connection is answered
 * 503 problem+json with Retry-After and closed.
 */
function guardConnectionsPerIp(server: Server, max: number, options: SocketGuardOptions): void {
  const open = new Map<string, number>()
  const refusing = new Map<string, number>()
  const listeners = server.listeners('connection') as Array<(socket: Socket) => void>
  server.removeAllListeners('connection')
  const refused = rawProblem(
    errors.unavailable(
      `This client address has ${max} connections open, as many as it may (--max-connections-per-ip); ` +
        'close some, or try again shortly.',
      undefined,
      { 'Retry-After': '5' },
    ),
  )
  const release = (map: Map<string, number>, key: string) => {
    const left = map.get(key)! - 1
    if (left === 0) map.delete(key)
    else map.set(key, left)
  }
  server.on('connection', (socket: Socket) => {
    const key = socket.remoteAddress === undefined ? undefined : clientKey(socket.remoteAddress)
    if (key === undefined) {
      socket.destroy() // already gone
      return
    }
    const count = open.get(key) ?? 0
    if (count < max) {
      open.set(key, count + 1)
      socket.on('close', () => release(open, key)) // `on`: see guardPipelining
      for (const listener of listeners) listener.call(server, socket)
      return
    }
    options.onClose('per-ip')
    const underWay = refusing.get(key) ?? 0
    // Over TLS the socket is still the raw TCP one, before the handshake: a plain-text 503 would be
    // garbage to the client, so it is closed without a word.
    if (underWay >= MAX_REFUSALS_UNDER_WAY_PER_IP || isTlsServer(server)) {
      socket.destroy()
      return
    }
    refusing.set(key, underWay + 1)
    socket.once('close', () => release(refusing, key))
    socket.on('error', () => undefined)
    // The request is read and dropped: closing with it unread would reset the connection, and the
    // client could lose the 503 before reading it.
    socket.resume()
    socket.on('end', () => socket.destroy())
    socket.setTimeout(REFUSAL_LINGER_MS, () => socket.destroy())
    socket.end(refused)
  })
}

/**
 * Closes a connection at once, without a word, when its client address (IPv6: its /64) has opened
 * more than `rate.points` in `rate.seconds`: a flood of connections costs an accept and a close each,
 * never a parse or an answer. An open connection is never affected, whatever it sends. Counted by
 * rate-limiter-flexible in this process (a connection is a node's own cost).
 */
function guardConnectionRate(server: Server, rate: RateLimit, options: SocketGuardOptions): void {
  const limiter = new RateLimiterMemory({ points: rate.points, duration: rate.seconds })
  const listeners = server.listeners('connection') as Array<(socket: Socket) => void>
  server.removeAllListeners('connection')
  const admit = (socket: Socket) => {
    for (const listener of listeners) listener.call(server, socket)
  }
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress
    if (address === undefined) {
      socket.destroy() // already gone
      return
    }
    // The memory limiter settles at once; its answer comes a microtask later, before any I/O, so
    // nothing the client sends can arrive before the server's own listeners are attached.
    limiter.consume(clientKey(address)).then(
      () => {
        if (socket.destroyed) return
        admit(socket)
      },
      () => {
        options.onClose('connection-rate')
        socket.destroy()
      },
    )
  })
}

/** An HTTPS server (node's Http2SecureServer, a tls.Server), whose 'connection' sockets carry TLS. */
function isTlsServer(server: Server): boolean {
  return typeof (server as Server & { setSecureContext?: unknown }).setSecureContext === 'function'
}

/** The address a per-client limit counts by: an IPv4 address as it is, an IPv6 one by its /64. */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]!
  if (!isIPv6(address)) return address
  const groups = ipv6Groups(address.split('%', 1)[0]!) // without a zone (fe80::1%eth0)
  return `${groups
    .slice(0, 4)
    .map((group) => group.toString(16))
    .join(':')}::/64`
}

function seconds(ms: number): string {
  return `${ms / 1000} s`
}
