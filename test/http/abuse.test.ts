import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { loadConfig } from '../../src/config/config.ts'
import { problemOf, publish, raw, readAll, startTestServer, type TestServer } from '../helpers.ts'

/** Regression tests for what abuse testing found, each through real HTTP on loopback. */

describe('a hook pattern cannot freeze the server (defect 3)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ allowPrivateTargets: true })
  })
  after(() => server.close())

  test('a publish of a 50-segment type to a *.*.….z hook is answered, and so is /healthz meanwhile', async () => {
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: 'http://127.0.0.1:9/hook', event: '*.*.*.*.*.*.*.*.*.*.z' }),
    })
    assert.equal(created.status, 201)
    const type = Array.from({ length: 50 }, (_, i) => `s${i}`).join('.')
    const [published, health] = await Promise.all([
      publish(server.url, 'freeze', { type }),
      fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(10_000) }),
    ])
    assert.equal(published.status, 201)
    assert.equal(health.status, 200)
  })
})

describe('an open server (no key) cannot be used by web pages (defect 4)', () => {
  let server: TestServer
  let port: string
  before(async () => {
    server = await startTestServer({ allowPrivateTargets: true })
    port = new URL(server.url).port
  })
  after(() => server.close())

  test('a foreign Origin is refused (403) for reads, publishes, hooks and the WebSub hub; nothing is stored', async () => {
    const evil = { origin: 'https://evil.example' }
    const attempts: Array<[string, string, Record<string, string>, string]> = [
      ['POST', '/v1/topics/open/events', { 'content-type': 'application/json' }, '{"type":"x"}'],
      ['POST', '/v1/topics/open/events', { 'content-type': 'text/plain', 'ce-type': 'x' }, 'hi'],
      ['GET', '/v1/topics/open/events', {}, ''],
      ['POST', '/v1/hooks', { 'content-type': 'application/json' }, '{"target_url":"http://127.0.0.1:9/"}'],
      [
        'POST',
        '/websub',
        { 'content-type': 'application/x-www-form-urlencoded' },
        'hub.mode=subscribe&hub.topic=x&hub.callback=http://127.0.0.1:9/',
      ],
    ]
    for (const [method, path, headers, body] of attempts) {
      const answer = await raw(
        server.url,
        method,
        path,
        {
          ...evil,
          ...headers,
          'content-length': String(body.length),
        },
        body,
      )
      assert.equal(answer.status, 403, `${method} ${path}: ${answer.status} ${answer.body}`)
      assert.equal(answer.headers['access-control-allow-origin'], undefined)
    }
    assert.deepEqual(await readAll(server.url, 'open'), [])
    const hooks = (await (await fetch(`${server.url}/v1/hooks`)).json()) as { hooks: unknown[] }
    assert.deepEqual(hooks.hooks, [])
  })

  test('a Host that is not a loopback name is refused (DNS rebinding); loopback names are served', async () => {
    for (const host of [
      `evil.example:${port}`,
      'evil.example',
      `127.0.0.1.evil.example:${port}`,
      `[::2]:${port}`,
    ]) {
      const answer = await raw(server.url, 'GET', '/v1/topics', { host })
      assert.equal(answer.status, 403, host)
      assert.match(answer.body, /DNS rebinding/)
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, '127.1.2.3']) {
      assert.equal((await raw(server.url, 'GET', '/v1/topics', { host })).status, 200, host)
    }
  })

  test('the server’s own pages may call it; no CORS header is given by default', async () => {
    const own = await raw(
      server.url,
      'POST',
      '/v1/topics/open/events',
      {
        origin: `http://127.0.0.1:${port}`,
        'content-type': 'application/json',
        'content-length': '12',
      },
      '{"type":"x"}',
    )
    assert.equal(own.status, 201)
    assert.equal(own.headers['access-control-allow-origin'], undefined)
  })

  test('a WebSocket from a foreign page is refused at the upgrade', async () => {
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws`, { origin: 'https://evil.example' })
    const status = await new Promise<number>((resolve, reject) => {
      ws.on('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0))
      ws.on('open', () => reject(new Error('opened')))
      ws.on('error', () => {})
    })
    assert.equal(status, 403)
  })

  test('CORS defaults: "*" with a key (bearer keys are not ambient), none without', () => {
    assert.deepEqual(loadConfig({}, { HERALD_API_KEY: 'k' }).corsOrigins, ['*'])
    assert.deepEqual(loadConfig({}, {}).corsOrigins, [])
    assert.deepEqual(loadConfig({ 'cors-origins': 'https://a.example' }, {}).corsOrigins, [
      'https://a.example',
    ])
  })

  test('with a key, any Host is served and CORS is as configured', async () => {
    const keyed = await startTestServer({ apiKey: 'cors-key-123456', corsOrigins: ['*'] })
    try {
      const answer = await raw(keyed.url, 'GET', '/v1/topics', {
        host: 'herald.example',
        origin: 'https://app.example',
        authorization: 'Bearer cors-key-123456',
      })
      assert.equal(answer.status, 200)
      assert.equal(answer.headers['access-control-allow-origin'], '*')
    } finally {
      await keyed.close()
    }
  })
})

describe('every error is problem+json, Fastify’s and Node’s included (defect 18)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  test('a malformed percent-encoding, an oversized URL, bad HTTP: problem+json, never a 5xx', async () => {
    const cases: Array<[string, number]> = [
      ['/v1/topics/a%/events', 400],
      ['/v1/topics/a%zz/events', 400],
      ['/%', 400],
      [`/v1/topics/${'a'.repeat(100_000)}/events`, 431],
    ]
    for (const [target, status] of cases) {
      const answer = await raw(server.url, 'GET', target)
      assert.equal(
        answer.status,
        status,
        `${target.slice(0, 40)}: ${answer.status} ${answer.body.slice(0, 200)}`,
      )
      assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/, target.slice(0, 40))
      const problem = JSON.parse(answer.body) as { status: number; type: string }
      assert.equal(problem.status, status)
      assert.match(problem.type, /^urn:herald:problem:/)
    }
    const junk = await raw(server.url, 'GET', '/ HTTP/1.1\r\nBad Header Line\r\nX:', {})
    assert.equal(junk.status, 400)
    assert.match(junk.headers['content-type'] ?? '', /^application\/problem\+json/)
  })

  test('JSON that is not UTF-8 is refused (400), not stored with U+FFFD', async () => {
    const body = Buffer.concat([
      Buffer.from('{"type":"t","data":"caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}'),
    ])
    const response = await fetch(`${server.url}/v1/topics/utf8/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    })
    assert.equal(response.status, 400)
    assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/)
    assert.deepEqual(await readAll(server.url, 'utf8'), [])
  })
})

