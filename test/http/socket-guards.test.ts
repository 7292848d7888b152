import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Agent, request } from 'undici'
import { WebSocket } from 'ws'
import { clientKey, MAX_UNANSWERED_REQUESTS } from '../../src/http/socket-guards.ts'
import { publish, startTestServer, type TestServer, until } from '../helpers.ts'

// src/http/socket-guards.ts: connections that make the server hold memory or a file descriptor for
// them are closed by the server, while every other client is still answered.

/** One sample of herald_http_connections_closed_total{reason}. */
async function closedFor(server: TestServer, reason: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const prefix = `herald_http_connections_closed_total{reason="${reason}"} `
  const line = text.split('\n').find((each) => each.startsWith(prefix))
  return line === undefined ? 0 : Number(line.slice(prefix.length))
}

function rawConnect(server: TestServer, localAddress = '127.0.0.1'): Socket {
  const socket = connect({ port: Number(new URL(server.url).port), host: '127.0.0.1', localAddress })
  socket.on('error', () => undefined) // a reset by the server is what some tests expect
  return socket
}

/** Resumes a paused client and reads until the connection ends; returns what came. */
async function readToEnd(socket: Socket): Promise<string> {
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  const closed = new Promise((resolve) =>
    socket.destroyed ? resolve(undefined) : socket.once('close', resolve),
  )
  socket.resume()
  await closed
  return text
}

function count(text: string, what: string): number {
  return text.split(what).length - 1
}

const STALL_MS = 1_000

describe('pipelining and unread answers', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ streamStallTimeoutMs: STALL_MS })
  })
  after(() => server.close())

  test('30,000 pipelined requests never read: the connection is closed, others are answered', async () => {
    const socket = rawConnect(server)
    socket.pause() // reads none of the answers
    socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(30_000))
    await until('the connection closed by the server', async () =>
      (await closedFor(server, 'pipelining')) === 1 ? true : undefined,
    )
    const answered = count(await readToEnd(socket), 'HTTP/1.1 200')
    assert.ok(answered <= MAX_UNANSWERED_REQUESTS, `${answered} answers sent, not 30,000`)
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200)
  })

  test('pipelining within the bound, read as it comes, is answered in full', async () => {
    const socket = rawConnect(server)
    const requests = MAX_UNANSWERED_REQUESTS
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(requests - 1))
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    const text = await readToEnd(socket)
    assert.equal(count(text, 'HTTP/1.1 200'), requests)
    assert.equal(await closedFor(server, 'pipelining'), 1, 'only the first test closed one')
  })

  test('one keep-alive connection used for many requests in turn is never closed', async () => {
    const agent = new Agent({ connections: 1 })
    try {
      for (let i = 0; i < 300; i++) {
        const response = await request(`${server.url}/healthz`, { dispatcher: agent })
        assert.equal(response.statusCode, 200)
        await response.body.text()
      }
    } finally {
      await agent.close()
    }
    assert.equal(await closedFor(server, 'pipelining'), 1)
  })

  test('answers left unread (a few pipelined large pages): closed after the stall timeout', async () => {
    // 40 events of 24 KiB: each answer is about 1 MiB, and 40 requests are within the count.
    const data = 'z'.repeat(24 * 1024)
    await publish(
      server.url,
      'pages',
      Array.from({ length: 40 }, () => ({ type: 'big', data })),
    )
    const socket = rawConnect(server)
    socket.pause()
    const started = Date.now()
    socket.write(
      'GET /v1/topics/pages/events?after=0&limit=40 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(40),
    )
    await until('the connection closed by the server', async () =>
      (await closedFor(server, 'stalled')) === 1 ? true : undefined,
    )
    assert.ok(Date.now() - started >= STALL_MS, 'not before the stall timeout')
    const answered = count(await readToEnd(socket), 'HTTP/1.1 200')
    assert.ok(answered < 40, `${answered} of 40 answers sent`)
    assert.equal(await closedFor(server, 'pipelining'), 1, 'within the count: not closed for it')
  })

  test('a long poll and a stream that wait with nothing to send are not closed', async () => {
    const poll = fetch(`${server.url}/v1/topics/waits/events?after=0&wait=3`)
    const stream = await fetch(`${server.url}/v1/topics/waits/events`, {
      headers: { accept: 'text/event-stream' },
    })
    const reader = stream.body!.getReader()
    const response = await poll // 3 s with nothing to send: three stall timeouts
    assert.equal(response.status, 200)
    assert.deepEqual(((await response.json()) as { events: unknown[] }).events, [])
    await publish(server.url, 'waits', { type: 'late' })
    let text = ''
    while (!text.includes('"type":"late"')) {
      const { value, done } = await reader.read()
      assert.equal(done, false, 'the stream is still open')
      text += new TextDecoder().decode(value)
    }
    await reader.cancel()
    assert.equal(await closedFor(server, 'stalled'), 1, 'only the unread pages were')
  })
})

