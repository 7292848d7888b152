import { connect, type NatsConnection } from '@nats-io/transport-node'
import type { BusTransport, TransportHandlers } from './cluster.ts'

/**
 * The cluster's subject on NATS core pub/sub (no JetStream: the heads need no persistence). The client
 * reconnects by itself, forever, and subscribes again; Herald re-reads its heads once the server has
 * that subscription.
 */
export class NatsTransport implements BusTransport {
  private readonly url: string
  private readonly subject: string
  private connection: NatsConnection | undefined

  constructor(url: string, subject: string) {
    this.url = url
    this.subject = subject
  }

  async start(handlers: TransportHandlers): Promise<void> {
    const { hostname, port, username, password } = new URL(this.url)
    const connection = await connect({
      servers: `${hostname}:${port || 4222}`,
      ...(username !== '' && { user: decodeURIComponent(username), pass: decodeURIComponent(password) }),
      name: 'herald',
      // A node's own heads come back to it for nothing: it dropped them anyway (cluster.ts).
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      timeout: 5_000,
    })
    this.connection = connection
    const decoder = new TextDecoder()
    connection.subscribe(this.subject, {
      callback: (error, message) => {
        if (error === null) handlers.message(decoder.decode(message.data))
      },
    })
    // A round trip after the SUB: once the server answers, it has the subscription.
    await connection.flush()
    void (async () => {
      for await (const status of connection.status()) {
        if (status.type === 'disconnect') handlers.down('the NATS connection was lost')
        // The client has sent its SUB again, but the server reads each connection on its own: another
        // node's PUB may still pass it. Up once a round trip on this connection says it is there.
        else if (status.type === 'reconnect') connection.flush().then(handlers.up, () => {})
      }
    })()
  }

  send(message: string): void {
    try {
      this.connection?.publish(this.subject, message)
    } catch {
      // Closed or draining: the position checks cover what this would have said.
    }
  }

  async close(): Promise<void> {
    await this.connection?.close()
  }
}
