import assert from 'node:assert/strict'
import { once } from 'node:events'
import { test } from 'node:test'
import { problemOf, publish, startTestServer, until } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { WsClient } from '../streams/clients.ts'

const skip = await skipWithoutPostgres()
const ROOT_KEY = 'root-key-0123456789abcdef'
const root = { authorization: `Bearer ${ROOT_KEY}` }

/**
 * Two nodes on one PostgreSQL schema: a key made on one works on the other, and revoking it on one
 * refuses it on the other within a second (the other's key cache is checked every 500 ms), open
 * sockets included.
 */
test('a key revoked on one node is refused on the other within a second, and its socket there ends', {
  skip,
}, async () => {
  const schema = testSchema('keys')
  const options = { apiKey: ROOT_KEY, databaseUrl: TEST_DATABASE_URL, databaseSchema: schema }
  const a = await startTestServer(options)
  const b = await startTestServer(options)
  try {
    const created = await fetch(`${a.url}/v1/keys`, {
      method: 'POST',
      headers: { ...root, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'both', scopes: [{ actions: ['publish', 'subscribe'], topics: ['**'] }] }),
    })
    assert.equal(created.status, 201)
    const key = (await created.json()) as { id: string; key: string }
    const bearer = { authorization: `Bearer ${key.key}` }
    assert.equal((await publish(b.url, 'k', { type: 't' }, bearer)).status, 201, 'node b knows the key')
    const ws = await WsClient.open(`${b.url.replace('http', 'ws')}/v1/ws?access_token=${key.key}`)
    const closed = once(ws.ws, 'close')
    const removed = await fetch(`${a.url}/v1/keys/${key.id}`, { method: 'DELETE', headers: root })
    assert.equal(removed.status, 204)
    const revokedAt = Date.now()
    await problemOf(await publish(a.url, 'k', { type: 't' }, bearer), 401)
    const [code] = (await closed) as [number]
    assert.equal(code, 4401)
    await until(
      'node b to refuse the key',
      async () => ((await publish(b.url, 'k', { type: 't' }, bearer)).status === 401 ? true : undefined),
      5000,
    )
    const took = Date.now() - revokedAt
    assert.ok(took < 1500, `node b refused the key ${took} ms after the revocation`)
  } finally {
    await a.close()
    await b.close()
    await dropSchema(schema)
  }
})

test('on PostgreSQL too, an auth op that narrows the rights does not let a subscribe sent with it keep the topic', {
  skip,
}, async () => {
  const schema = testSchema('keyrace')
  const server = await startTestServer({
    apiKey: ROOT_KEY,
    databaseUrl: TEST_DATABASE_URL,
    databaseSchema: schema,
  })
  try {
    const make = async (topics: string[]) => {
      const response = await fetch(`${server.url}/v1/keys`, {
        method: 'POST',
        headers: { ...root, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'race', scopes: [{ actions: ['subscribe'], topics }] }),
      })
      return (await response.json()) as { id: string; key: string }
    }
    const wide = await make(['**'])
    const narrow = await make(['public/*'])
    const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${wide.key}`)
    try {
      ws.send({ op: 'auth', token: narrow.key, ref: 'auth' })
      ws.send({ op: 'subscribe', topic: 'secret/x', ref: 'sub' })
      await ws.reply('auth')
      await ws.reply('sub')
      await until('the socket to hold no topic', async () => {
        const { connections } = (await (
          await fetch(`${server.url}/v1/connections?protocol=ws`, { headers: root })
        ).json()) as { connections: Array<{ topics: string[] }> }
        return connections[0]?.topics.length === 0 ? true : undefined
      })
      // And it stays so: nothing published there reaches it.
      await publish(server.url, 'secret/x', { type: 'leak' }, root)
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(ws.events('secret/x').length, 0)
      // A key id with a NUL in it is a 401 here too, not a database error.
      await problemOf(
        await fetch(`${server.url}/v1/stream?topic=a&access_token=hk_${'0'.repeat(25)}%00${'a'.repeat(43)}`, {
          headers: { accept: 'text/event-stream' },
        }),
        401,
      )
      await problemOf(await fetch(`${server.url}/v1/deliveries?hook=a%00b`, { headers: root }), 400)
    } finally {
      await ws.close()
    }
  } finally {
    await server.close()
    await dropSchema(schema)
  }
})
