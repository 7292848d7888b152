import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { problemOf, publish, startTestServer, type TestServer, until } from '../helpers.ts'
import { WsClient } from '../streams/clients.ts'

// Regression tests for what the security review of the access-control change found.

const ROOT_KEY = 'root-key-0123456789abcdef'
const root = { authorization: `Bearer ${ROOT_KEY}` }

async function keyWith(server: TestServer, scopes: Array<{ actions: string[]; topics: string[] }>) {
  const response = await fetch(`${server.url}/v1/keys`, {
    method: 'POST',
    headers: { ...root, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'review', scopes }),
  })
  assert.equal(response.status, 201)
  return (await response.json()) as { id: string; key: string }
}

describe('access control: review findings', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY, rateLimit: { points: 1000, seconds: 60 } })
  })
  after(() => server.close())

  test('an auth op that narrows the rights, followed at once by a subscribe, does not keep the topic', async () => {
    const wide = await keyWith(server, [{ actions: ['subscribe'], topics: ['**'] }])
    const narrow = await keyWith(server, [{ actions: ['subscribe'], topics: ['public/*'] }])
    const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${wide.key}`)
    try {
      // Both messages in one write: the subscribe is read while the auth is being checked.
      ws.send({ op: 'auth', token: narrow.key, ref: 'auth' })
      ws.send({ op: 'subscribe', topic: 'secret/x', ref: 'sub' })
      assert.equal((await ws.reply('auth'))['op'], 'authenticated')
      // Whichever finishes first: the subscribe is refused (403), or it was made under the wide key
      // and the auth drops it (an error op naming the topic). Either way the socket keeps no topic.
      const sub = await ws.reply('sub')
      if (sub['op'] === 'subscribed') {
        await ws.until(() =>
          ws.messages.some((m) => m['op'] === 'error' && m['status'] === 403 && m['ref'] === undefined),
        )
      } else assert.deepEqual([sub['op'], sub['status']], ['error', 403])
      const { connections } = (await (
        await fetch(`${server.url}/v1/connections?protocol=ws`, { headers: root })
      ).json()) as {
        connections: Array<{ actor: string; topics: string[] }>
      }
      assert.deepEqual(
        connections.map((c) => [c.actor, c.topics]),
        [[`key:${narrow.id}`, []]],
      )
      await publish(server.url, 'secret/x', { type: 'leak' }, root)
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(ws.events('secret/x').length, 0, 'no event of a topic the socket may not read')
    } finally {
      await ws.close()
    }
  })

  test("Herald's own topics need admin on **, not a pattern that reaches them (* is one segment)", async () => {
    await publish(server.url, 'x', { type: 't' }, root)
    const star = await keyWith(server, [{ actions: ['admin', 'subscribe'], topics: ['*'] }])
    await problemOf(
      await fetch(`${server.url}/v1/topics/herald.system/events`, {
        headers: { authorization: `Bearer ${star.key}` },
      }),
      403,
    )
    const all = await keyWith(server, [{ actions: ['admin'], topics: ['**'] }])
    const read = await fetch(`${server.url}/v1/topics/herald.system/events`, {
      headers: { authorization: `Bearer ${all.key}` },
    })
    assert.equal(read.status, 200)
  })

  test('GET /v1/topics never names, even as next, a topic the caller may not read', async () => {
    for (const topic of ['public/a', 'public/b', 'secret/m', 'secret/p', 'public/c']) {
      await publish(server.url, topic, { type: 't' }, root)
    }
    const key = await keyWith(server, [{ actions: ['subscribe'], topics: ['public/*'] }])
    const seen: string[] = []
    const cursors: string[] = []
    let after = ''
    for (let i = 0; i < 10; i++) {
      const page = (await (
        await fetch(`${server.url}/v1/topics?limit=1&after=${encodeURIComponent(after)}`, {
          headers: { authorization: `Bearer ${key.key}` },
        })
      ).json()) as { topics: Array<{ topic: string }>; next: string | null }
      seen.push(...page.topics.map((t) => t.topic))
      if (page.next === null) break
      cursors.push(page.next)
      after = page.next
    }
    assert.deepEqual(seen, ['public/a', 'public/b', 'public/c'])
    assert.ok(
      cursors.every((cursor) => cursor.startsWith('public/')),
      cursors.join(),
    )
  })

  test('refused credentials count against the address budget; a made-up key with a NUL is a 401, not a 500', async () => {
    const limited = await startTestServer({ apiKey: ROOT_KEY, rateLimit: { points: 3, seconds: 60 } })
    try {
      const statuses: number[] = []
      for (let i = 0; i < 5; i++) {
        const response = await fetch(`${limited.url}/v1/topics/a/events`, {
          headers: { authorization: 'Bearer wrong' },
        })
        await response.arrayBuffer()
        statuses.push(response.status)
      }
      assert.deepEqual(statuses, [401, 401, 401, 429, 429])
    } finally {
      await limited.close()
    }
    const nul = `hk_${'0'.repeat(25)}%00${'a'.repeat(43)}`
    const response = await fetch(`${server.url}/v1/stream?topic=a&access_token=${nul}`, {
      headers: { accept: 'text/event-stream' },
    })
    await problemOf(response, 401)
  })

  test('a WebSocket upgrade that fails on the server is answered (problem+json), never left hanging', async () => {
    // A refused upgrade (a wrong key) gets an HTTP answer on the raw socket.
    const { port } = new URL(server.url)
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(
          'GET /v1/ws?access_token=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        )
      })
      let text = ''
      socket.on('data', (chunk) => {
        text += chunk
      })
      socket.on('end', () => resolve(text))
      socket.on('error', reject)
    })
    assert.match(answer, /^HTTP\/1\.1 401/)
    assert.match(answer, /application\/problem\+json/)
  })

  test('a revoked key is refused even after made-up keys were tried (the missing-key memory is per id)', async () => {
    const key = await keyWith(server, [{ actions: ['publish'], topics: ['**'] }])
    assert.equal(
      (await publish(server.url, 'r', { type: 't' }, { authorization: `Bearer ${key.key}` })).status,
      201,
    )
    await fetch(`${server.url}/v1/keys/${key.id}`, { method: 'DELETE', headers: root })
    await until('the key to be refused', async () =>
      (await publish(server.url, 'r', { type: 't' }, { authorization: `Bearer ${key.key}` })).status === 401
        ? true
        : undefined,
    )
  })
})
