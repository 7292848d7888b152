import { Redis } from 'ioredis'
import type { BusTransport, TransportHandlers } from './cluster.ts'

/**
 * The cluster's channel on Redis pub/sub: one connection publishes, a dedicated one subscribes (a
 * subscribed Redis connection can do nothing else). ioredis reconnects both by itself, with back-off,
 * and subscribes again; the bus is up again once both are back (cluster.ts then re-reads its heads).
 */
export class RedisTransport implements BusTransport {
  private readonly publisher: Redis
  private readonly subscriber: Redis
  private readonly channel: string

  constructor(url: string, channel: string) {
    this.channel = channel
    const options = {
      lazyConnect: true,
      // Never queue commands while disconnected: a head published then is stale by the time it would
      // go out, and the position checks cover it. A bounded memory, whatever the outage's length.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt: number) => Math.min(100 * 2 ** attempt, 2_000),
      connectTimeout: 5_000,
    }
    this.publisher = new Redis(url, options)
    this.subscriber = new Redis(url, { ...options, enableOfflineQueue: true, maxRetriesPerRequest: null })
  }

  async start(handlers: TransportHandlers): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) handlers.message(message)
    })
    // Errors are reported as the connection going down; unheard, they would end the process.
    for (const connection of [this.publisher, this.subscriber]) connection.on('error', () => {})
    // Down when either connection closes (ioredis says so again at each failed retry).
    let subscribed = false
    this.subscriber.on('close', () => {
      subscribed = false
      handlers.down('the Redis subscriber connection closed')
    })
    this.publisher.on('close', () => handlers.down('the Redis publisher connection closed'))
    await Promise.all([this.publisher.connect(), this.subscriber.connect()])
    await this.subscriber.subscribe(this.channel)
    subscribed = true
    // Up again once both are back and the subscription is acknowledged: on 'ready', ioredis sends
    // SUBSCRIBE again without waiting for the answer, so this asks once more (a no-op) and waits.
    const upIfBoth = () => {
      if (subscribed && this.publisher.status === 'ready') handlers.up()
    }
    this.subscriber.on('ready', () => {
      this.subscriber.subscribe(this.channel).then(
        () => {
          subscribed = true
          upIfBoth()
        },
        () => {},
      )
    })
    this.publisher.on('ready', upIfBoth)
  }

  send(message: string): void {
    this.publisher.publish(this.channel, message).catch(() => {
      // Down: the 'close' handler said so; the heads are polled until it is back.
    })
  }

  async close(): Promise<void> {
    this.publisher.disconnect()
    this.subscriber.disconnect()
  }
}