/** The problem+json answer at the start of a raw response, with its status line. */
function rawProblemOf(text: string): { status: string; type: string; headers: string } {
  const end = text.indexOf('\r\n\r\n')
  assert.ok(end > 0, `a whole head: ${JSON.stringify(text.slice(0, 200))}`)
  const head = text.slice(0, end)
  assert.match(head, /\r\ncontent-type: application\/problem\+json\r\n/i)
  const body = JSON.parse(text.slice(end + 4)) as { type: string }
  return { status: head.slice(0, head.indexOf('\r\n')), type: body.type, headers: head }
}

/** Resolves when the server closes the connection, with what it sent and how long that took. */
function closedByServer(socket: Socket): Promise<{ text: string; afterMs: number }> {
  const started = Date.now()
  let text = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  return new Promise((resolve) =>
    socket.once('close', () => resolve({ text, afterMs: Date.now() - started })),
  )
}

/** Writes `text` one byte every `everyMs` until the socket closes. */
function trickle(socket: Socket, text: string, everyMs: number): void {
  let sent = 0
  const timer = setInterval(() => {
    if (socket.destroyed || sent === text.length) return clearInterval(timer)
    socket.write(text[sent++]!)
  }, everyMs)
  socket.once('close', () => clearInterval(timer))
}

describe('request deadlines', () => {
  const HEADERS_MS = 500
  const REQUEST_MS = 1_500
  let server: TestServer
  before(async () => {
    server = await startTestServer({ headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS })
  })
  after(() => server.close())

  test('headers sent slowly: 408 problem+json after --headers-timeout, the connection closed', async () => {
    const socket = rawConnect(server)
    const closed = closedByServer(socket)
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    trickle(socket, 'X-Slow: abcdefghijklmnopqrstuvwxyz\r\n'.repeat(10), 50)
    const { text, afterMs } = await closed
    assert.ok(afterMs >= HEADERS_MS - 50 && afterMs < REQUEST_MS + 5_000, `closed after ${afterMs} ms`)
    const problem = rawProblemOf(text)
    assert.equal(problem.status, 'HTTP/1.1 408 Request Timeout')
    assert.equal(problem.type, 'urn:herald:problem:request-timeout')
  })

  test('a connection that sends nothing is closed after --headers-timeout too', async () => {
    const { text, afterMs } = await closedByServer(rawConnect(server))
    assert.ok(afterMs >= HEADERS_MS - 50, `closed after ${afterMs} ms`)
    assert.equal(rawProblemOf(text).status, 'HTTP/1.1 408 Request Timeout')
  })

  test('a body sent slowly (POST /websub): 408 after --request-timeout, nothing done', async () => {
    const socket = rawConnect(server)
    const closed = closedByServer(socket)
    const body = 'hub.mode=subscribe&hub.topic=http://127.0.0.1/t&hub.callback=http://127.0.0.1/c'
    socket.write(
      'POST /websub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n' +
        `Content-Length: ${body.length}\r\n\r\n`,
    )
    trickle(socket, body, 50) // 80 bytes at 20 a second: 4 s
    const { text, afterMs } = await closed
    assert.ok(afterMs >= REQUEST_MS - 50 && afterMs < REQUEST_MS + 5_000, `closed after ${afterMs} ms`)
    assert.equal(rawProblemOf(text).status, 'HTTP/1.1 408 Request Timeout')
    const subscriptions = await fetch(`${server.url}/v1/websub/subscriptions`)
    assert.deepEqual(((await subscriptions.json()) as { subscriptions: unknown[] }).subscriptions, [])
  })

  test('a long poll and a stream outlive --request-timeout: they are answers, not requests', async () => {
    const started = Date.now()
    const poll = fetch(`${server.url}/v1/topics/deadline/events?after=0&wait=4`)
    const stream = await fetch(`${server.url}/v1/topics/deadline/events`, {
      headers: { accept: 'application/x-ndjson' },
    })
    const reader = stream.body!.getReader()
    const answer = await poll
    assert.equal(answer.status, 200)
    assert.ok(Date.now() - started >= 3_900, 'held for its whole wait')
    assert.deepEqual(((await answer.json()) as { events: unknown[] }).events, [])
    await publish(server.url, 'deadline', { type: 'late' })
    let text = ''
    while (!text.includes('"type":"late"')) {
      const { value, done } = await reader.read()
      assert.equal(done, false, 'the stream is still open')
      text += new TextDecoder().decode(value)
    }
    await reader.cancel()
    // And a request sent in good time on a fresh connection is answered as ever.
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200)
  })
})

