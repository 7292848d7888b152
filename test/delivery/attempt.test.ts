import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { post, RESPONSE_KEPT_BYTES } from '../../src/delivery/attempt.ts'
import { createGuardedAgent } from '../../src/delivery/targets.ts'
import { until } from '../helpers.ts'

// One attempt (src/delivery/attempt.ts) against a real loopback server whose answers the tests pick.
describe('one delivery attempt', () => {
  const agent = createGuardedAgent({ allowPrivate: true, connectTimeoutMs: 2_000 })
  let server: Server
  let base: string
  /** What the server received: the request target and the body. */
  const received: Array<{ url: string; body: string }> = []
  /** Trickled answers: how many bytes each sent, and whether the client dropped it before its end. */
  const trickles: Array<{ sent: number; dropped: boolean }> = []

  before(async () => {
    server = createServer((request, response) => {
      let body = ''
      request.setEncoding('utf8')
      request.on('data', (chunk: string) => (body += chunk))
      request.on('end', () => {
        received.push({ url: request.url!, body })
        const url = new URL(request.url!, 'http://x')
        switch (url.pathname) {
          case '/ok':
            response.writeHead(200, { 'x-hook-secret': 'abc' }).end('fine')
            return
          case '/big':
            // Larger than what an attempt reads: cut at the cap, the connection dropped.
            response.writeHead(500).end('x'.repeat(200_000))
            return
          case '/page':
            // A receiver that answers with a small page: read whole, its connection kept.
            response.writeHead(200).end('p'.repeat(10_000))
            return
          case '/later':
            response.writeHead(503, { 'retry-after': '7' }).end()
            return
          case '/slow':
            setTimeout(() => response.writeHead(200).end('too late'), 2_000).unref()
            return
          case '/stalls-mid-body':
            response.writeHead(200, { 'content-length': '100' })
            response.write('partial')
            return
          case '/trickles': {
            // 200 at once, then the body one byte every 100 ms: 100 s for all of it.
            const trickle = { sent: 0, dropped: false }
            trickles.push(trickle)
            response.writeHead(200, { 'content-length': '1000' })
            const timer = setInterval(() => {
              response.write('x')
              trickle.sent++
            }, 100)
            response.on('close', () => {
              clearInterval(timer)
              trickle.dropped = !response.writableFinished
            })
            return
          }
          default:
            response.writeHead(404).end()
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  after(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
    await agent.close()
  })

  const attempt = (path: string, extra: { timeoutMs?: number; responseHeader?: string } = {}) =>
    post({
      url: `${base}${path}`,
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
      timeoutMs: extra.timeoutMs ?? 5_000,
      agent,
      ...(extra.responseHeader ? { responseHeader: extra.responseHeader } : {}),
    })

  test('a 2xx: status, the answer kept, the asked-for header, the query string sent as given', async () => {
    const result = await attempt('/ok?a=1&b=%2F', { responseHeader: 'x-hook-secret' })
    assert.equal(result.status, 200)
    assert.equal(result.error, null)
    assert.equal(result.response, 'fine')
    assert.equal(result.header, 'abc')
    assert.deepEqual(received.at(-1), { url: '/ok?a=1&b=%2F', body: '{"n":1}' })
    assert.ok(result.duration_ms >= 0 && result.duration_ms < 5_000)
    assert.ok(Math.abs(result.at - Date.now()) < 5_000)
  })

  test('a page of 10 KB: 2 KiB kept in the log, the rest read, the connection kept for the next attempt', async () => {
    let connections = 0
    const count = () => connections++
    server.on('connection', count)
    try {
      for (let i = 0; i < 3; i++) {
        const result = await attempt('/page')
        assert.equal(result.status, 200)
        assert.equal(result.response!.length, RESPONSE_KEPT_BYTES + 1)
      }
      assert.ok(connections <= 1, `${connections} new connections for three attempts`)
    } finally {
      server.off('connection', count)
    }
  })

  test('a long answer is kept up to the cap, marked as cut', async () => {
    const result = await attempt('/big')
    assert.equal(result.status, 500)
    assert.equal(result.response!.length, RESPONSE_KEPT_BYTES + 1)
    assert.ok(result.response!.endsWith('…'))
    // The agent still works after the connection was dropped.
    assert.equal((await attempt('/ok')).status, 200)
  })

  test('Retry-After is read', async () => {
    const result = await attempt('/later')
    assert.equal(result.status, 503)
    assert.equal(result.retryAfterMs, 7_000)
  })

  test('no status line within the timeout: a failure naming it, and no waiting for the answer', async () => {
    const started = performance.now()
    const result = await attempt('/slow', { timeoutMs: 300 })
    assert.equal(result.status, null)
    assert.equal(result.error, 'timed out after 300 ms')
    assert.ok(performance.now() - started < 1_500, 'settled at the timeout, not at the late answer')
  })

  test('a body that stalls half-way: the status line decides, what came of the body is kept', async () => {
    const result = await attempt('/stalls-mid-body', { timeoutMs: 300 })
    assert.equal(result.status, 200)
    assert.equal(result.error, null)
    assert.equal(result.response, 'partial…')
  })

  test('a 200 that trickles its body: a success after a bounded read, the connection dropped', async () => {
    const started = performance.now()
    const result = await attempt('/trickles', { timeoutMs: 10_000 })
    const took = performance.now() - started
    assert.equal(result.status, 200)
    assert.equal(result.error, null)
    assert.match(result.response!, /^x+…$/)
    assert.ok(took >= 1_000 - 50, `read the body for its window (${took} ms)`)
    assert.ok(took < 5_000, `did not wait for the attempt's timeout (${took} ms)`)
    // The receiver sees its answer cut: the attempt stopped reading rather than waiting for the rest.
    const trickle = trickles.at(-1)!
    await until('the receiver to see the connection dropped', () => (trickle.dropped ? true : undefined))
    assert.ok(trickle.sent < 1_000)
  })

  test('nothing listening: the network error is named', async () => {
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    const result = await post({
      url: `http://127.0.0.1:${port}/`,
      headers: {},
      body: '',
      timeoutMs: 2_000,
      agent,
    })
    assert.equal(result.status, null)
    assert.match(result.error!, /ECONNREFUSED/)
  })

  test('a URL that does not parse is an error, not a throw', async () => {
    const result = await post({ url: 'not a url', headers: {}, body: '', timeoutMs: 1_000, agent })
    assert.equal(result.status, null)
    assert.match(result.error!, /URL/)
  })
})
