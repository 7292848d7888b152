import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { releaseSocket } from './socket-guards.ts'

/**
 * Bytes a client may send on a connection once a stream has taken it over (they are read and thrown
 * away), before it is closed: as much as one request's headers may be (node's --max-http-header-size
 * default), room for a request it pipelined before it saw the answer, or a body it sent unasked.
 */
export const MAX_IGNORED_BYTES = 16 * 1024

/** Node's HTTP parser as node:http attaches it to a server connection (lib/_http_common.js). */
interface HttpParser {
  unconsume(): void
  remove(): void
  close(): void
}

/** The listeners node:http's server puts on each connection (lib/_http_server.js), by function name. */
const SERVER_LISTENERS = [
  ['data', 'bound socketOnData'],
  ['end', 'bound socketOnEnd'],
  ['close', 'bound socketOnClose'],
  ['drain', 'bound socketOnDrain'],
  ['error', 'socketOnError'],
  ['timeout', 'socketOnTimeout'],
] as const

type Listener = (...args: unknown[]) => void

/**
 * The connections taken over, by server (net's `socket.server`): node's closeAllConnections finds a
 * connection through its parser, so it no longer knows these (closeTakenOver does).
 */
const takenOver = new WeakMap<object, Set<Socket>>()

/**
 * Takes an HTTP/1.1 connection over from node's HTTP server for an answer that never ends (an SSE or
 * NDJSON stream), as node itself does when a request upgrades to WebSocket (onParserExecuteCommon in
 * lib/_http_server.js): the server's listeners come off the socket and its parser is freed. Otherwise
 * the parser (its native state), the request and the server's per-connection state stay for as long as
 * the stream lasts: half of what an idle stream cost (BENCHMARKS.md, "SSE idle memory").
 *
 * From then on nothing the client sends is parsed or answered (the stream's answer says
 * `Connection: close`): it is read and thrown away, so that a client's close is seen at once and
 * nothing piles up, and a client that sends more than MAX_IGNORED_BYTES is disconnected. A client that
 * ends its side (FIN) has its connection ended, as node's server does.
 */
export function takeOverSocket(request: IncomingMessage, response: ServerResponse): Socket {
  const socket = request.socket as Socket & { parser?: HttpParser | null }
  response.detachSocket(socket)
  releaseSocket(socket)
  const parser = socket.parser
  const listeners = SERVER_LISTENERS.map(
    ([event, name]) => [event, socket.listeners(event).find((each) => each.name === name)] as const,
  )
  // Already closed (node freed the parser), or not a connection as this node version sets it up: it
  // stays with node's server, which costs memory and nothing else.
  if (!parser || listeners.some(([, listener]) => listener === undefined)) return socket
  for (const [event, listener] of listeners) socket.removeListener(event, listener as Listener)
  // Added while the parser is still attached: node's wrapper of `socket.on` then unconsumes the
  // socket (the parser stops reading it natively), and the bytes come to this listener instead.
  readAndDiscard(socket)
  parser.remove() // from the server's connection list (its header and request timeouts)
  socket.parser = null
  // As node's freeParser: closed once the parser's own call stack (if this is in it) has unwound.
  // Not in a closure here: the socket's listeners would share its scope and keep the parser (and the
  // request it holds) alive.
  setImmediate(closeParser, parser)
  socket.on('end', endSocket)
  // Once the server has ended the stream and its last bytes are sent, the connection is closed
  // without waiting for the client's FIN (node's server does the same after a `Connection: close`
  // answer, destroySoon): the socket is half-open otherwise, for as long as the client likes.
  socket.on('finish', destroySocket)
  const server = (socket as Socket & { server?: object }).server
  if (server !== undefined) {
    const sockets = takenOver.get(server) ?? new Set<Socket>()
    takenOver.set(server, sockets)
    sockets.add(socket)
    socket.on('close', forgetTakenOver)
  }
  // A reset or a write after the client left: the socket is destroyed, and its 'close' ends the stream.
  socket.on('error', ignoreError)
  // Node pauses a connection whose answers back up, and its request when unread: read on.
  socket.resume()
  return socket
}

function readAndDiscard(socket: Socket): void {
  let ignored = 0
  socket.on('data', (chunk: Buffer) => {
    ignored += chunk.length
    if (ignored > MAX_IGNORED_BYTES) socket.destroy()
  })
}

/**
 * Destroys the connections taken over from `server` that are still open: with closeAllConnections,
 * what ends a drain whose grace period is over (a client that reads nothing, so that its stream's
 * farewell is never sent, and closes nothing).
 */
export function closeTakenOver(server: object): void {
  for (const socket of takenOver.get(server) ?? []) socket.destroy()
}

function forgetTakenOver(this: Socket): void {
  takenOver.get((this as Socket & { server?: object }).server!)?.delete(this)
}

/** The client ended its side: the server ends its own once what it wrote is sent (node's server does). */
function endSocket(this: Socket): void {
  this.end()
}

function destroySocket(this: Socket): void {
  this.destroy()
}

function closeParser(parser: HttpParser): void {
  parser.close()
}

function ignoreError(): void {}
