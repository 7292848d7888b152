import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { SendProgress } from '../streams/connections.ts'

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

/** Why a guard closed a connection (the `reason` label of herald_http_connections_closed_total). */
export type GuardReason = 'pipelining' | 'stalled'

export interface SocketGuardOptions {
  /**
   * A connection with an answer under way that has unsent bytes and sends none of them this long is
   * closed (--stream-stall-timeout, the same rule as for streams).
   */
  stallTimeoutMs: number
  /** Called for every connection a guard closes. */
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
  /** This server's connections with a request unanswered: the ones the stall check looks at. */
  const answering = new Set<Socket>()
  guardPipelining(server, answering, options)
  const timer = setInterval(
    () => closeStalled(answering, options),
    Math.max(10, Math.floor(options.stallTimeoutMs / 4)),
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
    const socket = request.socket
    if (socket.destroyed) return
    const before = unanswered.get(socket)
    const count = (before ?? 0) + 1
    if (count > MAX_UNANSWERED_REQUESTS || socket.writableLength > MAX_UNREAD_ANSWER_BYTES) {
      options.onClose('pipelining')
      socket.destroy()
      return
    }
    if (before === undefined) socket.once('close', forget)
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
