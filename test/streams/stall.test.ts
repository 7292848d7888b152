import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { publish, sleep, startTestServer, type TestServer, until } from '../helpers.ts'
import { range, StreamReader, seqs, WsClient } from './clients.ts'

// --stream-stall-timeout: a stream whose socket has bytes to send and sends none for that long is cut,
// in catch-up as live, for SSE, NDJSON and WebSocket alike; the client resumes from its cursor.

const STALL_MS = 2_000
const BIG = 'x'.repeat(32 * 1024)
/** 400 × 32 KiB ≈ 12.5 MiB: past what the kernel's socket buffers on loopback absorb. */
const BACKLOG = 400

async function publishBig(url: string, topic: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 20) {
    const response = await publish(
      url,
      topic,
      Array.from({ length: Math.min(20, count - i) }, () => ({ type: 'big', data: BIG })),
    )
    assert.equal(response.status, 201)
  }
}

/** One sample of a metric with a protocol label, from /metrics. */
async function metric(server: TestServer, name: string, protocol: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const line = text.split('\n').find((each) => each.startsWith(`${name}{protocol="${protocol}"} `))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

/** Waits until the server holds no stream of `protocol` and has cut `cuts` of them as slow consumers. */
async function cutBy(server: TestServer, protocol: string, cuts: number, timeoutMs: number): Promise<void> {
  await until(
    `the ${protocol} stream cut`,
    async () =>
      (await metric(server, 'herald_slow_consumer_disconnects_total', protocol)) === cuts &&
      (await metric(server, 'herald_connections_open', protocol)) === 0
        ? true
        : undefined,
    timeoutMs,
  )
}

/** A raw HTTP client: sends one GET, then reads nothing until it is resumed. */
function rawGet(server: TestServer, path: string, accept: string): Socket {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\n\r\n`)
  socket.pause()
  return socket
}

/** Resumes a paused raw client and reads until the server's end of the stream. */
async function readToEnd(socket: Socket): Promise<string> {
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  const closed = once(socket, 'close')
  socket.resume()
  await closed
  return Buffer.concat(chunks).toString('utf8')
}

/** The seqs of the complete SSE frames of a raw response (a frame cut off by the close is not one). */
function sseSeqs(text: string): number[] {
  const body = text.slice(text.indexOf('\r\n\r\n') + 4)
  return body
    .split('\n\n')
    .slice(0, -1)
    .filter((frame) => frame.startsWith('id: '))
    .map((frame) => Number(frame.slice(4, frame.indexOf('\n'))))
}

/** The seqs of the complete NDJSON lines of a raw response. */
function ndjsonSeqs(text: string): number[] {
  const body = text.slice(text.indexOf('\r\n\r\n') + 4)
  return body
    .split('\n')
    .slice(0, -1)
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { seq: number }).seq)
}

describe('stalled streams', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ streamStallTimeoutMs: STALL_MS })
  })
  after(() => server.close())

  test('SSE: a reader that stops reading during catch-up is cut; Last-Event-ID gets exactly the rest', async () => {
    await publishBig(server.url, 'stall-sse', BACKLOG)
    const started = Date.now()
    const client = rawGet(server, '/v1/topics/stall-sse/events?after=0', 'text/event-stream')
    try {
      await cutBy(server, 'sse', 1, STALL_MS + 15_000)
      const took = Date.now() - started
      assert.ok(took >= STALL_MS, `cut after ${took} ms: not before the stall timeout`)
      // What the kernel buffers held reaches the client, then the end of the stream.
      const received = sseSeqs(await readToEnd(client))
      assert.ok(received.length > 0 && received.length < BACKLOG, `${received.length} received`)
      assert.deepEqual(received, range(1, received.length))
      const last = received.at(-1)!
      const resumed = await StreamReader.open(`${server.url}/v1/topics/stall-sse/events`, {
        accept: 'text/event-stream',
        'last-event-id': String(last),
      })
      try {
        await resumed.until(() => resumed.sseEvents().length >= BACKLOG - last, 30_000)
        await sleep(100)
        assert.deepEqual(seqs(resumed.sseEvents().map((event) => event.data)), range(last + 1, BACKLOG))
      } finally {
        resumed.close()
      }
    } finally {
      client.destroy()
    }
  })

  test('a slow reader that keeps taking data is not cut', async () => {
    await publishBig(server.url, 'slow-sse', BACKLOG)
    const cutsBefore = await metric(server, 'herald_slow_consumer_disconnects_total', 'ndjson')
    const client = rawGet(server, '/v1/topics/slow-sse/events?after=0', 'application/x-ndjson')
    const chunks: Buffer[] = []
    // Counts the NDJSON lines as they come: past the head (its \r\n\r\n), non-empty lines.
    let inHead = true
    let last4 = 0
    let lineLength = 0
    let lines = 0
    let ended = false
    client.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      for (const byte of chunk) {
        if (inHead) {
          last4 = ((last4 << 8) | byte) >>> 0
          inHead = last4 !== 0x0d0a0d0a
        } else if (byte !== 0x0a) lineLength++
        else if (lineLength > 0) {
          lines++
          lineLength = 0
        }
      }
    })
    client.on('close', () => {
      ended = true
    })
    try {
      // Short reads, each followed by a pause of a quarter of the stall timeout: slow, never stalled.
      const deadline = Date.now() + 120_000
      while (lines < BACKLOG && !ended && Date.now() < deadline) {
        client.resume()
        await sleep(10)
        client.pause()
        await sleep(STALL_MS / 4)
      }
      assert.equal(ended, false, 'the stream was not cut')
      assert.deepEqual(ndjsonSeqs(Buffer.concat(chunks).toString('utf8')), range(1, BACKLOG))
      assert.equal(await metric(server, 'herald_slow_consumer_disconnects_total', 'ndjson'), cutsBefore)
      assert.equal(await metric(server, 'herald_connections_open', 'ndjson'), 1)
    } finally {
      client.destroy()
    }
  })

  test('WebSocket: a subscriber that stops reading during catch-up is cut; after= gets exactly the rest', async () => {
    await publishBig(server.url, 'stall-ws', BACKLOG)
    const url = `${server.url.replace('http', 'ws')}/v1/ws`
    const client = await WsClient.open(url)
    const started = Date.now()
    // From the `subscribed` answer on, the socket reads nothing more.
    const subscribed = new Promise<void>((resolve) =>
      client.ws.once('message', () => {
        client.ws.pause()
        resolve()
      }),
    )
    client.send({ op: 'subscribe', topic: 'stall-ws', after: 0, ref: 's' })
    await subscribed
    try {
      await cutBy(server, 'ws', 1, STALL_MS + 15_000)
      const took = Date.now() - started
      assert.ok(took >= STALL_MS, `cut after ${took} ms: not before the stall timeout`)
      const closed = once(client.ws, 'close')
      client.ws.resume()
      await closed
      // The close frame (4008) follows what was queued, and the socket goes a second later: a client
      // that resumes within that second may still get all of it; in any case a prefix, in order.
      const received = seqs(client.events('stall-ws'))
      assert.ok(received.length > 0, `${received.length} received`)
      assert.deepEqual(received, range(1, received.length))
      const last = received.at(-1)!
      const resumed = await WsClient.open(url)
      try {
        resumed.send({ op: 'subscribe', topic: 'stall-ws', after: last, ref: 'r' })
        await resumed.until(() => resumed.events('stall-ws').length >= BACKLOG - last, 30_000)
        await sleep(100)
        assert.deepEqual(seqs(resumed.events('stall-ws')), range(last + 1, BACKLOG))
      } finally {
        await resumed.close()
      }
    } finally {
      client.ws.terminate()
    }
  })
})

describe('stalled live streams', () => {
  let server: TestServer
  before(async () => {
    // A send buffer larger than everything published: only the stall rule can cut the stream.
    server = await startTestServer({ streamStallTimeoutMs: STALL_MS, streamBufferBytes: 64 * 1024 * 1024 })
  })
  after(() => server.close())

  test('NDJSON: a live reader that stops reading is cut once nothing more is published', async () => {
    const client = rawGet(server, '/v1/topics/stall-live/events', 'application/x-ndjson')
    try {
      await until('the stream opened', async () =>
        (await metric(server, 'herald_connections_open', 'ndjson')) === 1 ? true : undefined,
      )
      await publishBig(server.url, 'stall-live', BACKLOG)
      await cutBy(server, 'ndjson', 1, STALL_MS + 15_000)
      const received = ndjsonSeqs(await readToEnd(client))
      assert.ok(received.length > 0 && received.length < BACKLOG, `${received.length} received`)
      assert.deepEqual(received, range(1, received.length))
    } finally {
      client.destroy()
    }
  })
})
