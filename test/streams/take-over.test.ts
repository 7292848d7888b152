import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { closeTakenOver, MAX_IGNORED_BYTES, takeOverSocket } from '../../src/http/take-over.ts'
import { publish, sleep, startTestServer, type TestServer, until } from '../helpers.ts'

// An HTTP/1.1 stream takes its connection over from node's HTTP server (src/http/take-over.ts), as a
// WebSocket upgrade does: no parser stays attached (memory: BENCHMARKS.md, "SSE idle memory"), and
// what the client sends after its request is never parsed nor answered, nor held.

const FRAMINGS = [
  { protocol: 'sse', accept: 'text/event-stream' },
  { protocol: 'ndjson', accept: 'application/x-ndjson' },
] as const

/** A raw client of one stream: every byte it received, as text. */
interface RawStream {
  socket: Socket
  text(): string
  /** Resolves when the server has closed the connection. */
  closed: Promise<unknown>
}

async function openRaw(
  server: TestServer,
  topic: string,
  accept: string,
  allowHalfOpen = false,
): Promise<RawStream> {
  const socket = connect({ port: Number(new URL(server.url).port), host: '127.0.0.1', allowHalfOpen })
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => {
    text += chunk
  })
  socket.on('error', () => undefined)
  const closed = once(socket, 'close')
  socket.write(`GET /v1/topics/${topic}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\n\r\n`)
  await until('the stream head', () => (text.includes('\r\n\r\n') ? true : undefined))
  assert.match(text, /^HTTP\/1\.1 200 OK\r\n/)
  return { socket, text: () => text, closed }
}

