import { errors } from '../core/errors.ts'
import type { Metrics } from '../metrics/metrics.ts'

export type Protocol = 'sse' | 'ndjson' | 'ws'

/** What the registry needs of every open streaming connection, whatever its protocol. */
export interface StreamConnection {
  readonly protocol: Protocol
  /** Called once per heartbeat interval: send a keep-alive if idle, check the peer is alive. */
  heartbeat(): void
  /** The server is draining: close with a hint to reconnect (elsewhere). */
  shutdown(): void
}

/**
 * Every streaming connection of this process: the connection limit, one heartbeat timer for all of
 * them (not a timer per connection), and closing them all on shutdown.
 */
export class Connections {
  private readonly open = new Set<StreamConnection>()
  private readonly maxConnections: number
  private readonly metrics: Metrics
  private readonly timer: NodeJS.Timeout

  constructor(options: { maxConnections: number; heartbeatMs: number; metrics: Metrics }) {
    this.maxConnections = options.maxConnections
    this.metrics = options.metrics
    this.timer = setInterval(() => {
      for (const connection of this.open) connection.heartbeat()
    }, options.heartbeatMs)
    this.timer.unref()
  }

  /** Checks that one more connection fits under --max-connections; if not, counts and throws the 503. */
  admit(protocol: Protocol): void {
    if (this.open.size < this.maxConnections) return
    this.metrics.connectionsRefused.inc({ protocol })
    throw errors.unavailable('This server holds as many streams as it may; try again shortly.', undefined, {
      'Retry-After': '5',
    })
  }

  add(connection: StreamConnection): void {
    this.open.add(connection)
    this.metrics.connectionsOpen.inc({ protocol: connection.protocol })
  }

  remove(connection: StreamConnection): void {
    if (this.open.delete(connection)) this.metrics.connectionsOpen.dec({ protocol: connection.protocol })
  }

  get size(): number {
    return this.open.size
  }

  /** Closes every connection with its reconnect hint and stops the heartbeat. */
  shutdown(): void {
    clearInterval(this.timer)
    for (const connection of [...this.open]) connection.shutdown()
  }
}
