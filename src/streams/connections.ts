import type { Duplex } from 'node:stream'
import { expiryOf, type Principal } from '../access/principal.ts'
import { MAX_TIMER_MS } from '../core/duration.ts'
import { errors } from '../core/errors.ts'
import type { Metrics } from '../metrics/metrics.ts'

export type Protocol = 'sse' | 'ndjson' | 'ws'

/**
 * WebSockets let in without the key, waiting for their first `auth` message (for at most 10 s), held
 * at once. A pool apart from --max-connections: sockets that never authenticate cannot fill it.
 */
export const MAX_UNAUTHENTICATED = 1000

/** What the registry needs of every open streaming connection, whatever its protocol. */
export interface StreamConnection {
  readonly protocol: Protocol
  /** Called once per heartbeat interval: send a keep-alive if idle, check the peer is alive. */
  heartbeat(): void
  /** Called every stall check: disconnect if the socket had bytes to send and sent none for `timeoutMs`. */
  checkStall(now: number, timeoutMs: number): void
  /** The server is draining: close with a hint to reconnect (elsewhere). */
  shutdown(): void
  /**
   * Its credentials ran out (a token's `exp`, a key's `expires_at`) or were revoked: end it (a
   * WebSocket with 4401). Only called for connections given to `bindCredentials`.
   */
  expire(reason: 'expired' | 'revoked'): void
  /** Its id in GET /v1/connections (a ULID: they sort by when they opened). */
  readonly id: string
  /** When it opened (epoch ms). */
  readonly since: number
  /** The client's address. */
  readonly remote: string | undefined
  /** The topics it follows now. */
  topics(): string[]
  /** Who opened it; undefined for a WebSocket that has not authenticated yet. */
  who(): Principal | undefined
  /** An administrator closes it (DELETE /v1/connections/{id}). */
  close(): void
}

/** What a connection's credentials commit the registry to watch: their expiry, their key's revocation. */
interface Credentials {
  timer: NodeJS.Timeout | undefined
  keyId: string | undefined
}

/** What SendProgress reads of a socket (a net.Socket, the upgraded one of a WebSocket included). */
interface SendingSocket {
  readonly writableLength: number
  readonly bytesWritten?: number
  /** libuv's handle: `writeQueueSize` is what is left of the write under way, as the kernel takes it. */
  readonly _handle?: { readonly writeQueueSize?: number } | null
}

/** Resolves when `socket` has written out what it holds ('drain'), or is closed. */
export function drainOrClose(socket: Duplex): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      socket.off('drain', done)
      socket.off('close', done)
      resolve()
    }
    socket.on('drain', done)
    socket.on('close', done)
  })
}

/** How often stalls are looked for: four times per --stream-stall-timeout, so one is cut within 1¼ of it. */
export function stallCheckInterval(stallTimeoutMs: number): number {
  return Math.max(10, Math.floor(stallTimeoutMs / 4))
}

/**
 * Whether a socket is still sending: progress is the kernel taking bytes. Two counters show it:
 * `bytesWritten - writableLength` grows when a write completes, and libuv's `writeQueueSize` shrinks
 * while a write is under way (node:net reads it the same way, so as not to time out a socket whose
 * write is still moving). The second matters: a page of catch-up is one corked write of megabytes,
 * which completes only when all of it is taken.
 * A reader that stops reading fills the kernel's buffers, then nothing more is taken: no progress,
 * however much is queued after. A slow reader that keeps reading makes progress and is left alone.
 */
export class SendProgress {
  private readonly socket: SendingSocket
  private completed = 0
  private underway = 0
  private since: number

  constructor(socket: SendingSocket, now = Date.now()) {
    this.socket = socket
    this.since = now
  }

  /** True when the socket has had unsent bytes, and the kernel took none of them, for `timeoutMs`. */
  stalled(now: number, timeoutMs: number): boolean {
    return now - this.lastMoved(now) >= timeoutMs
  }

  /** Whether the socket sent something (or had nothing to send) in the last `ms`. */
  movedWithin(now: number, ms: number): boolean {
    return now - this.lastMoved(now) < ms
  }

  /** When the socket last sent something, or last had nothing to send (now, as far as is seen). */
  private lastMoved(now: number): number {
    const { socket } = this
    const unsent = socket.writableLength
    if (unsent === 0) {
      this.since = now // nothing waiting: not stalled, whatever the reader does
      return now
    }
    const completed = (socket.bytesWritten ?? 0) - unsent
    const underway = socket._handle?.writeQueueSize ?? 0
    if (completed !== this.completed || underway !== this.underway) {
      this.completed = completed
      this.underway = underway
      this.since = now
    }
    return this.since
  }
}

/**
 * Every streaming connection of this process: the connection limit, one heartbeat timer and one
 * stall check for all of them (not timers per connection), and closing them all on shutdown.
 *
 * The stall check runs every quarter of --stream-stall-timeout, so a stalled stream is cut between
 * that timeout and a quarter more after its last progress, in catch-up (where it waits for the socket
 * to drain) as live (where new events only add to what it does not take).
 */
