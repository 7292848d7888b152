import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import pg from 'pg'
import { Agent, fetch as undiciFetch } from 'undici'
import { WebSocket } from 'ws'
import { subjectOf } from '../../src/access/rate-limit.ts'
import { ConfigError, loadConfig } from '../../src/config/config.ts'
import { problemOf, startTestServer, type TestServer, until } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import {
  type PrivateServer,
  programMissing,
  redisMissing,
  skipWithout,
  startPrivateRedis,
  TEST_REDIS_URL,
} from '../services.ts'
import { WsClient } from '../streams/clients.ts'

// Request budgets (src/access/rate-limit.ts), the connection rate per address and the two
// per-connection maximums, through real HTTP and WebSockets on loopback.

/** Why the tests that need a service cannot run here (said loudly once), or false. */
const noPostgres = await skipWithoutPostgres()
const noRedis = await skipWithout(redisMissing())
const noRedisServer = await skipWithout(programMissing('redis-server', 'apt-get install redis-server'))

const ROOT_KEY = 'rate-limit-test-root-key'
const AS_ROOT = { authorization: `Bearer ${ROOT_KEY}` }

/** A scoped key that may publish and read everything, made with the root key; `rate` its own budget. */
async function createKey(url: string, rate?: string): Promise<string> {
  const response = await fetch(`${url}/v1/keys`, {
    method: 'POST',
    headers: { ...AS_ROOT, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'x',
      scopes: [{ actions: ['publish', 'subscribe'], topics: ['**'] }],
      ...(rate === undefined ? {} : { rate_limit: rate }),
    }),
  })
  assert.equal(response.status, 201, await response.clone().text())
  return ((await response.json()) as { key: string }).key
}

