import assert from 'node:assert/strict'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { EventSource } from 'eventsource'
import { WebSocket } from 'ws'
import { startHerald } from '../../src/app.ts'
import { loadConfig } from '../../src/config/config.ts'
import {
  problemOf,
  publish,
  type StoredEventJson,
  sleep,
  startTestServer,
  type TestServer,
  tempDir,
} from '../helpers.ts'
import { range, StreamReader, seqs } from './clients.ts'

const SSE = { accept: 'text/event-stream' }
const NDJSON = { accept: 'application/x-ndjson' }

function publishMany(url: string, topic: string, count: number, from = 0) {
  return publish(
    url,
    topic,
    Array.from({ length: count }, (_, i) => ({ type: 'tick', data: from + i })),
  )
}

describe('Server-Sent Events', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ heartbeatMs: 200 })
  })
  after(() => server.close())

  test('headers, retry, backlog after the cursor, then live, then heartbeat comments', async () => {
    await publishMany(server.url, 'sse1', 3)
    const stream = await StreamReader.open(`${server.url}/v1/topics/sse1/events?after=1`, SSE)
    try {
      assert.equal(stream.response.status, 200)
      assert.match(stream.response.headers.get('content-type')!, /^text\/event-stream/)
      assert.equal(stream.response.headers.get('cache-control'), 'no-cache')
      assert.equal(stream.response.headers.get('x-accel-buffering'), 'no')
      await stream.until(() => stream.sseEvents().length === 2)
      await publishMany(server.url, 'sse1', 1, 3)
      await stream.until(() => stream.sseEvents().length === 3)
      const events = stream.sseEvents()
      assert.deepEqual(seqs(events.map((e) => e.data)), [2, 3, 4])
      assert.deepEqual(
        events.map((e) => e.id),
        ['2', '3', '4'],
      )
      assert.equal(
        events.every((e) => e.event === undefined),
        true,
        'no event: line unless named',
      )
      assert.ok(stream.text.startsWith('retry: '), 'a retry line first')
      await stream.until(() => stream.text.includes(': heartbeat\n\n'), 2000)
    } finally {
      stream.close()
    }
  })

  test('without a cursor the stream starts at the head: live events only', async () => {
    await publishMany(server.url, 'sse2', 2)
    const stream = await StreamReader.open(`${server.url}/v1/topics/sse2/events`, SSE)
    try {
      await sleep(100)
      await publishMany(server.url, 'sse2', 1)
      await stream.until(() => stream.sseEvents().length === 1)
      assert.equal(stream.sseEvents()[0]!.data.seq, 3)
    } finally {
      stream.close()
    }
  })

  test('the eventsource package (v5) receives events and named events', async () => {
    await publish(server.url, 'es', [
      { type: 'order.created', data: 1 },
      { type: 'order.paid', data: 2 },
    ])
    const source = new EventSource(`${server.url}/v1/topics/es/events?after=0`)
    const messages: MessageEvent[] = []
    source.onmessage = (event) => messages.push(event)
    const named = new EventSource(`${server.url}/v1/topics/es/events?after=0&named=true`)
    const paid: MessageEvent[] = []
    named.addEventListener('order.paid', (event) => paid.push(event))
    try {
      for (let i = 0; i < 200 && (messages.length < 2 || paid.length < 1); i++) await sleep(10)
      assert.deepEqual(
        messages.map((m) => (JSON.parse(m.data) as StoredEventJson).type),
        ['order.created', 'order.paid'],
      )
      assert.equal(messages[1]!.lastEventId, '2')
      assert.equal(paid.length, 1)
      assert.equal((JSON.parse(paid[0]!.data) as StoredEventJson).data, 2)
    } finally {
      source.close()
      named.close()
    }
  })

  test('resume with Last-Event-ID: exactly the events missed during the disconnect, in order', async () => {
    await publishMany(server.url, 'resume', 3)
    const first = await StreamReader.open(`${server.url}/v1/topics/resume/events?after=0`, SSE)
    await first.until(() => first.sseEvents().length === 3)
    const lastId = first.sseEvents().at(-1)!.id!
    first.close()
    await publishMany(server.url, 'resume', 4, 3) // published while disconnected
    const second = await StreamReader.open(`${server.url}/v1/topics/resume/events`, {
      ...SSE,
      'last-event-id': lastId,
    })
    try {
      await second.until(() => second.sseEvents().length === 4)
      await publishMany(server.url, 'resume', 1, 7)
      await second.until(() => second.sseEvents().length === 5)
      assert.deepEqual(seqs(second.sseEvents().map((e) => e.data)), range(4, 8))
    } finally {
      second.close()
    }
    const viaQuery = await StreamReader.open(`${server.url}/v1/topics/resume/events?last_event_id=6`, SSE)
    await viaQuery.until(() => viaQuery.sseEvents().length === 2)
    assert.deepEqual(seqs(viaQuery.sseEvents().map((e) => e.data)), [7, 8])
    viaQuery.close()
  })

  test('events published during the switch from backlog to live are neither lost nor doubled', async () => {
    await publishMany(server.url, 'switch', 600) // more than one catch-up page
    const streams = await Promise.all(
      Array.from({ length: 5 }, () =>
        StreamReader.open(`${server.url}/v1/topics/switch/events?after=0`, NDJSON),
      ),
    )
    // Publish while the readers are still catching up.
    for (let i = 0; i < 20; i++) await publishMany(server.url, 'switch', 5, 600 + i * 5)
    try {
      for (const stream of streams) {
        await stream.until(() => stream.ndjsonEvents().length >= 700)
        await sleep(50)
        assert.deepEqual(seqs(stream.ndjsonEvents()), range(1, 700))
      }
    } finally {
      for (const stream of streams) stream.close()
    }
  })

  test('multi-topic stream: opaque cursor with every position, resumed exactly', async () => {
    await publishMany(server.url, 'multi/a', 2)
    await publishMany(server.url, 'multi/b', 1)
    const url = `${server.url}/v1/stream?topic=multi/a&topic=multi/b`
    const first = await StreamReader.open(
      `${url}&last_event_id=${Buffer.from('{"multi/a":0,"multi/b":0}').toString('base64url')}`,
      SSE,
    )
    await first.until(() => first.sseEvents().length === 3)
    const token = first.sseEvents().at(-1)!.id!
    assert.doesNotMatch(token, /^\d+$/, 'an opaque token, not a seq')
    first.close()
    await publishMany(server.url, 'multi/a', 1, 2)
    await publishMany(server.url, 'multi/b', 2, 1)
    const second = await StreamReader.open(url, { ...SSE, 'last-event-id': token })
    try {
      await second.until(() => second.sseEvents().length === 3)
      const got = second.sseEvents().map((e) => `${e.data.topic}:${e.data.seq}`)
      assert.deepEqual(
        got.filter((g) => g.startsWith('multi/a')),
        ['multi/a:3'],
      )
      assert.deepEqual(
        got.filter((g) => g.startsWith('multi/b')),
        ['multi/b:2', 'multi/b:3'],
      )
    } finally {
      second.close()
    }
    await problemOf(await fetch(`${url}&last_event_id=not-a-token`, { headers: SSE }), 400)
    await problemOf(await fetch(`${server.url}/v1/stream?topic=a&topic=b&after=3`, { headers: SSE }), 400)
    await problemOf(await fetch(`${server.url}/v1/stream`, { headers: SSE }), 400)
    const badAfter = await fetch(`${server.url}/v1/topics/multi/a/events?after=abc`, { headers: SSE })
    assert.equal((await problemOf(badAfter, 400)).field, 'after')
    const badId = await fetch(`${server.url}/v1/topics/multi/a/events`, {
      headers: { ...SSE, 'last-event-id': 'abc' },
    })
    assert.equal((await problemOf(badId, 400)).field, 'Last-Event-ID')
    await problemOf(await fetch(`${server.url}/v1/stream?topic=a`), 406)
  })

  test('NDJSON: one event per line, resumable with after, keep-alive empty lines', async () => {
    await publishMany(server.url, 'nd', 3)
    const stream = await StreamReader.open(`${server.url}/v1/topics/nd/events?after=1`, NDJSON)
    try {
      assert.equal(stream.response.headers.get('content-type'), 'application/x-ndjson')
      await stream.until(() => stream.ndjsonEvents().length === 2)
      await publishMany(server.url, 'nd', 1, 3)
      await stream.until(() => stream.ndjsonEvents().length === 3)
      assert.deepEqual(seqs(stream.ndjsonEvents()), [2, 3, 4])
      await stream.until(() => stream.text.endsWith('}\n\n'), 2000)
    } finally {
      stream.close()
    }
  })

  test('NDJSON resume: events published during the disconnect come exactly once, in order', async () => {
    await publishMany(server.url, 'ndres', 2)
    const first = await StreamReader.open(`${server.url}/v1/topics/ndres/events?after=0`, NDJSON)
    await first.until(() => first.ndjsonEvents().length === 2)
    const last = first.ndjsonEvents().at(-1)!.seq
    first.close()
    await publishMany(server.url, 'ndres', 3, 2)
    const second = await StreamReader.open(`${server.url}/v1/topics/ndres/events?after=${last}`, NDJSON)
    try {
      await second.until(() => second.ndjsonEvents().length === 3)
      await publishMany(server.url, 'ndres', 1, 5)
      await second.until(() => second.ndjsonEvents().length === 4)
      assert.deepEqual(seqs(second.ndjsonEvents()), range(3, 6))
    } finally {
      second.close()
    }
  })

  test('a stalled reader is cut off while a fast reader on the same topic gets every event', async () => {
    const big = 'x'.repeat(32 * 1024)
    const stalled = connect(Number(new URL(server.url).port), '127.0.0.1')
    stalled.write(
      'GET /v1/topics/slow/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n',
    )
    stalled.pause() // reads nothing: the kernel buffers fill, then Herald's
    await sleep(100)
    const fast = await StreamReader.open(`${server.url}/v1/topics/slow/events`, NDJSON)
    try {
      const total = 400 // 400 × 32 KiB ≈ 12.5 MiB, far past the kernel's and the 256 KiB buffer
      for (let i = 0; i < total; i += 20) {
        await publish(
          server.url,
          'slow',
          Array.from({ length: 20 }, () => ({ type: 'big', data: big })),
        )
      }
      await fast.until(() => fast.ndjsonEvents().length === total, 30_000)
      assert.deepEqual(seqs(fast.ndjsonEvents()), range(1, total))
      // The server let go of the stalled connection (the client, not reading, cannot see the close
      // until it reads past the data already in its kernel buffer).
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      assert.match(metrics, /^herald_slow_consumer_disconnects_total\{protocol="sse"\} 1$/m)
      assert.match(metrics, /^herald_connections_open\{protocol="sse"\} 0$/m)
      assert.match(metrics, /^herald_connections_open\{protocol="ndjson"\} 1$/m)
    } finally {
      fast.close()
      stalled.destroy()
    }
  })

  test('streams accept ?access_token= when a key is set', async () => {
    const secured = await startTestServer({ apiKey: 'stream-key' })
    try {
      await problemOf(await fetch(`${secured.url}/v1/topics/t/events`, { headers: SSE }), 401)
      const stream = await StreamReader.open(`${secured.url}/v1/topics/t/events?access_token=stream-key`, SSE)
      assert.equal(stream.response.status, 200)
      stream.close()
    } finally {
      await secured.close()
    }
  })

  test('CORS: with a key, a browser origin may open a stream', async () => {
    const keyed = await startTestServer({ apiKey: 'cors-key', corsOrigins: ['*'] })
    try {
      const stream = await StreamReader.open(`${keyed.url}/v1/topics/cors/events?access_token=cors-key`, {
        ...SSE,
        origin: 'https://app.example',
      })
      assert.equal(stream.response.status, 200)
      assert.equal(stream.response.headers.get('access-control-allow-origin'), '*')
      stream.close()
      const preflight = await fetch(`${keyed.url}/v1/topics/cors/events`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-headers': 'authorization' },
      })
      assert.equal(preflight.status, 204)
      assert.equal(preflight.headers.get('access-control-allow-headers'), 'authorization')
    } finally {
      await keyed.close()
    }
  })
})