export class Connections {
  private readonly open = new Map<string, StreamConnection>()
  /** Connections in `open` that have not authenticated yet (see admit). */
  private readonly unauthenticated = new Set<StreamConnection>()
  private readonly maxConnections: number
  private readonly metrics: Metrics
  private readonly timer: NodeJS.Timeout
  private readonly stallTimer: NodeJS.Timeout
  /** Connections whose credentials can run out or be revoked (root and open mode need nothing here). */
  private readonly credentials = new Map<StreamConnection, Credentials>()
  /** The connections open under each scoped key, for its revocation. */
  private readonly byKey = new Map<string, Set<StreamConnection>>()

  constructor(options: {
    maxConnections: number
    heartbeatMs: number
    stallTimeoutMs: number
    metrics: Metrics
  }) {
    this.maxConnections = options.maxConnections
    this.metrics = options.metrics
    this.timer = setInterval(() => {
      for (const connection of this.open.values()) connection.heartbeat()
    }, options.heartbeatMs)
    this.timer.unref()
    const stallTimeoutMs = options.stallTimeoutMs
    this.stallTimer = setInterval(() => {
      const now = Date.now()
      for (const connection of [...this.open.values()]) connection.checkStall(now, stallTimeoutMs)
    }, stallCheckInterval(stallTimeoutMs))
    this.stallTimer.unref()
  }

  /**
   * Checks that one more connection fits; if not, counts and throws the 503. An authenticated one must
   * fit under --max-connections. One that has yet to authenticate (a WebSocket may send its key in a
   * first message) must fit in a pool of its own, MAX_UNAUTHENTICATED: sockets without the key cannot
   * take the slots of those with it.
   */
  admit(protocol: Protocol, authenticated = true): void {
    if (
      authenticated
        ? this.open.size - this.unauthenticated.size < this.maxConnections
        : this.unauthenticated.size < MAX_UNAUTHENTICATED
    )
      return
    this.metrics.connectionsRefused.inc({ protocol })
    throw errors.unavailable(
      authenticated
        ? 'This server holds as many streams as it may; try again shortly.'
        : 'This server holds as many sockets waiting to authenticate as it may; send the key with the upgrade, or try again shortly.',
      undefined,
      { 'Retry-After': '5' },
    )
  }

  add(connection: StreamConnection, authenticated = true): void {
    this.open.set(connection.id, connection)
    if (!authenticated) this.unauthenticated.add(connection)
    this.metrics.connectionsOpen.inc({ protocol: connection.protocol })
  }

  /** A connection let in unauthenticated has authenticated: it now needs a slot under --max-connections (or a 503). */
  authenticated(connection: StreamConnection): void {
    if (!this.unauthenticated.has(connection)) return
    this.admit(connection.protocol) // while it still counts as unauthenticated: does it fit?
    this.unauthenticated.delete(connection)
  }

  /**
   * Ties a connection's life to its credentials: it is expired at their expiry, or when its key is
   * revoked. Called again (a WebSocket's fresh `auth`), it replaces what was bound before.
   */
  bindCredentials(connection: StreamConnection, principal: Principal, now = Date.now()): void {
    this.unbind(connection)
    const expiresAt = expiryOf(principal)
    const keyId = principal.kind === 'key' ? principal.id : undefined
    if (expiresAt === undefined && keyId === undefined) return
    const timer =
      expiresAt === undefined
        ? undefined
        : setTimeout(
            // A timer runs at most ~24.8 days: one set for a later expiry is set again when it fires.
            () =>
              Date.now() >= expiresAt
                ? connection.expire('expired')
                : this.bindCredentials(connection, principal),
            Math.min(MAX_TIMER_MS, Math.max(0, expiresAt - now)),
          )
    timer?.unref()
    this.credentials.set(connection, { timer, keyId })
    if (keyId !== undefined) {
      const open = this.byKey.get(keyId) ?? new Set()
      this.byKey.set(keyId, open)
      open.add(connection)
    }
  }

  /** The scoped keys open connections were opened with (the key ring checks them for revocation). */
  keyIds(): Iterable<string> {
    return this.byKey.keys()
  }

  /** A key was revoked: every connection opened with it ends. */
  revoke(keyId: string): void {
    for (const connection of [...(this.byKey.get(keyId) ?? [])]) connection.expire('revoked')
  }

  private unbind(connection: StreamConnection): void {
    const bound = this.credentials.get(connection)
    if (bound === undefined) return
    this.credentials.delete(connection)
    clearTimeout(bound.timer)
    if (bound.keyId !== undefined) {
      const open = this.byKey.get(bound.keyId)
      open?.delete(connection)
      if (open?.size === 0) this.byKey.delete(bound.keyId)
    }
  }

  remove(connection: StreamConnection): void {
    this.unbind(connection)
    this.unauthenticated.delete(connection)
    if (this.open.get(connection.id) === connection && this.open.delete(connection.id)) {
      this.metrics.connectionsOpen.dec({ protocol: connection.protocol })
    }
  }

  get size(): number {
    return this.open.size
  }

  /** The open connections, oldest first (ids are ULIDs). */
  list(): StreamConnection[] {
    return [...this.open.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  }

  /** The open connection with this id (on this node), if any. */
  get(id: string): StreamConnection | undefined {
    return this.open.get(id)
  }

  /** Closes every connection with its reconnect hint and stops the heartbeat. */
  shutdown(): void {
    clearInterval(this.timer)
    clearInterval(this.stallTimer)
    for (const connection of [...this.open.values()]) connection.shutdown()
  }
}
