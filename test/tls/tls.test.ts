import assert from 'node:assert/strict'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import type { ClientHttp2Session } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { ConfigError, loadConfig } from '../../src/config/config.ts'
import { MAX_HTTP2_STREAMS } from '../../src/http/server.ts'
import { sleep, startTestServer, type TestServer, tempDir } from '../helpers.ts'
import {
  certFixture,
  h1fetch,
  h1stream,
  h2fetch,
  h2session,
  h2stream,
  handshake,
  makeCert,
  type TestCert,
} from './clients.ts'

const SSE = { accept: 'text/event-stream' }
const NDJSON = { accept: 'application/x-ndjson' }
const JSON_BODY = { 'content-type': 'application/json' }

describe('TLS configuration', () => {
  test('--tls-cert without --tls-key (or the reverse) is a config error; both: https public URL', () => {
    assert.throws(
      () => loadConfig({ 'tls-cert': 'c.pem' }, {}),
      (error: Error) => {
        assert.ok(error instanceof ConfigError)
        assert.match(error.message, /^Invalid --tls-cert: it needs --tls-key \(HERALD_TLS_KEY\)/)
        return true
      },
    )
    assert.throws(() => loadConfig({}, { HERALD_TLS_KEY: 'k.pem' }), /Invalid --tls-key: it needs --tls-cert/)
    const config = loadConfig({ 'tls-cert': 'c.pem' }, { HERALD_TLS_KEY: 'k.pem' })
    assert.match(config.tls!.certFile, /\/c\.pem$/)
    assert.match(config.tls!.keyFile, /\/k\.pem$/)
    assert.equal(config.publicUrl, 'https://127.0.0.1:8080')
    assert.equal(loadConfig({}, {}).publicUrl, 'http://127.0.0.1:8080')
    assert.equal(loadConfig({}, {}).tls, undefined)
  })

  test('an unreadable certificate stops the start with the file named', async () => {
    const dir = await tempDir()
    try {
      await assert.rejects(
        startTestServer({ tls: { certFile: `${dir}/missing.crt`, keyFile: `${dir}/missing.key` } }),
        /--tls-cert: .*missing\.crt cannot be read \(ENOENT\)/,
      )
      // A key that is not the certificate's.
      const one = makeCert(dir, 'one')
      const other = makeCert(dir, 'other')
      await assert.rejects(
        startTestServer({ tls: { certFile: one.certFile, keyFile: other.keyFile } }),
        /do not make a usable certificate and key/,
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('HTTPS with HTTP/2 and HTTP/1.1 on one port', () => {
  const made = certFixture()
  let cert: TestCert
  let server: TestServer
  let session: ClientHttp2Session
  before(async () => {
    cert = made.cert
    server = await startTestServer({
      heartbeatMs: 200,
      tls: { certFile: cert.certFile, keyFile: cert.keyFile },
    })
    session = h2session(server.url, cert.cert)
  })
  after(async () => {
    session.close()
    await server.close()
  })

  test('the URL is https; ALPN offers h2 and http/1.1; the test certificate is served', async () => {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/)
    const seen = await handshake(server.url)
    assert.equal(seen.fingerprint, cert.fingerprint)
    assert.equal(seen.alpn, 'h2')
    const h1 = await h1fetch(`${server.url}/healthz`, cert.cert)
    assert.equal(h1.status, 200)
    assert.equal(h1.alpn, 'http/1.1')
    assert.equal(h1.httpVersion, '1.1')
  })

  test('HTTP/2: publish, a short poll and a long poll answered by a publish', async () => {
    const published = await h2fetch(session, '/v1/topics/h2/events', {
      method: 'POST',
      headers: JSON_BODY,
      body: JSON.stringify([{ type: 'a', data: 1 }, { type: 'b' }]),
    })
    assert.equal(published.status, 201, published.body)
    assert.equal(published.headers['connection'], undefined)
    assert.equal(session.remoteSettings.maxConcurrentStreams, MAX_HTTP2_STREAMS)
    const page = await h2fetch(session, '/v1/topics/h2/events?after=0')
    assert.equal(page.status, 200)
    assert.deepEqual(
      (JSON.parse(page.body) as { events: Array<{ seq: number }> }).events.map((e) => e.seq),
      [1, 2],
    )
    const started = Date.now()
    const held = h2fetch(session, '/v1/topics/h2/events?after=2&wait=10')
    await sleep(300)
    await h2fetch(session, '/v1/topics/h2/events', {
      method: 'POST',
      headers: JSON_BODY,
      body: JSON.stringify({ type: 'c', data: 3 }),
    })
    const answer = await held
    assert.equal(answer.status, 200)
    const body = JSON.parse(answer.body) as { events: Array<{ seq: number }>; next: number }
    assert.deepEqual(
      body.events.map((e) => e.seq),
      [3],
    )
    assert.ok(Date.now() - started >= 300, 'held until the publish')
  })

  test('HTTP/2: an error answer (401-free 404) has no connection header', async () => {
    const answer = await h2fetch(session, '/v1/nothing-here')
    assert.equal(answer.status, 404)
    assert.match(String(answer.headers['content-type']), /problem\+json/)
    assert.equal(answer.headers['connection'], undefined)
  })

  test('HTTP/1.1 over TLS: publish, a short poll and a long poll', async () => {
    const published = await h1fetch(`${server.url}/v1/topics/h1/events`, cert.cert, {
      method: 'POST',
      headers: JSON_BODY,
      body: JSON.stringify({ type: 'a' }),
    })
    assert.equal(published.status, 201, published.body)
    assert.equal(published.alpn, 'http/1.1')
    const page = await h1fetch(`${server.url}/v1/topics/h1/events?after=0`, cert.cert)
    assert.equal((JSON.parse(page.body) as { events: unknown[] }).events.length, 1)
    const held = h1fetch(`${server.url}/v1/topics/h1/events?after=1&wait=10`, cert.cert)
    await sleep(300)
    await h1fetch(`${server.url}/v1/topics/h1/events`, cert.cert, {
      method: 'POST',
      headers: JSON_BODY,
      body: JSON.stringify({ type: 'b' }),
    })
    const answer = await held
    assert.deepEqual(
      (JSON.parse(answer.body) as { events: Array<{ seq: number }> }).events.map((e) => e.seq),
      [2],
    )
  })

  for (const version of ['HTTP/2', 'HTTP/1.1'] as const) {
    const open = (path: string, headers: Record<string, string>) =>
      version === 'HTTP/2'
        ? h2stream(session, path, headers)
        : h1stream(`${server.url}${path}`, cert.cert, headers)
    const post = (topic: string, body: unknown) =>
      h1fetch(`${server.url}/v1/topics/${topic}/events`, cert.cert, {
        method: 'POST',
        headers: JSON_BODY,
        body: JSON.stringify(body),
      })

    test(`${version}: SSE backlog, live events, heartbeats, then Last-Event-ID resumes`, async () => {
      const topic = `sse-${version === 'HTTP/2' ? 2 : 1}`
      await post(topic, [
        { type: 't', data: 1 },
        { type: 't', data: 2 },
      ])
      const stream = await open(`/v1/topics/${topic}/events?after=0`, SSE)
      try {
        assert.equal(stream.status, 200)
        assert.match(String(stream.headers['content-type']), /^text\/event-stream/)
        assert.equal(stream.headers['cache-control'], 'no-cache')
        if (version === 'HTTP/2') assert.equal(stream.headers['connection'], undefined)
        await stream.until(() => stream.sse().length === 2)
        await post(topic, { type: 't', data: 3 })
        await stream.until(() => stream.sse().length === 3)
        assert.deepEqual(
          stream.sse().map((e) => e.id),
          ['1', '2', '3'],
        )
        assert.match(stream.text, /^retry: 2000\n\n/)
        await stream.until(() => stream.text.includes(': heartbeat'))
      } finally {
        stream.close()
      }
      await post(topic, [
        { type: 't', data: 4 },
        { type: 't', data: 5 },
      ])
      const resumed = await open(`/v1/topics/${topic}/events`, { ...SSE, 'last-event-id': '3' })
      try {
        await resumed.until(() => resumed.sse().length === 2)
        assert.deepEqual(
          resumed.sse().map((e) => e.data.seq),
          [4, 5],
        )
      } finally {
        resumed.close()
      }
    })

    test(`${version}: NDJSON and a multi-topic SSE stream receive live events`, async () => {
      const tag = version === 'HTTP/2' ? 2 : 1
      const ndjson = await open(`/v1/topics/nd-${tag}/events`, NDJSON)
      const multi = await open(`/v1/stream?topic=ma-${tag}&topic=mb-${tag}`, SSE)
      try {
        assert.equal(ndjson.status, 200)
        assert.match(String(ndjson.headers['content-type']), /^application\/x-ndjson/)
        assert.equal(multi.status, 200)
        await sleep(100)
        await post(`nd-${tag}`, [
          { type: 'n', data: 1 },
          { type: 'n', data: 2 },
        ])
        await post(`ma-${tag}`, { type: 'a' })
        await post(`mb-${tag}`, { type: 'b' })
        await ndjson.until(() => ndjson.ndjson().length === 2)
        assert.deepEqual(
          ndjson.ndjson().map((e) => e.data),
          [1, 2],
        )
        await multi.until(() => multi.sse().length === 2)
        // Multi-topic frames carry a cursor token, which resumes the stream where it was.
        const token = multi.sse().at(-1)!.id!
        multi.close()
        await post(`ma-${tag}`, { type: 'a2' })
        const resumed = await open(`/v1/stream?topic=ma-${tag}&topic=mb-${tag}`, {
          ...SSE,
          'last-event-id': token,
        })
        try {
          await resumed.until(() => resumed.sse().length === 1)
          assert.equal(resumed.sse()[0]!.data.seq, 2)
        } finally {
          resumed.close()
        }
      } finally {
        ndjson.close()
        multi.close()
      }
    })
  }

  test('HTTP/2 streams are in the connection registry, closable by DELETE /v1/connections/{id}', async () => {
    const stream = await h2stream(session, '/v1/topics/reg/events', SSE)
    try {
      const listed = JSON.parse((await h2fetch(session, '/v1/connections')).body) as {
        connections: Array<{ id: string; protocol: string; topics: string[] }>
      }
      const mine = listed.connections.find((c) => c.topics.includes('reg'))
      assert.ok(mine, 'listed')
      assert.equal(mine.protocol, 'sse')
      const deleted = await h2fetch(session, `/v1/connections/${mine.id}`, { method: 'DELETE' })
      assert.ok(deleted.status === 204 || deleted.status === 200, `${deleted.status} ${deleted.body}`)
      await stream.until(() => stream.ended)
      // The session itself goes on: another request on it is answered.
      assert.equal((await h2fetch(session, '/healthz')).status, 200)
    } finally {
      stream.close()
    }
  })

  test('WebSocket over TLS (HTTP/1.1 upgrade on the same port)', async () => {
    const ws = new WebSocket(`${server.url.replace('https', 'wss')}/v1/ws`, ['herald.v1'], { ca: cert.cert })
    const messages: Array<Record<string, unknown>> = []
    ws.on('message', (data) => messages.push(JSON.parse(String(data)) as Record<string, unknown>))
    await once(ws, 'open')
    try {
      assert.equal(ws.protocol, 'herald.v1')
      ws.send(JSON.stringify({ op: 'subscribe', topic: 'wss', ref: 1 }))
      const deadline = Date.now() + 5000
      while (!messages.some((m) => m['op'] === 'subscribed') && Date.now() < deadline) await sleep(20)
      await h2fetch(session, '/v1/topics/wss/events', {
        method: 'POST',
        headers: JSON_BODY,
        body: JSON.stringify({ type: 'w', data: 'hello' }),
      })
      while (!messages.some((m) => m['op'] === 'event') && Date.now() < deadline) await sleep(20)
      const event = messages.find((m) => m['op'] === 'event')
      assert.ok(event, JSON.stringify(messages))
      assert.equal((event['event'] as { data: unknown }).data, 'hello')
    } finally {
      ws.close()
    }
  })
})

describe('HTTPS: refusals', () => {
  const made = certFixture()

  test('HTTP/2: a 401 (which closes an HTTP/1.1 connection) is answered, the session goes on', async () => {
    const server = await startTestServer({
      apiKey: 'k'.repeat(32),
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const session = h2session(server.url, made.cert.cert)
    try {
      const refused = await h2fetch(session, '/v1/topics/secret/events', {
        method: 'POST',
        headers: JSON_BODY,
        body: '{"type":"x"}',
      })
      assert.equal(refused.status, 401, refused.body)
      assert.match(String(refused.headers['content-type']), /problem\+json/)
      assert.equal(refused.headers['connection'], undefined)
      const allowed = await h2fetch(session, '/v1/topics/secret/events', {
        method: 'POST',
        headers: { ...JSON_BODY, authorization: `Bearer ${'k'.repeat(32)}` },
        body: '{"type":"x"}',
      })
      assert.equal(allowed.status, 201, allowed.body)
      // Over HTTP/1.1 the refusal still closes the connection.
      const h1 = await h1fetch(`${server.url}/v1/topics/secret/events`, made.cert.cert, {
        method: 'POST',
        headers: JSON_BODY,
        body: '{"type":"x"}',
      })
      assert.equal(h1.status, 401)
      assert.equal(h1.headers['connection'], 'close')
    } finally {
      session.destroy()
      await server.close()
    }
  })

  test('--max-connections-per-ip over TLS: the connection past it is closed before the handshake', async () => {
    const server = await startTestServer({
      maxConnectionsPerIp: 1,
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const session = h2session(server.url, made.cert.cert)
    try {
      assert.equal((await h2fetch(session, '/healthz')).status, 200)
      await assert.rejects(handshake(server.url))
      // The first connection is untouched.
      assert.equal((await h2fetch(session, '/healthz')).status, 200)
    } finally {
      session.destroy()
      await server.close()
    }
  })
})

describe('HTTP/2: limits and departures', () => {
  const made = certFixture()

  test('HTTP/2 streams count in --max-connections: past it a 503 on the same session, which goes on', async () => {
    const server = await startTestServer({
      maxConnections: 2,
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const session = h2session(server.url, made.cert.cert)
    try {
      const first = await h2stream(session, '/v1/topics/m1/events', SSE)
      const second = await h2stream(session, '/v1/topics/m2/events', NDJSON)
      assert.equal(first.status, 200)
      assert.equal(second.status, 200)
      const third = await h2fetch(session, '/v1/topics/m3/events', { headers: SSE })
      assert.equal(third.status, 503, third.body)
      assert.equal(third.headers['retry-after'], '5')
      first.close()
      await sleep(200)
      const again = await h2stream(session, '/v1/topics/m3/events', SSE)
      assert.equal(again.status, 200, 'a slot freed by the closed stream')
      again.close()
      second.close()
    } finally {
      session.destroy()
      await server.close()
    }
  })

  test('a long poll whose HTTP/2 stream the client cancels is let go', async () => {
    const server = await startTestServer({
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const session = h2session(server.url, made.cert.cert)
    const open = async () => {
      const metrics = await h2fetch(session, '/metrics')
      return Number(/^herald_long_polls_open (\d+)/m.exec(metrics.body)?.[1])
    }
    try {
      const held = session.request({ ':path': '/v1/topics/lp/events?after=0&wait=30' })
      held.on('error', () => undefined)
      held.end()
      await sleep(300)
      assert.equal(await open(), 1)
      held.close()
      const deadline = Date.now() + 5000
      while ((await open()) !== 0 && Date.now() < deadline) await sleep(50)
      assert.equal(await open(), 0)
    } finally {
      session.destroy()
      await server.close()
    }
  })
})
