import assert from 'node:assert/strict'
import { connect, createServer } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Herald, type HeraldEvent } from '../../src/client/index.ts'
import { publish, startTestServer, type TestServer, until } from '../helpers.ts'
import { startProxy } from './proxy.ts'

describe('client: a proxy that blocks the better transports', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ heartbeatMs: 1000 })
  })
  after(() => server.close())

  for (const [blockSse, expected] of [
    [false, 'sse'],
    [true, 'poll'],
  ] as const) {
    test(`WebSocket refused${blockSse ? ', SSE refused' : ''}: falls back to ${expected} and delivers everything`, async () => {
      const proxy = await startProxy(server.url, { blockSse })
      const topics = [`fb-${expected}-a`, `fb-${expected}-b`]
      const client = new Herald({ url: proxy.url, heartbeat: 1000 })
      const got = new Map<string, number[]>(topics.map((topic) => [topic, []]))
      try {
        for (const topic of topics)
          client.subscribe(topic, (event: HeraldEvent) => got.get(topic)!.push(event.seq), { after: 0 })
        // Some before the client has a connection, some after it fell back.
        for (let i = 0; i < 20; i++)
          for (const topic of topics) await publish(server.url, topic, { type: 'x', data: i })
        await until(
          'the fallback',
          () => (client.state === 'connected' && client.transport === expected ? true : undefined),
          30_000,
        )
        for (let i = 20; i < 40; i++)
          for (const topic of topics) await publish(server.url, topic, { type: 'x', data: i })
        await until(
          'every event',
          () => (topics.every((topic) => got.get(topic)!.length >= 40) ? true : undefined),
          30_000,
        )
        for (const topic of topics)
          assert.deepEqual(
            got.get(topic),
            Array.from({ length: 40 }, (_, i) => i + 1),
            `${topic}: each once, in order`,
          )
        assert.ok(proxy.refused.upgrades >= 2, 'the upgrade was refused')
        if (blockSse) assert.ok(proxy.refused.sse >= 1, 'SSE was refused')
        // Publishing through the proxy works too (plain HTTP).
        const stored = await client.publish(topics[0]!, { type: 'via.proxy', data: { ok: true } })
        assert.equal(stored.seq, 41)
        await until(
          'the published event',
          () => (got.get(topics[0]!)!.length === 41 ? true : undefined),
          30_000,
        )
      } finally {
        client.close()
        await proxy.close()
      }
    })
  }

  test('on a fallback, the client probes the WebSocket again and moves back to it', async () => {
    const proxy = await startProxy(server.url)
    const client = new Herald({ url: proxy.url, heartbeat: 1000, probeInterval: 300 })
    const got: number[] = []
    try {
      client.subscribe('fb-probe', (event) => got.push(event.seq), { after: 0 })
      await until(
        'SSE',
        () => (client.transport === 'sse' && client.state === 'connected' ? true : undefined),
        30_000,
      )
      await publish(server.url, 'fb-probe', { type: 'x' })
      await until('the first event', () => (got.length === 1 ? true : undefined), 30_000)
      // The proxy goes away; the WebSocket would pass now. (The client is pointed at the proxy, so
      // this test swaps the proxy for one that lets upgrades through: the same URL, new behaviour.)
      await proxy.close()
      const port = Number(new URL(proxy.url).port)
      const target = new URL(server.url)
      const tunnel = createServer((socket) => {
        const upstream = connect(Number(target.port), target.hostname)
        socket.pipe(upstream).pipe(socket)
        socket.on('error', () => upstream.destroy())
        upstream.on('error', () => socket.destroy())
      })
      await new Promise<void>((resolve) => tunnel.listen(port, '127.0.0.1', resolve))
      try {
        await until(
          'back on the WebSocket',
          () => (client.transport === 'ws' && client.state === 'connected' ? true : undefined),
          30_000,
        )
        await publish(server.url, 'fb-probe', { type: 'x' })
        await until('the second event', () => (got.length === 2 ? true : undefined), 30_000)
        assert.deepEqual(got, [1, 2])
      } finally {
        client.close()
        tunnel.close()
      }
    } finally {
      client.close()
    }
  })
})