describe('connections per client address', () => {
  const MAX = 3
  let server: TestServer
  // The tests' own look-ups come from an address of their own: fetch's pool keeps connections open.
  const observer = new Agent({ localAddress: '127.0.0.9' })
  before(async () => {
    server = await startTestServer({ maxConnectionsPerIp: MAX })
  })
  after(async () => {
    await observer.close()
    await server.close()
  })

  const refusals = async () => {
    const response = await request(`${server.url}/metrics`, { dispatcher: observer })
    const text = await response.body.text()
    const line = text
      .split('\n')
      .find((each) => each.startsWith('herald_http_connections_closed_total{reason="per-ip"} '))
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
  }

  /** A keep-alive connection from `localAddress` that has had one request answered. */
  async function admitted(localAddress: string, path = '/healthz', accept = '*/*'): Promise<Socket> {
    const socket = rawConnect(server, localAddress)
    socket.setEncoding('latin1')
    let text = ''
    const answered = new Promise<void>((resolve, reject) => {
      socket.on('data', (chunk: string) => {
        text += chunk
        if (text.includes('\r\n\r\n')) resolve()
      })
      socket.once('close', () => reject(new Error(`closed: ${text}`)))
    })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\n\r\n`)
    await answered
    assert.match(text, /^HTTP\/1\.1 200 /)
    return socket
  }

  test('the connection past the bound is refused with 503; another address still gets in', async () => {
    const held = [await admitted('127.0.0.2'), await admitted('127.0.0.2'), await admitted('127.0.0.2')]
    try {
      const extra = rawConnect(server, '127.0.0.2')
      const closed = closedByServer(extra)
      extra.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
      const { text } = await closed
      const problem = rawProblemOf(text)
      assert.equal(problem.status, 'HTTP/1.1 503 Service Unavailable')
      assert.equal(problem.type, 'urn:herald:problem:unavailable')
      assert.match(problem.headers, /\r\nRetry-After: 5(\r\n|$)/i)
      assert.equal(await refusals(), 1)
      // Another address is counted apart.
      ;(await admitted('127.0.0.3')).destroy()
      // One of the three closes: the address may open one again.
      held.pop()!.destroy()
      await until('a connection of 127.0.0.2 admitted again', async () => {
        try {
          held.push(await admitted('127.0.0.2'))
          return true
        } catch {
          return undefined
        }
      })
    } finally {
      for (const socket of held) socket.destroy()
    }
  })

  test('streams count too, and an upgrade past the bound gets the 503', async () => {
    const held = [
      await admitted('127.0.0.4'),
      await admitted('127.0.0.4'),
      await admitted('127.0.0.4', '/v1/topics/x/events', 'text/event-stream'),
    ]
    try {
      const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws`, { localAddress: '127.0.0.4' })
      socket.on('error', () => undefined) // terminated while connecting, below
      const [, response] = (await once(socket, 'unexpected-response')) as [unknown, IncomingMessage]
      assert.equal(response.statusCode, 503)
      socket.terminate()
      held.pop()!.destroy() // the stream closes: a WebSocket may open
      await until('a WebSocket from 127.0.0.4', async () => {
        const ws = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws`, { localAddress: '127.0.0.4' })
        ws.on('error', () => undefined)
        const [event] = await Promise.race([
          once(ws, 'open').then(() => ['open']),
          once(ws, 'unexpected-response').then(() => ['refused']),
        ])
        ws.terminate()
        return event === 'open' ? true : undefined
      })
    } finally {
      for (const socket of held) socket.destroy()
    }
  })
})

test('clientKey: IPv4 as it is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', () => {
  assert.equal(clientKey('203.0.113.7'), '203.0.113.7')
  assert.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7')
  assert.equal(clientKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
  assert.equal(clientKey('2001:db8:1:2::9'), '2001:db8:1:2::/64')
  assert.equal(clientKey('2001:0db8:0001:0002:ffff::1'), '2001:db8:1:2::/64')
  assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(clientKey('::1'), '0:0:0:0::/64')
  assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
})
