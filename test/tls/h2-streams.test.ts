import assert from 'node:assert/strict'
import { once } from 'node:events'
import { constants } from 'node:http2'
import { describe, test } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { sleep, startTestServer, type TestServer, until } from '../helpers.ts'
import { certFixture, h2fetch, h2session, h2stream } from './clients.ts'

const SSE = { accept: 'text/event-stream' }
const JSON_BODY = { 'content-type': 'application/json' }

describe('HTTP/2 streams: slow consumers and draining', () => {
  const made = certFixture()

  const start = (overrides: Parameters<typeof startTestServer>[0] = {}) =>
    startTestServer({ tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile }, ...overrides })

  test('a stalled SSE reader is reset while another stream on the same connection keeps streaming', async () => {
    const server: TestServer = await start({ streamStallTimeoutMs: 1000, heartbeatMs: 200 })
    const session = h2session(server.url, made.cert.cert)
    try {
      // The connection's window is large, so that the stalled stream (its own window: 64 KiB) cannot
      // take the whole connection's window with it: HTTP/2 flow control is per stream.
      await once(session, 'connect')
      session.setLocalWindowSize(32 * 1024 * 1024)
      const big = 'x'.repeat(2000)
      for (let batch = 0; batch < 10; batch++) {
        const answer = await h2fetch(session, '/v1/topics/stalled/events', {
          method: 'POST',
          headers: JSON_BODY,
          body: JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ type: 'big', data: `${i}${big}` }))),
        })
        assert.equal(answer.status, 201, answer.body)
      }
      const live = await h2stream(session, '/v1/topics/lively/events', SSE)
      const stalled = await h2stream(session, '/v1/topics/stalled/events?after=0', SSE)
      stalled.stream.pause() // reads nothing more: its window shuts at 64 KiB
      const reset = new Promise<number>((resolve) =>
        stalled.stream.once('close', () => resolve(stalled.stream.rstCode ?? -1)),
      )
      const started = Date.now()
      const timeout = new Promise<number>((resolve) => setTimeout(() => resolve(-2), 15_000).unref())
      const code = await Promise.race([reset, timeout])
      assert.equal(code, constants.NGHTTP2_CANCEL, 'the stalled stream is reset (RST_STREAM CANCEL)')
      assert.ok(Date.now() - started < 10_000)
      // The session and its other stream are untouched: an event published now arrives live.
      assert.equal(session.destroyed, false)
      await h2fetch(session, '/v1/topics/lively/events', {
        method: 'POST',
        headers: JSON_BODY,
        body: JSON.stringify({ type: 'after-the-cut', data: 1 }),
      })
      await live.until(() => live.sse().length === 1)
      assert.equal(live.ended, false)
      const metrics = await h2fetch(session, '/metrics')
      assert.match(metrics.body, /herald_slow_consumer_disconnects_total\{protocol="sse"\} [1-9]/)
      live.close()
    } finally {
      session.destroy()
      await server.close()
    }
  })

  test("a burst to many streams of one connection reaches each whole: none is cut for the others' traffic", async () => {
    // Each stream's buffer limit (16 KiB) is far below what the burst leaves queued for it while the
    // connection carries the other streams' frames (1,000 events × ~330 bytes each).
    const server: TestServer = await start({ streamBufferBytes: 16 * 1024 })
    const session = h2session(server.url, made.cert.cert)
    try {
      const STREAMS = 100
      const EVENTS = 1000
      const post = (body: unknown) =>
        h2fetch(session, '/v1/topics/burst/events', {
          method: 'POST',
          headers: JSON_BODY,
          body: JSON.stringify(body),
        })
      assert.equal((await post({ type: 'first', data: 0 })).status, 201)
      const streams = await Promise.all(
        Array.from({ length: STREAMS }, () => h2stream(session, '/v1/topics/burst/events?after=0', SSE)),
      )
      for (const stream of streams) await stream.until(() => stream.text.includes('id: 1\n'))
      const pad = 'x'.repeat(200)
      // Batches of 100, sent together: the events arrive live, faster than the connection sends them.
      const answers = await Promise.all(
        Array.from({ length: EVENTS / 100 }, (_, batch) =>
          post(Array.from({ length: 100 }, (_, i) => ({ type: 'burst', data: { n: batch * 100 + i, pad } }))),
        ),
      )
      for (const answer of answers) assert.equal(answer.status, 201, answer.body)
      const last = `id: ${EVENTS + 1}\n`
      for (const stream of streams) {
        await stream.until(() => stream.ended || stream.text.slice(-1000).includes(last), 60_000)
      }
      for (const [index, stream] of streams.entries()) {
        assert.equal(stream.ended, false, `stream ${index} was ended (${stream.stream.rstCode})`)
        const ids = stream.sse().map((frame) => Number(frame.id))
        assert.deepEqual(
          ids,
          Array.from({ length: EVENTS + 1 }, (_, i) => i + 1),
          `stream ${index}: each event once, in order`,
        )
      }
      const metrics = await h2fetch(session, '/metrics')
      assert.doesNotMatch(metrics.body, /herald_slow_consumer_disconnects_total\{protocol="sse"\} [1-9]/)
      for (const stream of streams) stream.close()
    } finally {
      session.destroy()
      await server.close()
    }
  })

  test('draining ends HTTP/2 streams with the reconnect hint, and the server closes promptly', async () => {
    const server: TestServer = await start({ shutdownTimeoutMs: 10_000 })
    const session = h2session(server.url, made.cert.cert)
    try {
      const streams = await Promise.all([
        h2stream(session, '/v1/topics/d1/events', SSE),
        h2stream(session, '/v1/topics/d2/events', SSE),
      ])
      await sleep(100)
      const started = Date.now()
      await server.close()
      assert.ok(Date.now() - started < 5000, `closed in ${Date.now() - started} ms`)
      for (const stream of streams) {
        await stream.until(() => stream.ended)
        assert.match(stream.text, /retry: 500\n\n$/)
      }
    } finally {
      session.destroy()
    }
  })

  test('draining over TLS: a request still being sent is cut at --shutdown-timeout (h2 and HTTP/1.1)', async () => {
    const server: TestServer = await start({ shutdownTimeoutMs: 1000 })
    const session = h2session(server.url, made.cert.cert)
    const { port } = new URL(server.url)
    // An HTTP/1.1 request whose body never ends: in flight, it holds the drain until the deadline.
    const h1 = tlsConnect({
      host: '127.0.0.1',
      port: Number(port),
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    })
    h1.on('error', () => undefined)
    await once(h1, 'secureConnect')
    h1.write(
      'POST /v1/topics/slow/events HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"ty',
    )
    // And an HTTP/2 one likewise.
    const h2 = session.request({
      ':method': 'POST',
      ':path': '/v1/topics/slow/events',
      'content-type': 'application/json',
    })
    h2.on('error', () => undefined)
    h2.write('{"ty')
    await sleep(200)
    const started = Date.now()
    await server.close()
    const took = Date.now() - started
    assert.ok(took >= 900 && took < 5000, `closed in ${took} ms`)
    await until(
      'the HTTP/1.1 connection closed',
      () => (h1.destroyed || h1.readableEnded ? true : undefined),
      5000,
    )
    session.destroy()
  })

  test('HTTP/1.1 over TLS: a stalled SSE reader is cut too (the hijacked TLS socket)', async () => {
    const server: TestServer = await start({ streamStallTimeoutMs: 1000 })
    const session = h2session(server.url, made.cert.cert)
    const { port } = new URL(server.url)
    const big = 'x'.repeat(32 * 1024)
    try {
      // 400 × 32 KiB ≈ 12.5 MiB: past what loopback's socket buffers (and TLS's) absorb.
      for (let i = 0; i < 400; i += 20) {
        const answer = await h2fetch(session, '/v1/topics/stall-h1/events', {
          method: 'POST',
          headers: JSON_BODY,
          body: JSON.stringify(Array.from({ length: 20 }, () => ({ type: 'big', data: big }))),
        })
        assert.equal(answer.status, 201)
      }
      const reader = tlsConnect({
        host: '127.0.0.1',
        port: Number(port),
        rejectUnauthorized: false,
        ALPNProtocols: ['http/1.1'],
      })
      reader.on('error', () => undefined)
      await once(reader, 'secureConnect')
      reader.write(
        'GET /v1/topics/stall-h1/events?after=0 HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n\r\n',
      )
      await once(reader, 'data')
      reader.pause()
      const cut = async () => {
        const metrics = await h2fetch(session, '/metrics')
        return (
          /herald_slow_consumer_disconnects_total\{protocol="sse"\} [1-9]/.test(metrics.body) || undefined
        )
      }
      await until('the stalled HTTP/1.1 reader is cut', cut, 15_000)
      reader.destroy()
    } finally {
      session.destroy()
      await server.close()
    }
  })

  test('an HTTP/2 connection that reads nothing of an answer is dropped after the idle timeout', async () => {
    const server: TestServer = await start({ http2IdleTimeoutMs: 1000 })
    const writer = h2session(server.url, made.cert.cert)
    const big = 'x'.repeat(32 * 1024)
    try {
      for (let i = 0; i < 100; i += 20) {
        const answer = await h2fetch(writer, '/v1/topics/unread/events', {
          method: 'POST',
          headers: JSON_BODY,
          body: JSON.stringify(Array.from({ length: 20 }, () => ({ type: 'big', data: big }))),
        })
        assert.equal(answer.status, 201)
      }
      writer.close()
      // ~3 MiB of answer, of which the reader takes nothing past its 64 KiB window.
      const reader = h2session(server.url, made.cert.cert)
      const closed = new Promise<number>((resolve) => {
        const started = Date.now()
        reader.once('close', () => resolve(Date.now() - started))
      })
      const request = reader.request({ ':path': '/v1/topics/unread/events?after=0&limit=100' })
      request.on('error', () => undefined)
      request.end()
      await once(request, 'response')
      request.pause()
      const timeout = new Promise<number>((resolve) => setTimeout(() => resolve(-1), 20_000).unref())
      const took = await Promise.race([closed, timeout])
      assert.ok(took > 0, 'the server dropped the connection')
      assert.ok(took >= 900, `dropped after ${took} ms, not before the idle timeout`)
    } finally {
      await server.close()
    }
  })
})
