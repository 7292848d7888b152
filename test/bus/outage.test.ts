import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import pino from 'pino'
import type { BusTransport } from '../../src/bus/cluster.ts'
import { NatsTransport } from '../../src/bus/nats.ts'
import { RedisTransport } from '../../src/bus/redis.ts'
import { until } from '../helpers.ts'
import {
  type PrivateServer,
  programMissing,
  skipWithout,
  startPrivateNats,
  startPrivateRedis,
} from '../services.ts'
import { listen, openCluster } from './contract.ts'

/**
 * The bus server goes away under subscribed nodes and comes back on the same port: meanwhile the
 * heads are polled from the store; after, the transports reconnect by themselves and messages flow
 * again. Private servers: the shared ones are never stopped.
 */
const servers: Array<{
  name: string
  kind: 'redis' | 'nats'
  skip: string | false
  start: () => Promise<PrivateServer>
  transport: (url: string, channel: string) => BusTransport
}> = [
  {
    name: 'Redis',
    kind: 'redis',
    skip: await skipWithout(programMissing('redis-server', 'apt-get install redis-server')),
    start: startPrivateRedis,
    transport: (url, channel) => new RedisTransport(url, channel),
  },
  {
    name: 'NATS',
    kind: 'nats',
    skip: await skipWithout(programMissing('nats-server', 'apt-get install nats-server')),
    start: startPrivateNats,
    transport: (url, channel) => new NatsTransport(url, channel),
  },
]

/** Short, so that the test takes seconds; only the down-poll and the reconnect's re-read run. */
const TIMING = { positionCheckMs: 600_000, downPollMs: 150 }

for (const server of servers) {
  test(`${server.name} stopped and restarted: heads are polled from the store meanwhile; the nodes reconnect by themselves and messages flow again`, {
    skip: server.skip,
  }, async () => {
    const instance = await server.start()
    const backend = {
      kind: server.kind,
      transport: (channel: string) => server.transport(instance.url, channel),
      sendRaw: () => Promise.reject(new Error('unused')),
    }
    const cluster = await openCluster(backend, 2, TIMING)
    try {
      const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]]
      assert.ok(a.connected && b.connected)
      // A few outages in a row: each reconnect must bring the subscription back before it says so.
      for (let round = 1; round <= 3; round++) {
        const topic = `orders-${round}`
        const heard = listen(b, topic)
        await instance.stop()
        await until('both nodes to see the bus down', () => (!a.connected && !b.connected) || undefined)
        // Committed and published while the bus is down: the message is lost (or late); the store has it.
        const head = await cluster.append(topic)
        a.publish(topic, head)
        await heard.waitFor(
          1,
          `the other node to find the head through the down-poll (round ${round})`,
          3_000,
        )

        await instance.start()
        await until('both nodes to reconnect', () => (a.connected && b.connected) || undefined, 20_000)
        // A head the store does not have: only a message can bring it.
        a.publish(topic, 100)
        await heard.waitFor(2, `the other node to hear a message after the reconnect (round ${round})`, 3_000)
        assert.deepEqual(heard.heads, [head, 100])
      }
    } finally {
      await cluster.close()
      await instance.remove()
    }
  })
}

test('Redis: a connection killed alone (the publisher, then the subscriber) comes back, the bus says so, and messages flow again', {
  skip: servers[0]!.skip,
}, async () => {
  const instance = await startPrivateRedis()
  const lines: string[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
  const backend = {
    kind: 'redis' as const,
    transport: (channel: string) => new RedisTransport(instance.url, channel),
    sendRaw: () => Promise.reject(new Error('unused')),
  }
  const cluster = await openCluster(backend, 2, TIMING, { logger })
  const admin = new Redis(instance.url)
  try {
    const [a, b] = cluster.nodes as [(typeof cluster.nodes)[0], (typeof cluster.nodes)[0]]
    // The nodes' publishers are `normal` clients, their subscribers `pubsub` ones (admin is spared).
    for (const [round, type] of ['normal', 'pubsub'].entries()) {
      const topic = `orders-${type}`
      const heard = listen(b, topic)
      await admin.call('CLIENT', 'KILL', 'TYPE', type)
      const again = () => lines.filter((line) => line.includes('bus connected again')).length
      await until(`both nodes to say the bus is back after killing their ${type} connections`, () =>
        again() === 2 * (round + 1) && a.connected && b.connected ? true : undefined,
      )
      a.publish(topic, 100)
      await heard.waitFor(1, `the other node to hear a message after its ${type} connection came back`, 3_000)
    }
  } finally {
    admin.disconnect()
    await cluster.close()
    await instance.remove()
  }
})
