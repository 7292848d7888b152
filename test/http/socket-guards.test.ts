import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { Agent, request } from 'undici'
import { MAX_UNANSWERED_REQUESTS } from '../../src/http/socket-guards.ts'
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
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(30_000))
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
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(requests - 1))
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
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
    socket.write('GET /v1/topics/pages/events?after=0&limit=40 HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(40))
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
