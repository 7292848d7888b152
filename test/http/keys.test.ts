import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { EventSource } from 'eventsource'
import { WebSocket } from 'ws'
import { problemOf, publish, readAll, startTestServer, type TestServer, until } from '../helpers.ts'
import { StreamReader, WsClient } from '../streams/clients.ts'

const ROOT_KEY = 'root-key-0123456789abcdef'
const root = { authorization: `Bearer ${ROOT_KEY}` }

interface CreatedKey {
  id: string
  key: string
  name: string
  scopes: Array<{ actions: string[]; topics: string[] }>
  expires_at: string | null
  rate_limit: string | null
  created_by: string
}

async function createKey(url: string, body: unknown, headers = root): Promise<Response> {
  return fetch(`${url}/v1/keys`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

async function newKey(
  url: string,
  scopes: Array<{ actions: string[]; topics: string[] }>,
  extra: Record<string, unknown> = {},
): Promise<CreatedKey> {
  const response = await createKey(url, { name: 'test', scopes, ...extra })
  assert.equal(response.status, 201, await response.clone().text())
  return (await response.json()) as CreatedKey
}

const bearer = (key: { key: string }) => ({ authorization: `Bearer ${key.key}` })

describe('scoped keys', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY, allowPrivateTargets: true })
  })
  after(() => server.close())

  test('the secret is shown once at creation, never listed; a key is read and revoked by id', async () => {
    const created = await newKey(server.url, [{ actions: ['publish'], topics: ['orders/*'] }], {
      rate_limit: '10/s',
      expires_at: '2099-01-01T00:00:00Z',
    })
    assert.match(created.key, /^hk_[0-9A-Z]{26}[A-Za-z0-9_-]{43}$/)
    assert.equal(created.rate_limit, '10/s')
    assert.equal(created.expires_at, '2099-01-01T00:00:00.000Z')
    assert.equal(created.created_by, 'root')
    const one = (await (
      await fetch(`${server.url}/v1/keys/${created.id}`, { headers: root })
    ).json()) as Record<string, unknown>
    assert.equal(one['id'], created.id)
    assert.equal(one['key'], undefined, 'the secret is never shown again')
    const list = await (await fetch(`${server.url}/v1/keys`, { headers: root })).text()
    assert.ok(list.includes(created.id))
    assert.ok(!list.includes(created.key), 'the listing does not carry the secret')
    assert.ok(!list.includes('secret_hash'), 'nor its digest')
    const removed = await fetch(`${server.url}/v1/keys/${created.id}`, { method: 'DELETE', headers: root })
    assert.equal(removed.status, 204)
    await problemOf(await fetch(`${server.url}/v1/keys/${created.id}`, { headers: root }), 404)
  })

  test('bad key definitions are 400s naming the field, and store nothing', async () => {
    const before = await (await fetch(`${server.url}/v1/keys`, { headers: root })).text()
    const cases: Array<[unknown, string]> = [
      [{ scopes: [{ actions: ['publish'], topics: ['a'] }] }, 'name'],
      [{ name: 'x', scopes: [] }, 'scopes'],
      [{ name: 'x', scopes: [{ actions: ['delete'], topics: ['a'] }] }, 'scopes[0].actions'],
      [{ name: 'x', scopes: [{ actions: ['publish'], topics: ['a/**/b'] }] }, 'scopes[0].topics[0]'],
      [{ name: 'x', scopes: [{ actions: ['publish'], topics: ['a b'] }] }, 'scopes[0].topics[0]'],
      [{ name: 'x', scopes: [{ actions: ['publish'], topics: [] }] }, 'scopes[0].topics'],
      [
        { name: 'x', scopes: [{ actions: ['publish'], topics: ['a'] }], expires_at: '2001-01-01T00:00:00Z' },
        'expires_at',
      ],
      [{ name: 'x', scopes: [{ actions: ['publish'], topics: ['a'] }], rate_limit: 'fast' }, 'rate_limit'],
      [{ name: 'x', scopes: [{ actions: ['publish'], topics: ['a'] }], owner: 'me' }, 'owner'],
    ]
    for (const [body, field] of cases) {
      const problem = await problemOf(await createKey(server.url, body), 400)
      assert.equal(problem.field, field, JSON.stringify(body))
    }
    assert.equal(await (await fetch(`${server.url}/v1/keys`, { headers: root })).text(), before)
  })

  test('a subscribe-only key reads but cannot publish; a publish-only key publishes but cannot read', async () => {
    const reader = await newKey(server.url, [{ actions: ['subscribe'], topics: ['**'] }])
    const writer = await newKey(server.url, [{ actions: ['publish'], topics: ['**'] }])
    const refused = await problemOf(await publish(server.url, 'rw', { type: 't' }, bearer(reader)), 403)
    assert.match(refused.detail, /publish/)
    assert.equal((await publish(server.url, 'rw', { type: 't' }, bearer(writer))).status, 201)
    assert.equal((await readAll(server.url, 'rw', bearer(reader))).length, 1)
    await problemOf(await fetch(`${server.url}/v1/topics/rw/events`, { headers: bearer(writer) }), 403)
    await problemOf(await fetch(`${server.url}/v1/topics/rw`, { headers: bearer(writer) }), 403)
    // Streams too: SSE and NDJSON, one topic or several.
    for (const path of ['/v1/topics/rw/events', '/v1/stream?topic=rw']) {
      await problemOf(
        await fetch(`${server.url}${path}`, { headers: { ...bearer(writer), accept: 'text/event-stream' } }),
        403,
      )
    }
    // Neither may administer.
    await problemOf(await fetch(`${server.url}/v1/hooks`, { headers: bearer(reader) }), 403)
    await problemOf(await createKey(server.url, { name: 'x', scopes: [] }, bearer(writer)), 403)
  })

  test('a pattern key reaches orders/eu but not billing, nor orders itself', async () => {
    const key = await newKey(server.url, [{ actions: ['publish', 'subscribe'], topics: ['orders/*'] }])
    assert.equal((await publish(server.url, 'orders/eu', { type: 't' }, bearer(key))).status, 201)
    await problemOf(await publish(server.url, 'billing', { type: 't' }, bearer(key)), 403)
    await problemOf(await publish(server.url, 'orders', { type: 't' }, bearer(key)), 403)
    await problemOf(await publish(server.url, 'orders/eu/paris', { type: 't' }, bearer(key)), 403)
    const deep = await newKey(server.url, [{ actions: ['publish'], topics: ['orders/**'] }])
    assert.equal((await publish(server.url, 'orders/eu/paris', { type: 't' }, bearer(deep))).status, 201)
    await problemOf(await publish(server.url, 'orders', { type: 't' }, bearer(deep)), 403)
    // A multi-topic stream needs the right on each of its topics.
    await problemOf(
      await fetch(`${server.url}/v1/stream?topic=orders/eu&topic=billing`, {
        headers: { ...bearer(key), accept: 'application/x-ndjson' },
      }),
      403,
    )
    const stream = await StreamReader.open(`${server.url}/v1/stream?topic=orders/eu&topic=orders/us`, {
      ...bearer(key),
      accept: 'application/x-ndjson',
      'last-event-id': 'e30', // an empty cursor: from the start of each topic
    })
    try {
      assert.equal(stream.response.status, 200)
    } finally {
      stream.close()
    }
    // The topic list shows what the key may read, and nothing else.
    await publish(server.url, 'billing', { type: 't' }, root)
    const listed = (await (await fetch(`${server.url}/v1/topics`, { headers: bearer(key) })).json()) as {
      topics: Array<{ topic: string }>
    }
    assert.deepEqual(
      listed.topics.map((t) => t.topic),
      ['orders/eu'],
    )
  })

  test('WebSocket: subscribe and publish are checked per topic (403 error op, the socket stays)', async () => {
    const key = await newKey(server.url, [
      { actions: ['subscribe'], topics: ['chat/*'] },
      { actions: ['publish'], topics: ['chat/lobby'] },
    ])
    const client = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${key.key}`)
    try {
      client.send({ op: 'subscribe', topic: 'chat/lobby', ref: 1 })
      assert.equal((await client.reply(1))['op'], 'subscribed')
      client.send({ op: 'subscribe', topic: 'billing', ref: 2 })
      const denied = await client.reply(2)
      assert.equal(denied['op'], 'error')
      assert.equal(denied['status'], 403)
      client.send({ op: 'publish', topic: 'chat/other', type: 'm', data: 1, ref: 3 })
      assert.equal((await client.reply(3))['status'], 403)
      client.send({ op: 'publish', topic: 'chat/lobby', type: 'm', data: 2, ref: 4 })
      assert.equal((await client.reply(4))['op'], 'published')
      await client.until(() => client.events('chat/lobby').length === 1)
      assert.equal(client.ws.readyState, WebSocket.OPEN)
    } finally {
      await client.close()
    }
  })

  test('a revoked key is refused at once, and its open SSE stream and WebSocket end (4401)', async () => {
    const key = await newKey(server.url, [{ actions: ['subscribe', 'publish'], topics: ['rv'] }])
    assert.equal((await publish(server.url, 'rv', { type: 't' }, bearer(key))).status, 201)
    const source = new EventSource(`${server.url}/v1/topics/rv/events?after=0&access_token=${key.key}`)
    const received: string[] = []
    source.onmessage = (message) => received.push(message.data)
    const errors: number[] = []
    source.onerror = (error) => errors.push((error as { code?: number }).code ?? 0)
    const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${key.key}`)
    try {
      await until('the stream to deliver', () => (received.length === 1 ? true : undefined))
      const closed = once(ws.ws, 'close')
      const removed = await fetch(`${server.url}/v1/keys/${key.id}`, { method: 'DELETE', headers: root })
      assert.equal(removed.status, 204)
      await problemOf(await publish(server.url, 'rv', { type: 't' }, bearer(key)), 401)
      const [code] = (await closed) as [number]
      assert.equal(code, 4401)
      // EventSource reconnects with the same key, is refused with 401, and gives up.
      await until('EventSource to be refused', () =>
        source.readyState === EventSource.CLOSED ? true : undefined,
      )
      assert.ok(errors.includes(401), `errors: ${errors.join(',')}`)
    } finally {
      source.close()
      await ws.close()
    }
  })

  test('a key with an expiry: its stream ends then, and the key is refused after', async () => {
    const expires = new Date(Date.now() + 1500)
    const key = await newKey(server.url, [{ actions: ['subscribe'], topics: ['**'] }], {
      expires_at: expires.toISOString(),
    })
    const stream = await StreamReader.open(`${server.url}/v1/topics/exp/events`, {
      ...bearer(key),
      accept: 'text/event-stream',
    })
    assert.equal(stream.response.status, 200)
    await stream.ended()
    assert.ok(Date.now() >= expires.getTime() - 50, 'the stream ended at the expiry, not before')
    const problem = await problemOf(
      await fetch(`${server.url}/v1/topics/exp/events`, { headers: bearer(key) }),
      401,
    )
    assert.match(problem.detail, /expired/)
  })

  test('a made-up hk_ key, or one of the right shape but wrong secret, is a 401', async () => {
    const key = await newKey(server.url, [{ actions: ['subscribe'], topics: ['**'] }])
    const forged = `${key.key.slice(0, -1)}${key.key.endsWith('A') ? 'B' : 'A'}`
    for (const token of [forged, 'hk_nothing', `hk_${'0'.repeat(26)}${'a'.repeat(43)}`]) {
      await problemOf(
        await fetch(`${server.url}/v1/topics/x/events`, { headers: { authorization: `Bearer ${token}` } }),
        401,
      )
    }
  })

  test('admin actions are audit events on herald.system, naming their actor; herald.system is for admins', async () => {
    const admin = await newKey(server.url, [{ actions: ['admin'], topics: ['**'] }])
    const reader = await newKey(server.url, [{ actions: ['subscribe'], topics: ['**'] }])
    const hook = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { ...bearer(admin), 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: 'http://127.0.0.1:9/hook', topic: 'audited' }),
    })
    assert.equal(hook.status, 201, await hook.clone().text())
    const { id: hookId, secret } = (await hook.json()) as { id: string; secret: string }
    const removed = await fetch(`${server.url}/v1/keys/${reader.id}`, {
      method: 'DELETE',
      headers: bearer(admin),
    })
    assert.equal(removed.status, 204)
    const trail = await readAll(server.url, 'herald.system', root)
    const types = trail.map((event) => `${event.type} ${(event.data as { actor: string }).actor}`)
    assert.ok(types.includes('key.created root'), types.join('\n'))
    assert.ok(types.includes(`hook.created key:${admin.id}`), types.join('\n'))
    assert.ok(types.includes(`key.revoked key:${admin.id}`), types.join('\n'))
    const created = trail.find((event) => event.type === 'hook.created')!
    assert.equal(created.subject, hookId)
    assert.ok(!JSON.stringify(trail).includes(secret), 'a hook secret never reaches the trail')
    assert.ok(!JSON.stringify(trail).includes(admin.key), 'nor a key')
    // A key that reads every topic does not read Herald's own without admin.
    const other = await newKey(server.url, [{ actions: ['subscribe'], topics: ['**'] }])
    await problemOf(
      await fetch(`${server.url}/v1/topics/herald.system/events`, { headers: bearer(other) }),
      403,
    )
    assert.ok((await readAll(server.url, 'herald.system', bearer(admin))).length > 0)
  })
})