describe('a repeated query parameter is a 400, never a 500 (found by the fuzz suite)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  test('on every route that reads one, the parameter is named; given once, it works', async () => {
    // `?after=a&after=b` arrives as an array, which reached SQLite as a parameter value: a 500.
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: 'http://93.184.216.34/never', topic: 'no-events' }),
    })
    assert.equal(created.status, 201)
    const hook = ((await created.json()) as { id: string }).id
    const sse = { accept: 'text/event-stream' }
    const cursor = Buffer.from('{"a":0}').toString('base64url')
    const cases: Array<[string, string, Record<string, string>]> = [
      ['/v1/topics?after=a&after=b', 'after', {}],
      ['/v1/topics?limit=1&limit=2', 'limit', {}],
      ['/v1/topics/t/events?after=1&after=2', 'after', {}],
      ['/v1/topics/t/events?wait=0&wait=0', 'wait', {}],
      ['/v1/topics/t/events?after=1&after=2', 'after', sse],
      [`/v1/stream?topic=a&topic=b&last_event_id=${cursor}&last_event_id=${cursor}`, 'last_event_id', sse],
      ['/v1/stream?topic=a&last_event_id=1&last_event_id=2', 'last_event_id', sse],
      ['/v1/hooks?after=a&after=b', 'after', {}],
      [`/v1/hooks/${hook}/deliveries?event=a&event=b`, 'event', {}],
      [`/v1/hooks/${hook}/deliveries?delivery=1&delivery=2`, 'delivery', {}],
      ['/v1/websub/subscriptions?after=a&after=b', 'after', {}],
      ['/v1/websub/subscriptions?topic=a&topic=b', 'topic', {}],
      ['/v1/websub/verifications?topic=a&topic=b', 'topic', {}],
    ]
    for (const [target, field, headers] of cases) {
      const response = await fetch(`${server.url}${target}`, { headers })
      const problem = await problemOf(response, 400)
      assert.equal(problem.field, field, target)
      assert.match(problem.detail, /more than once/, target)
      const once = await fetch(`${server.url}${target.replace(/&[^&]*$/, '')}`, {
        headers,
        signal: AbortSignal.timeout(2000),
      })
      assert.equal(once.status, 200, `${target} with the parameter once`)
      await once.body?.cancel()
    }
  })
})
