import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { connect, createServer, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Herald, type State } from '../../src/client/index.ts'
import { publish, sleep, startTestServer, type TestServer, until } from '../helpers.ts'

/** A TCP tunnel whose open connections can be frozen: nothing passes and nothing closes (a dead path). */
async function startTunnel(target: string) {
  const to = new URL(target)
  const pairs = new Set<[Socket, Socket]>()
  const all = new Set<Socket>()
  const server = createServer((socket) => {
    const upstream = connect(Number(to.port), to.hostname)
    all.add(socket).add(upstream)
    const pair: [Socket, Socket] = [socket, upstream]
    pairs.add(pair)
    socket.pipe(upstream).pipe(socket)
    socket.on('error', () => upstream.destroy())
    upstream.on('error', () => socket.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Every open connection stops carrying bytes, and is never closed: only silence tells. */
    freeze() {
      for (const [socket, upstream] of pairs) {
        socket.unpipe()
        upstream.unpipe()
        socket.pause()
        upstream.pause()
        upstream.removeAllListeners('end')
      }
      pairs.clear()
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of all) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

describe('client: dead-connection detection', () => {
  let server: TestServer
  before(async () => {
    // The server's own pings (30 s) would not notice in time: the client's silence rule must.
    server = await startTestServer({ heartbeatMs: 30_000 })
  })
  after(() => server.close())

  test('an idle WebSocket stays up (keep-alives answered); a silent one is dropped after 2x heartbeat and resumed without loss', async () => {
    const tunnel = await startTunnel(server.url)
    const client = new Herald({ url: tunnel.url, transport: 'ws', heartbeat: 1000, maxBackoff: 500 })
    const states: State[] = []
    client.on('state', (state) => states.push(state))
    const got: number[] = []
    try {
      client.subscribe('dead', (event) => got.push(event.seq), { after: 0 })
      await until('connected', () => (client.state === 'connected' ? true : undefined), 30_000)
      await sleep(3500) // idle for 3.5 heartbeats
      assert.deepEqual(states, ['connecting', 'connected'], 'an idle, healthy socket is kept')
      await publish(server.url, 'dead', { type: 'x' })
      await until('the first event', () => (got.length === 1 ? true : undefined), 30_000)
      tunnel.freeze()
      const frozenAt = Date.now()
      for (let i = 0; i < 5; i++) await publish(server.url, 'dead', { type: 'x' })
      await until('every event after the freeze', () => (got.length === 6 ? true : undefined), 30_000)
      const took = Date.now() - frozenAt
      assert.deepEqual(got, [1, 2, 3, 4, 5, 6])
      assert.ok(states.includes('disconnected'), states.join(' '))
      assert.ok(took < 8000, `the dead socket was noticed in ${took} ms`)
    } finally {
      client.close()
      await tunnel.close()
    }
  })

  test("the browser's offline and online events: the connection closes, waits, and resumes at once when back", async () => {
    // Node has no window events: a stand-in EventTarget as globalThis's, as a browser has.
    const target = new EventTarget()
    const global = globalThis as { addEventListener?: unknown; removeEventListener?: unknown }
    global.addEventListener = target.addEventListener.bind(target)
    global.removeEventListener = target.removeEventListener.bind(target)
    const client = new Herald({ url: server.url, heartbeat: 30_000 })
    const states: State[] = []
    client.on('state', (state) => states.push(state))
    const got: number[] = []
    try {
      client.subscribe('offline', (event) => got.push(event.seq), { after: 0 })
      await until('connected', () => (client.state === 'connected' ? true : undefined), 30_000)
      target.dispatchEvent(new Event('offline'))
      assert.equal(client.state, 'disconnected')
      for (let i = 0; i < 3; i++) await publish(server.url, 'offline', { type: 'x' })
      await sleep(1000)
      assert.equal(client.state, 'disconnected', 'no reconnect while offline')
      assert.deepEqual(got, [])
      target.dispatchEvent(new Event('online'))
      await until('every event', () => (got.length === 3 ? true : undefined), 30_000)
      assert.deepEqual(got, [1, 2, 3])
      assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected'])
    } finally {
      client.close()
      delete global.addEventListener
      delete global.removeEventListener
    }
  })
})