function bearer(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}` }
}

/** A counted request: a read of a topic (through `dispatcher`: undici's fetch, which takes one). */
function read(url: string, headers: Record<string, string> = {}, dispatcher?: Agent): Promise<Response> {
  const target = `${url}/v1/topics/rl/events`
  return dispatcher === undefined
    ? fetch(target, { headers })
    : (undiciFetch(target, { headers, dispatcher }) as unknown as Promise<Response>)
}

/** `r` of a `RateLimit: "name";r=3;t=1` header. */
function remainingOf(response: Response): number {
  const header = response.headers.get('ratelimit') ?? ''
  const start = header.indexOf(';r=')
  assert.ok(start !== -1, `no r= in RateLimit: "${header}"`)
  return Number(header.slice(start + 3, header.indexOf(';', start + 1)))
}

/** Sends `count` requests one after the other; their statuses and answers. */
async function burst(
  count: number,
  send: () => Promise<Response>,
): Promise<{ statuses: number[]; responses: Response[] }> {
  const responses: Response[] = []
  for (let i = 0; i < count; i++) {
    const response = await send()
    await response.arrayBuffer()
    responses.push(response)
  }
  return { statuses: responses.map((r) => r.status), responses }
}

describe('options', () => {
  test('defaults: no request budget, 100 connections per second per address, 1000 and 100 topics', () => {
    const config = loadConfig({}, {})
    assert.equal(config.rateLimit, null)
    assert.deepEqual(config.connectionRatePerIp, { points: 100, seconds: 1 })
    assert.equal(config.maxSubscriptionsPerSocket, 1000)
    assert.equal(config.maxTopicsPerStream, 100)
  })

  test('rates by flag or environment, "off" for none, anything else refused', () => {
    assert.deepEqual(loadConfig({ 'rate-limit': '600/m' }, {}).rateLimit, { points: 600, seconds: 60 })
    assert.deepEqual(loadConfig({}, { HERALD_RATE_LIMIT: '100/s' }).rateLimit, { points: 100, seconds: 1 })
    assert.equal(loadConfig({}, { HERALD_CONNECTION_RATE_PER_IP: 'off' }).connectionRatePerIp, null)
    assert.deepEqual(loadConfig({ 'connection-rate-per-ip': '3000/m' }, {}).connectionRatePerIp, {
      points: 3000,
      seconds: 60,
    })
    assert.equal(loadConfig({}, { HERALD_MAX_SUBSCRIPTIONS_PER_SOCKET: '5' }).maxSubscriptionsPerSocket, 5)
    assert.equal(loadConfig({ 'max-topics-per-stream': '7' }, {}).maxTopicsPerStream, 7)
    for (const flags of [
      { 'rate-limit': '100' },
      { 'rate-limit': '100/d' },
      { 'rate-limit': '-1/s' },
      { 'connection-rate-per-ip': 'lots' },
      { 'max-topics-per-stream': '0' },
      { 'max-subscriptions-per-socket': 'x' },
    ]) {
      assert.throws(() => loadConfig(flags, {}), ConfigError, JSON.stringify(flags))
    }
  })
})

describe('who is counted', () => {
  test('a key by its id, a token by its sub (a long one by its digest, none: by address), else the address', () => {
    const token = (sub: string | undefined) => ({ kind: 'token' as const, sub, scopes: [], expiresAt: 0 })
    const key = { kind: 'key' as const, id: 'K1', name: 'k', scopes: [], expiresAt: null, rateLimit: null }
    assert.equal(subjectOf(key, '127.0.0.1'), 'key:K1')
    assert.equal(subjectOf(token('alice'), '127.0.0.1'), 'sub:alice')
    assert.equal(subjectOf(token(undefined), '127.0.0.1'), 'ip:127.0.0.1')
    const long = subjectOf(token('a'.repeat(500)), '127.0.0.1')
    assert.match(long, /^subh:[\w-]{43}$/)
    assert.notEqual(long, subjectOf(token(`${'a'.repeat(499)}b`), '127.0.0.1'))
    assert.equal(subjectOf({ kind: 'anonymous' }, '::ffff:10.0.0.7'), 'ip:10.0.0.7')
    // An IPv6 client by its /64, as the connection limits count it.
    assert.equal(subjectOf(undefined, '2001:db8:1:2:aaaa::1'), subjectOf(undefined, '2001:db8:1:2:bbbb::9'))
  })
})

describe('request budgets on one node', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY, rateLimit: { points: 5, seconds: 1 } })
  })
  after(() => server.close())

  test('HERALD_RATE_LIMIT=5/s: five answers with what is left, then 429 with Retry-After', async () => {
    const key = await createKey(server.url)
    const { statuses, responses } = await burst(6, () => read(server.url, bearer(key)))
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429])
    for (const response of responses) {
      assert.equal(response.headers.get('ratelimit-policy'), '"default";q=5;w=1')
    }
    assert.deepEqual(responses.map(remainingOf), [4, 3, 2, 1, 0, 0])
    assert.match(responses[0]!.headers.get('ratelimit')!, /^"default";r=4;t=1$/)
    const refused = await read(server.url, bearer(key))
    const problem = await problemOf(refused, 429)
    assert.equal(problem.type, 'urn:herald:problem:rate-limited')
    const retryAfter = refused.headers.get('retry-after')
    assert.ok(retryAfter !== null && /^[1-9]\d*$/.test(retryAfter), `Retry-After: ${retryAfter}`)
    assert.equal(refused.headers.get('ratelimit'), `"default";r=0;t=${retryAfter}`)
    assert.equal(refused.headers.get('ratelimit-policy'), '"default";q=5;w=1')
    // The window ends: the key has its budget again.
    await until('the budget back', async () => {
      const again = await read(server.url, bearer(key))
      await again.arrayBuffer()
      return again.status === 200 ? true : undefined
    })
  })

  test("a key's own rate_limit (2/s) replaces the default", async () => {
    const key = await createKey(server.url, '2/s')
    const { statuses, responses } = await burst(3, () => read(server.url, bearer(key)))
    assert.deepEqual(statuses, [200, 200, 429])
    assert.equal(responses[0]!.headers.get('ratelimit-policy'), '"key";q=2;w=1')
    assert.deepEqual(responses.map(remainingOf), [1, 0, 0])
  })

  test('each key has a budget of its own', async () => {
    const [a, b] = [await createKey(server.url), await createKey(server.url)]
    assert.equal((await burst(6, () => read(server.url, bearer(a)))).statuses.at(-1), 429)
    assert.equal((await burst(1, () => read(server.url, bearer(b)))).statuses[0], 200)
  })

  test('the root key is never limited, and its answers carry no budget', async () => {
    const { statuses, responses } = await burst(20, () => read(server.url, AS_ROOT))
    assert.ok(
      statuses.every((status) => status === 200),
      statuses.join(),
    )
    assert.equal(responses[0]!.headers.get('ratelimit'), null)
  })

  test('/healthz, /readyz and /metrics are never counted', async () => {
    const key = await createKey(server.url, '1/m')
    assert.equal((await burst(2, () => read(server.url, bearer(key)))).statuses[1], 429)
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const { statuses, responses } = await burst(10, () =>
        fetch(`${server.url}${path}`, { headers: bearer(key) }),
      )
      assert.ok(
        statuses.every((status) => status === 200),
        `${path}: ${statuses.join()}`,
      )
      assert.equal(responses[0]!.headers.get('ratelimit'), null, path)
    }
  })

  test('a stream counts once, and carries the headers', async () => {
    const key = await createKey(server.url, '2/m')
    const controller = new AbortController()
    const stream = await fetch(`${server.url}/v1/topics/rl/events`, {
      headers: { ...bearer(key), accept: 'text/event-stream' },
      signal: controller.signal,
    })
    assert.equal(stream.status, 200)
    assert.equal(stream.headers.get('ratelimit'), '"key";r=1;t=60')
    controller.abort()
  })
})

describe('anonymous clients (open mode) are counted by address', () => {
  let server: TestServer
  let other: Agent
  before(async () => {
    server = await startTestServer({ rateLimit: { points: 3, seconds: 60 } })
    // Another loopback address (all of 127/8 is this machine): another client.
    other = new Agent({ localAddress: '127.0.0.2' })
  })
  after(async () => {
    await other.close()
    await server.close()
  })

  test('the fourth request of an address is a 429; another address has its own budget', async () => {
    const { statuses, responses } = await burst(4, () => read(server.url))
    assert.deepEqual(statuses, [200, 200, 200, 429])
    assert.equal(responses[0]!.headers.get('ratelimit-policy'), '"default";q=3;w=60')
    const elsewhere = await burst(1, () => read(server.url, {}, other))
    assert.deepEqual(elsewhere.statuses, [200])
    assert.equal(remainingOf(elsewhere.responses[0]!), 2)
  })
})

/** The status and headers of a WebSocket handshake that was refused, or the 101's headers. */
function handshake(
  url: string,
): Promise<{ status: number; headers: IncomingMessage['headers']; ws?: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.once('upgrade', (response) => resolve({ status: 101, headers: response.headers, ws }))
    ws.once('unexpected-response', (_request, response) => {
      resolve({ status: response.statusCode ?? 0, headers: response.headers })
      response.resume()
    })
    ws.once('error', reject)
  })
}

describe('WebSocket', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY })
  })
  after(() => server.close())

  test('the upgrade counts once; a publish over budget is an error op with 429 and retry_after; the socket stays', async () => {
    const key = await createKey(server.url, '3/m')
    const url = `${server.url.replace('http', 'ws')}/v1/ws?access_token=${key}`
    const opened = await handshake(url)
    assert.equal(opened.status, 101)
    assert.equal(opened.headers['ratelimit-policy'], '"key";q=3;w=60')
    assert.match(String(opened.headers['ratelimit']), /^"key";r=2;t=\d+$/)
    const client = await WsClient.open(url) // the second request of the budget
    opened.ws!.close()
    try {
      client.send({ op: 'publish', topic: 'rl/ws', type: 't', data: 1, ref: 'first' })
      assert.equal((await client.reply('first'))['op'], 'published')
      client.send({ op: 'publish', topic: 'rl/ws', type: 't', data: 2, ref: 'over' })
      const refused = await client.reply('over')
      assert.equal(refused['op'], 'error')
      assert.equal(refused['status'], 429)
      assert.equal(refused['code'], 'rate-limited')
      assert.ok(Number.isInteger(refused['retry_after']) && (refused['retry_after'] as number) >= 1)
      // Subscribes are counted too (each may replay a backlog); unsubscribes are not, and are answered.
      client.send({ op: 'subscribe', topic: 'rl/ws', ref: 'sub' })
      assert.equal((await client.reply('sub'))['status'], 429)
      client.send({ op: 'unsubscribe', topic: 'rl/ws', ref: 'still' })
      assert.equal((await client.reply('still'))['op'], 'unsubscribed')
      assert.equal(client.ws.readyState, WebSocket.OPEN)
      // A new socket is over budget too: its upgrade is a 429 with the headers.
      const again = await handshake(url)
      assert.equal(again.status, 429)
      assert.match(String(again.headers['retry-after']), /^[1-9]\d*$/)
      assert.equal(again.headers['ratelimit-policy'], '"key";q=3;w=60')
      assert.match(String(again.headers['content-type']), /^application\/problem\+json/)
    } finally {
      await client.close()
    }
  })
})

describe('one budget across two nodes', () => {
  async function twoNodes(busUrl: string | undefined) {
    const schema = testSchema('rl')
    const options = {
      apiKey: ROOT_KEY,
      databaseUrl: TEST_DATABASE_URL,
      databaseSchema: schema,
      busUrl,
      rateLimit: { points: 6, seconds: 60 },
    }
    const a = await startTestServer({ ...options, nodeId: 'rl-a' })
    const b = await startTestServer({ ...options, nodeId: 'rl-b' }).catch(async (error: unknown) => {
      await a.close()
      throw error
    })
    return {
      nodes: [a, b],
      schema,
      async close() {
        await Promise.all([a.close(), b.close()])
        await dropSchema(schema)
      },
    }
  }

  /** Twelve requests, alternating between the nodes: exactly six are let through. */
  async function alternate(nodes: TestServer[], headers: Record<string, string>): Promise<number[]> {
    const statuses: number[] = []
    for (let i = 0; i < 12; i++) {
      const response = await read(nodes[i % 2]!.url, headers)
      await response.arrayBuffer()
      statuses.push(response.status)
    }
    return statuses
  }

  test('on one PostgreSQL database', { skip: noPostgres }, async () => {
    const cluster = await twoNodes(undefined)
    try {
      const [a, b] = cluster.nodes as [TestServer, TestServer]
      const key = await createKey(a.url)
      const statuses = await alternate([a, b], bearer(key))
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429, 429, 429, 429])
      // Counted in the schema's table, which migration 005 created.
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
      await client.connect()
      try {
        const { rows } = await client.query(`SELECT key, points FROM ${cluster.schema}.rate_limits`)
        assert.deepEqual(
          rows.map((row) => [row.key.startsWith('6/60:key:'), row.points]),
          [[true, 12]],
        )
      } finally {
        await client.end()
      }
    } finally {
      await cluster.close()
    }
  })

  test('with Redis as the bus, counted in Redis', { skip: noPostgres || noRedis }, async () => {
    const cluster = await twoNodes(TEST_REDIS_URL)
    const redis = new Redis(TEST_REDIS_URL)
    try {
      const [a, b] = cluster.nodes as [TestServer, TestServer]
      const key = await createKey(a.url)
      const statuses = await alternate([a, b], bearer(key))
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 429, 429, 429, 429, 429])
      const keys = await redis.keys(`herald:${cluster.schema}:rl:*`)
      assert.equal(keys.length, 1)
      assert.equal(await redis.get(keys[0]!), '12')
      await redis.del(...keys)
    } finally {
      redis.disconnect()
      await cluster.close()
    }
  })
})

describe('Redis out of reach', () => {
  let redis: PrivateServer | undefined
  after(async () => {
    await redis?.remove()
  })

  test('budgets are counted per process: answered, never 500, never unlimited', {
    skip: noPostgres || noRedisServer,
  }, async () => {
    redis = await startPrivateRedis()
    const schema = testSchema('rl')
    const server = await startTestServer({
      apiKey: ROOT_KEY,
      databaseUrl: TEST_DATABASE_URL,
      databaseSchema: schema,
      busUrl: redis.url,
      rateLimit: { points: 3, seconds: 60 },
    })
    try {
      const key = await createKey(server.url)
      assert.deepEqual((await burst(1, () => read(server.url, bearer(key)))).statuses, [200])
      await redis.stop('SIGKILL')
      // This process has not counted any of them: the full budget, here, then 429.
      const { statuses, responses } = await burst(5, () => read(server.url, bearer(key)))
      assert.deepEqual(statuses, [200, 200, 200, 429, 429])
      assert.deepEqual(responses.map(remainingOf), [2, 1, 0, 0, 0])
    } finally {
      await server.close()
      await dropSchema(schema)
    }
  })
})

/** Sends one request on `socket` and reads its answer (up to its Content-Length body). */
async function exchange(socket: Socket, path: string): Promise<string> {
  let text = ''
  socket.setEncoding('latin1')
  const done = new Promise<string>((resolve, reject) => {
    const onData = (chunk: string) => {
      text += chunk
      const end = text.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(text.slice(0, end))
      if (end !== -1 && length && text.length >= end + 4 + Number(length[1])) {
        socket.off('data', onData)
        resolve(text)
      }
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error(`closed after: ${text}`)))
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  return done
}

describe('--connection-rate-per-ip', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ connectionRatePerIp: { points: 3, seconds: 60 } })
  })
  after(() => server.close())

  function open(): Socket {
    const socket = connect({ port: Number(new URL(server.url).port), host: '127.0.0.1' })
    socket.on('error', () => undefined) // a reset is what the refused ones get
    return socket
  }

  test('past the rate new connections are closed; an open keep-alive connection is answered', async () => {
    const kept = open()
    await once(kept, 'connect')
    assert.match(await exchange(kept, '/healthz'), /^HTTP\/1.1 200 /)
    for (let i = 0; i < 2; i++) {
      const socket = open()
      assert.match(await exchange(socket, '/healthz'), /^HTTP\/1.1 200 /)
      socket.destroy()
    }
    // The fourth connection of the minute: closed without a word.
    const refused = open()
    let received = ''
    refused.on('data', (chunk) => (received += chunk))
    refused.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
    await once(refused, 'close')
    assert.equal(received, '')
    // The connection that was already open goes on.
    assert.match(await exchange(kept, '/healthz'), /^HTTP\/1.1 200 /)
    const metrics = await exchange(kept, '/metrics')
    assert.match(metrics, /herald_http_connections_closed_total\{reason="connection-rate"\} 1\n/)
    kept.destroy()
  })
})

describe('--max-subscriptions-per-socket and --max-topics-per-stream', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ maxSubscriptionsPerSocket: 2, maxTopicsPerStream: 2 })
  })
  after(() => server.close())

  test('a socket follows at most 2 topics; the third subscribe is a 400, the socket stays', async () => {
    const client = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
    try {
      for (const topic of ['a', 'b', 'c']) client.send({ op: 'subscribe', topic: `max/${topic}`, ref: topic })
      assert.equal((await client.reply('a'))['op'], 'subscribed')
      assert.equal((await client.reply('b'))['op'], 'subscribed')
      const refused = await client.reply('c')
      assert.equal(refused['op'], 'error')
      assert.equal(refused['status'], 400)
      assert.match(String(refused['detail']), /at most 2 topics/)
      client.send({ op: 'unsubscribe', topic: 'max/a', ref: 'room' })
      await client.reply('room')
      client.send({ op: 'subscribe', topic: 'max/c', ref: 'fits' })
      assert.equal((await client.reply('fits'))['op'], 'subscribed')
    } finally {
      await client.close()
    }
  })

  test('a stream of 3 topics is a 400; of 2, a stream', async () => {
    const headers = { accept: 'text/event-stream' }
    const three = await fetch(`${server.url}/v1/stream?topic=a&topic=b&topic=c`, { headers })
    const problem = await problemOf(three, 400)
    assert.match(problem.detail, /at most 2 topics/)
    const controller = new AbortController()
    const two = await fetch(`${server.url}/v1/stream?topic=a&topic=b`, { headers, signal: controller.signal })
    assert.equal(two.status, 200)
    controller.abort()
  })
})