describe('stream limits and shutdown', () => {
  test('past --max-connections a stream or WebSocket is refused with 503 and Retry-After', async () => {
    const server = await startTestServer({ maxConnections: 2 })
    try {
      const a = await StreamReader.open(`${server.url}/v1/topics/x/events`, SSE)
      const b = await StreamReader.open(`${server.url}/v1/topics/x/events`, NDJSON)
      const refused = await fetch(`${server.url}/v1/topics/x/events`, { headers: SSE })
      assert.equal(refused.headers.get('retry-after'), '5')
      await problemOf(refused, 503)
      const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws`)
      const [, response] = (await once(socket, 'unexpected-response')) as [
        unknown,
        { statusCode: number; headers: Record<string, string> },
      ]
      assert.deepEqual([response.statusCode, response.headers['retry-after']], [503, '5'])
      a.close()
      b.close()
    } finally {
      await server.close()
    }
  })

  test('on shutdown, streams end with a short retry hint', async () => {
    const server = await startTestServer()
    const stream = await StreamReader.open(`${server.url}/v1/topics/bye/events`, SSE)
    await stream.until(() => stream.text.startsWith('retry:'))
    await server.close()
    await stream.ended()
    assert.match(stream.text, /retry: 500\n\n$/)
  })
})

test('EventSource reconnects after a server restart with Last-Event-ID and misses nothing', async () => {
  const dataDir = await tempDir()
  const first = await startHerald(
    loadConfig({ port: '0', data: dataDir, 'log-level': 'silent', 'shutdown-timeout': '1s' }, {}),
  )
  const port = new URL(first.url).port
  await publish(first.url, 'restart', [{ type: 'a' }, { type: 'b' }])
  const source = new EventSource(`${first.url}/v1/topics/restart/events?after=0`)
  const received: Array<{ seq: number; lastEventId: string }> = []
  source.onmessage = (message) =>
    received.push({
      seq: (JSON.parse(message.data) as StoredEventJson).seq,
      lastEventId: message.lastEventId,
    })
  try {
    for (let i = 0; i < 200 && received.length < 2; i++) await sleep(10)
    await first.close() // the stream ends with `retry: 500`; the client will come back
    const second = await startHerald(
      loadConfig({ port, data: dataDir, 'log-level': 'silent', 'shutdown-timeout': '1s' }, {}),
    )
    try {
      await publish(second.url, 'restart', [{ type: 'c' }, { type: 'd' }])
      for (let i = 0; i < 500 && received.length < 4; i++) await sleep(10)
      assert.deepEqual(
        received.map((r) => r.seq),
        [1, 2, 3, 4],
      )
      assert.equal(received.at(-1)!.lastEventId, '4')
    } finally {
      source.close()
      await second.close()
    }
  } finally {
    source.close()
    await rm(dataDir, { recursive: true, force: true })
  }
})