async function streamsOpen(server: TestServer, protocol: string): Promise<number> {
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  const line = metrics
    .split('\n')
    .find((each) => each.startsWith(`herald_connections_open{protocol="${protocol}"} `))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

async function publishOne(server: TestServer, topic: string, data: unknown): Promise<void> {
  assert.equal((await publish(server.url, topic, { type: 'tick', data })).status, 201)
}

describe('HTTP/1.1 streams take their connection over from the HTTP server', () => {
  let server: TestServer
  /** The server's side of every connection, newest last. */
  const accepted: Socket[] = []
  before(async () => {
    server = await startTestServer({ heartbeatMs: 60_000 })
    server.herald.server.server.on('connection', (socket: Socket) => accepted.push(socket))
  })
  after(() => server.close())

  for (const { protocol, accept } of FRAMINGS) {
    test(`${protocol}: no HTTP parser nor server listener stays on the connection; events still flow`, async () => {
      const topic = `take-${protocol}-1`
      await publishOne(server, topic, 0)
      const client = await openRaw(server, topic, accept)
      try {
        const socket = accepted.at(-1) as Socket & { parser?: unknown }
        assert.equal(socket.parser, null, 'the parser is freed')
        for (const event of ['data', 'end', 'close', 'drain', 'error', 'timeout']) {
          const names = socket.listeners(event).map((listener) => listener.name)
          assert.equal(
            names.some((name) => /socketOn/.test(name)),
            false,
            `no node:http listener on '${event}': ${names.join(', ')}`,
          )
        }
        await publishOne(server, topic, 1)
        await until('the live event', () => (client.text().includes('"data":1') ? true : undefined))
        assert.equal(await streamsOpen(server, protocol), 1)
      } finally {
        client.socket.destroy()
      }
      await until('the stream gone', async () =>
        (await streamsOpen(server, protocol)) === 0 ? true : undefined,
      )
    })

    test(`${protocol}: a request sent after the stream began is not answered into it; the stream goes on`, async () => {
      const topic = `take-${protocol}-2`
      await publishOne(server, topic, 0)
      const client = await openRaw(server, topic, accept)
      try {
        client.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        await publishOne(server, topic, 1)
        await until('the live event', () => (client.text().includes('"data":1') ? true : undefined))
        // Before, node parsed it, Fastify wrote its answer into the stream, and node's server then
        // failed an internal assertion (resOnFinish): an uncaught exception that ended the process.
        assert.equal(client.text().split('HTTP/1.1 ').length - 1, 1, 'one answer: the stream')
        assert.doesNotMatch(client.text(), /"status":"ok"/)
        assert.equal(accepted.at(-1)!.readableLength, 0, 'nothing held')
        assert.equal((await fetch(`${server.url}/healthz`)).status, 200, 'the server is still up')
      } finally {
        client.socket.destroy()
      }
    })

    test(`${protocol}: bytes sent after the stream began are read and dropped; past ${MAX_IGNORED_BYTES} the connection is closed`, async () => {
      const topic = `take-${protocol}-3`
      await publishOne(server, topic, 0)
      const client = await openRaw(server, topic, accept)
      const socket = accepted.at(-1)!
      const half = Buffer.alloc(MAX_IGNORED_BYTES / 2, 'x')
      client.socket.write(half)
      await until('the bytes read', () => (socket.bytesRead >= half.length ? true : undefined))
      assert.equal(socket.readableLength, 0, 'read and not held')
      await publishOne(server, topic, 1)
      await until('the live event', () => (client.text().includes('"data":1') ? true : undefined))
      client.socket.write(Buffer.alloc(MAX_IGNORED_BYTES, 'x'))
      await client.closed
      assert.doesNotMatch(client.text(), /HTTP\/1\.1 4\d\d/, 'nothing answered into the stream')
      await until('the stream gone', async () =>
        (await streamsOpen(server, protocol)) === 0 ? true : undefined,
      )
    })

    test(`${protocol}: a client that ends its side has its connection ended`, async () => {
      const topic = `take-${protocol}-4`
      await publishOne(server, topic, 0)
      const client = await openRaw(server, topic, accept)
      client.socket.end()
      await client.closed
      await until('the stream gone', async () =>
        (await streamsOpen(server, protocol)) === 0 ? true : undefined,
      )
    })
  }
})

describe('shutdown with HTTP/1.1 streams taken over', () => {
  for (const { protocol, accept } of FRAMINGS) {
    test(`${protocol}: a client that keeps its side open after the farewell is closed when the farewell is sent`, async () => {
      const server = await startTestServer() // --shutdown-timeout 1s
      const topic = `take-${protocol}-shutdown`
      await publishOne(server, topic, 0)
      // The client reads the farewell and the FIN but never closes its own side: the server closes
      // the connection once its farewell is sent, not at --shutdown-timeout (1 s here) nor never.
      const client = await openRaw(server, topic, accept, true)
      const started = Date.now()
      const closed = server.close().then(() => 'closed')
      const outcome = await Promise.race([closed, sleep(10_000).then(() => 'still open')])
      client.socket.destroy()
      assert.equal(outcome, 'closed')
      assert.ok(Date.now() - started < 900, `closed after ${Date.now() - started} ms`)
      if (protocol === 'sse') assert.match(client.text(), /retry: 500\n\n$/, 'the farewell')
      await closed
    })
  }
})

test('closeTakenOver destroys what is still open of the connections taken over from a server', async () => {
  // Node's closeAllConnections finds connections through their parsers: it no longer sees these, and a
  // client that reads nothing (its farewell never sent) would keep a drain waiting for ever.
  const taken: Socket[] = []
  const server = createServer((request, response) => {
    const socket = takeOverSocket(request, response)
    socket.write('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n')
    taken.push(socket)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  client.on('error', () => undefined)
  client.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  client.pause() // reads nothing
  await until('the take-over', () => (taken.length === 1 ? true : undefined))
  const closed = server.close()
  server.closeAllConnections()
  assert.equal(taken[0]!.destroyed, false, 'node does not know it any more')
  closeTakenOver(server)
  assert.equal(taken[0]!.destroyed, true)
  await new Promise((resolve) => closed.once('close', resolve))
  client.destroy()
})
