import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { declaredRoutes } from '../../src/http/access.ts'
import { publish, raw, startTestServer, type TestServer } from '../helpers.ts'
import { WsClient } from '../streams/clients.ts'

const KEY = 'access-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }

/** A concrete path for a route pattern: parameters get sample values, topic wildcards a topic. */
function samplePath(url: string): string {
  return url
    .replace(':id', 'hook_x')
    .replace(':delivery', '1')
    .replace('/v1/topics/*', '/v1/topics/t/events')
    .replace('/*', '/anything')
}

describe('every route declares its right, and one check enforces it', () => {
  let server: TestServer
  let hookId: string
  before(async () => {
    server = await startTestServer({ apiKey: KEY, allowPrivateTargets: true, corsOrigins: ['*'] })
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: 'http://127.0.0.1:9/hook', topic: 't' }),
    })
    assert.equal(created.status, 201)
    hookId = ((await created.json()) as { id: string }).id
    assert.equal((await publish(server.url, 't', { type: 'secret.thing' }, AUTH)).status, 201)
  })
  after(() => server.close())

  test('every registered route declares a right; only the probes, the preflight, the hub page, the console, the client bundle and the API documents are public', () => {
    const routes = declaredRoutes(server.herald.server)
    assert.ok(routes.length >= 20, `only ${routes.length} routes recorded`)
    const publicOnes = routes
      .filter((route) => route.right === 'public')
      .map((route) => `${route.method} ${route.url}`)
      .sort()
    assert.deepEqual(publicOnes, [
      'GET /',
      // The API documents (OpenAPI, AsyncAPI): the same for everyone, nothing stored in them.
      'GET /asyncapi.json',
      // The console's scripts and styles: the same for everyone, nothing stored in them.
      'GET /console/assets/*',
      'GET /healthz',
      'GET /metrics',
      'GET /openapi.json',
      'GET /readyz',
      // The client bundle (src/client): the same for everyone, nothing stored in it.
      'GET /v1/client.js',
      'GET /websub',
      'HEAD /',
      'HEAD /asyncapi.json',
      'HEAD /console/assets/*',
      'HEAD /healthz',
      'HEAD /metrics',
      'HEAD /openapi.json',
      'HEAD /readyz',
      'HEAD /v1/client.js',
      'HEAD /websub',
      'OPTIONS /*',
    ])
  })

  test('every route that is not public refuses a request without credentials (401, body not read)', async () => {
    for (const route of declaredRoutes(server.herald.server)) {
      if (route.right === 'public') continue
      const path = samplePath(route.url)
      const answer = await raw(server.url, route.method, path, {
        'content-type': 'application/json',
        'content-length': '2',
      })
      assert.equal(answer.status, 401, `${route.method} ${path} answered ${answer.status}`)
      assert.match(
        answer.headers['content-type'] ?? '',
        /^application\/(problem\+json|.*text\/plain)|^text\/plain/,
      )
      assert.match(answer.headers['www-authenticate'] ?? '', /^Bearer/, `${route.method} ${path}`)
    }
  })

  test('a percent-encoded path reaches the same check (defect: /%761/hooks/<id> gave the secret)', async () => {
    for (const target of [
      `/%761/hooks/${hookId}`,
      `/v%31/hooks/${hookId}`,
      `/%76%31/hooks`,
      `/v1/%68ooks/${hookId}`,
      '/%761/topics/t/events',
      '/v1/topics/t/%65vents',
      '/%761/websub/subscriptions',
    ]) {
      const answer = await raw(server.url, 'GET', target)
      assert.ok([401, 404].includes(answer.status), `${target} answered ${answer.status}`)
      assert.doesNotMatch(answer.body, /whsec_|secret\.thing/, target)
    }
    // With the key, the same spelling is the same route: the check is not a string test of the URL.
    const withKey = await raw(server.url, 'GET', `/%761/hooks/${hookId}`, AUTH)
    assert.equal(withKey.status, 200)
  })

  test('an absolute-form request target reaches the same check (defect: http://x/v1/hooks gave every hook)', async () => {
    for (const target of [
      'http://x/v1/hooks',
      `http://x/v1/hooks/${hookId}`,
      'http://x/v1/topics/t/events',
    ]) {
      const answer = await raw(server.url, 'GET', target)
      assert.ok([401, 404].includes(answer.status), `${target} answered ${answer.status}`)
      assert.doesNotMatch(answer.body, /whsec_|secret\.thing/, target)
    }
  })

  test('?access_token= is taken by streams only, not by a plain read or the hook that holds a secret', async () => {
    const hook = await fetch(`${server.url}/v1/hooks/${hookId}?access_token=${KEY}`)
    assert.equal(hook.status, 401)
    const poll = await fetch(`${server.url}/v1/topics/t/events?access_token=${KEY}`)
    assert.equal(poll.status, 401)
    // Asking for a stream where no stream is answered (a topic's metadata, one event) is no way in.
    for (const path of ['/v1/topics/t', '/v1/topics/t/events/1']) {
      const answer = await fetch(`${server.url}${path}?access_token=${KEY}`, {
        headers: { accept: 'text/event-stream' },
      })
      assert.equal(answer.status, 401, path)
    }
    // A HEAD never opens a stream.
    const head = await fetch(`${server.url}/v1/topics/t/events?after=0`, {
      method: 'HEAD',
      headers: { ...AUTH, accept: 'text/event-stream' },
    })
    assert.equal(head.status, 200)
    assert.match(head.headers.get('content-type') ?? '', /^application\/json/)
    const controller = new AbortController()
    const stream = await fetch(`${server.url}/v1/topics/t/events?after=0&access_token=${KEY}`, {
      headers: { accept: 'text/event-stream' },
      signal: controller.signal,
    })
    assert.equal(stream.status, 200)
    controller.abort()
    const multi = new AbortController()
    const many = await fetch(`${server.url}/v1/stream?topic=t&access_token=${KEY}`, {
      headers: { accept: 'application/x-ndjson' },
      signal: multi.signal,
    })
    assert.equal(many.status, 200)
    multi.abort()
  })

  test('a WebSocket without the key may only authenticate: every other op is 401', async () => {
    const client = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
    try {
      client.send({ op: 'subscribe', topic: 't', after: 0, ref: 1 })
      client.send({ op: 'publish', topic: 't', type: 'x', ref: 2 })
      for (const ref of [1, 2]) assert.equal((await client.reply(ref))['status'], 401)
      assert.equal(client.events('t').length, 0)
    } finally {
      await client.close()
    }
  })
})
