import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { problemOf, publish, startTestServer, type TestServer, until } from '../helpers.ts'
import { dropSchema, postgresMissing, TEST_DATABASE_URL, testSchema } from '../postgres.ts'

const KEY = 'event-types-test-root-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }

const ORDER_V1 = {
  type: 'object',
  properties: { total: { type: 'number', minimum: 0 }, currency: { type: 'string' } },
  required: ['total'],
}

async function put(server: TestServer, type: string, body: unknown) {
  return fetch(`${server.url}/v1/event-types/${encodeURIComponent(type)}`, {
    method: 'PUT',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

async function json(response: Response, status: number) {
  const text = await response.text()
  assert.equal(response.status, status, text)
  return JSON.parse(text)
}

const postgres = await postgresMissing()
if (postgres !== undefined)
  process.stderr.write(`\n!!! SKIPPING the PostgreSQL event-type runs: ${postgres}\n\n`)

for (const backend of ['SQLite', 'PostgreSQL'] as const) {
  describe(`Event types (${backend})`, {
    skip: backend === 'PostgreSQL' ? (postgres ?? false) : false,
  }, () => {
    let server: TestServer
    const schema = testSchema('types')

    before(async () => {
      server = await startTestServer({
        apiKey: KEY,
        ...(backend === 'PostgreSQL' ? { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema } : {}),
      })
    })
    after(async () => {
      await server?.close()
      if (backend === 'PostgreSQL') await dropSchema(schema)
    })

    test('a registered type refuses bad data naming the pointer, accepts good data and stamps dataschema', async () => {
      const created = await json(
        await put(server, 'order.created', { schema: ORDER_V1, description: 'An order was placed.' }),
        201,
      )
      assert.equal(created.version, 1)
      assert.match(created.url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/event-types\/order\.created\/versions\/1$/)
      assert.equal(created.compatibility, undefined, 'a first version has nothing to compare with')

      const bad = await publish(server.url, 'orders', { type: 'order.created', data: { total: -5 } }, AUTH)
      const problem = await problemOf(bad, 422)
      assert.equal(problem.code, 'schema-mismatch')
      assert.deepEqual(problem.errors, [{ pointer: '/data/total', message: 'must be >= 0' }])
      assert.equal(problem.dataschema, created.url)

      const missing = await problemOf(
        await publish(server.url, 'orders', { type: 'order.created' }, AUTH),
        422,
      )
      assert.deepEqual(
        missing.errors.map((e: { pointer: string }) => e.pointer),
        ['/data'],
        'absent data is checked as null',
      )

      const good = await json(
        await publish(server.url, 'orders', { type: 'order.created', data: { total: 12.5 } }, AUTH),
        201,
      )
      assert.equal(good.dataschema, created.url)
      // Types not in the catalog pass untouched.
      const other = await json(
        await publish(server.url, 'orders', { type: 'order.noted', data: 1 }, AUTH),
        201,
      )
      assert.equal(other.dataschema, undefined)
    })

    test('the API documents describe each registered type: a webhook per type, a message per type', async () => {
      const openapi = await json(await fetch(`${server.url}/openapi.json`, { headers: AUTH }), 200)
      assert.ok(openapi.webhooks['order.created'], Object.keys(openapi.webhooks).join(', '))
      assert.deepEqual(openapi.components.schemas['EventData.order.created'], {
        ...ORDER_V1,
        description: 'An order was placed.',
      })
      const asyncapi = await json(await fetch(`${server.url}/asyncapi.json`, { headers: AUTH }), 200)
      assert.ok(asyncapi.components.messages['Event.order.created'])
    })

    test('in a batch, the failing event is named by its index, and nothing of the batch is stored', async () => {
      const before = await json(await fetch(`${server.url}/v1/topics/batch`, { headers: AUTH }), 200)
      const response = await publish(
        server.url,
        'batch',
        [
          { type: 'order.created', data: { total: 1 } },
          { type: 'order.created', data: { total: 'x' } },
        ],
        AUTH,
      )
      const problem = await problemOf(response, 422)
      assert.deepEqual(problem.errors, [{ pointer: '/1/data/total', message: 'must be number' }])
      const afterwards = await json(await fetch(`${server.url}/v1/topics/batch`, { headers: AUTH }), 200)
      assert.equal(afterwards.head_seq, before.head_seq)
    })

    test('versions: a changed schema is a new version, the old one stays readable and usable by dataschema', async () => {
      const type = 'invoice.paid'
      await json(await put(server, type, { schema: { type: 'object' } }), 201)
      const same = await json(
        await put(server, type, { schema: { type: 'object' }, description: 'Paid.', deprecated: true }),
        200,
      )
      assert.equal(same.version, 1, 'the same schema with a new description stays version 1')
      assert.equal(same.deprecated, true)
      const v2 = await json(
        await put(server, type, {
          schema: { type: 'object', required: ['amount'], properties: { amount: { type: 'integer' } } },
        }),
        200,
      )
      assert.equal(v2.version, 2)
      assert.equal(v2.description, 'Paid.', 'left out, the description stays')
      assert.equal(v2.deprecated, true, 'left out, the deprecation stays')
      assert.equal(v2.compatibility.backward, 'breaking')
      assert.ok(
        v2.compatibility.findings.some(
          (f: { pointer: string; kind: string }) => f.pointer === '/required' && f.kind === 'breaking',
        ),
        JSON.stringify(v2.compatibility),
      )

      const v1 = await json(
        await fetch(`${server.url}/v1/event-types/${type}/versions/1`, { headers: AUTH }),
        200,
      )
      assert.deepEqual(v1.schema, { type: 'object' })
      const raw = await fetch(`${server.url}/v1/event-types/${type}/versions/1`, {
        headers: { ...AUTH, accept: 'application/schema+json' },
      })
      assert.match(raw.headers.get('content-type') ?? '', /application\/schema\+json/)
      assert.deepEqual(await raw.json(), { type: 'object' })

      const listed = await json(await fetch(`${server.url}/v1/event-types/${type}`, { headers: AUTH }), 200)
      assert.equal(listed.version, 2)
      assert.deepEqual(
        listed.versions.map((v: { version: number }) => v.version),
        [1, 2],
      )

      // The latest applies by default; an event may name the older version it was written for.
      await problemOf(await publish(server.url, 'invoices', { type, data: {} }, AUTH), 422)
      const old = await json(
        await publish(server.url, 'invoices', { type, data: {}, dataschema: v1.url }, AUTH),
        201,
      )
      assert.equal(old.dataschema, v1.url)
      const nowhere = await problemOf(
        await publish(
          server.url,
          'invoices',
          { type, data: {}, dataschema: 'https://example.com/s.json' },
          AUTH,
        ),
        422,
      )
      assert.equal(nowhere.field, '/dataschema')
      const missingVersion = await problemOf(
        await publish(
          server.url,
          'invoices',
          { type, data: {}, dataschema: `${server.url}/v1/event-types/${type}/versions/9` },
          AUTH,
        ),
        422,
      )
      assert.equal(missingVersion.code, 'schema-mismatch')

      const all = await json(await fetch(`${server.url}/v1/event-types`, { headers: AUTH }), 200)
      assert.deepEqual(
        all.event_types.map((t: { type: string; version: number }) => `${t.type}@${t.version}`),
        ['invoice.paid@2', 'order.created@1'],
      )
    })

    test('a topic that takes registered types only refuses the others, and says so', async () => {
      const configured = await json(
        await fetch(`${server.url}/v1/topics/strict`, {
          method: 'PUT',
          headers: { ...AUTH, 'content-type': 'application/json' },
          body: JSON.stringify({ types: 'registered' }),
        }),
        200,
      )
      assert.equal(configured.types, 'registered')
      const refused = await problemOf(
        await publish(server.url, 'strict', { type: 'order.unknown', data: {} }, AUTH),
        422,
      )
      assert.equal(refused.code, 'unregistered-type')
      await json(
        await publish(server.url, 'strict', { type: 'order.created', data: { total: 1 } }, AUTH),
        201,
      )
      // Other topics still take any type.
      await json(await publish(server.url, 'lenient', { type: 'order.unknown' }, AUTH), 201)
      const bad = await fetch(`${server.url}/v1/topics/strict`, {
        method: 'PUT',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ types: 'some' }),
      })
      assert.equal((await problemOf(bad, 400)).field, 'types')
      // Back to any.
      await json(
        await fetch(`${server.url}/v1/topics/strict`, {
          method: 'PUT',
          headers: { ...AUTH, 'content-type': 'application/json' },
          body: JSON.stringify({}),
        }),
        200,
      )
      await json(await publish(server.url, 'strict', { type: 'order.unknown' }, AUTH), 201)
    })

    test('bad registrations are 400s that name what is wrong; nothing is stored', async () => {
      const cases: Array<[string, unknown, RegExp]> = [
        ['order.x', { schema: 'nope' }, /JSON Schema/],
        ['order.x', {}, /"schema" is required/],
        ['order.x', { schema: { type: 'objekt' } }, /not a valid JSON Schema/],
        ['order.x', { schema: { $ref: 'https://example.com/remote.json' } }, /not a valid JSON Schema/],
        ['order.x', { schema: { type: 'string', pattern: '^(?=a)' } }, /linear time/],
        ['order.x', { schema: { type: 'object' }, extra: 1 }, /Unknown field/],
        ['order.*', { schema: true }, /no "\*"/],
        ['order.x', { schema: true, deprecated: 'yes' }, /deprecated/],
        // Pairwise uniqueness over unbounded arrays would make a publish quadratic.
        ['order.x', { schema: { type: 'array', uniqueItems: true } }, /uniqueItems/],
        [
          'order.x',
          { schema: { properties: { tags: { uniqueItems: true, items: { type: 'object' } } } } },
          /\/properties\/tags/,
        ],
      ]
      for (const [type, body, detail] of cases) {
        const problem = await problemOf(await put(server, type, body), 400)
        assert.match(problem.detail, detail, JSON.stringify(body))
      }
      // Scalar items (one pass with a hash) or a small maxItems are fine.
      await json(
        await put(server, 'order.tagged', { schema: { uniqueItems: true, items: { type: 'string' } } }),
        201,
      )
      await json(await put(server, 'order.tagged2', { schema: { uniqueItems: true, maxItems: 100 } }), 201)
      const deep = { schema: JSON.parse(`${'{"items":'.repeat(40)}true${'}'.repeat(40)}`) }
      assert.match((await problemOf(await put(server, 'order.x', deep), 400)).detail, /nests/)
      await problemOf(await fetch(`${server.url}/v1/event-types/order.x`, { headers: AUTH }), 404)
    })

    test('a pattern in a schema runs in linear time on published data', async () => {
      await json(
        await put(server, 'text.posted', {
          schema: { type: 'object', properties: { body: { type: 'string', pattern: '^(a+)+$' } } },
        }),
        201,
      )
      // On a backtracking engine this input takes longer than the test's timeout.
      const evil = `${'a'.repeat(5000)}!`
      const problem = await problemOf(
        await publish(server.url, 'texts', { type: 'text.posted', data: { body: evil } }, AUTH),
        422,
      )
      assert.equal(problem.errors[0].pointer, '/data/body')
      await json(
        await publish(server.url, 'texts', { type: 'text.posted', data: { body: 'aaa' } }, AUTH),
        201,
      )
    })

    test("a schema for one of Herald's own event types never stops Herald recording it", async () => {
      await json(await put(server, 'topic.configured', { schema: false }), 201)
      const configured = await fetch(`${server.url}/v1/topics/audited`, {
        method: 'PUT',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({}),
      })
      assert.equal(configured.status, 200, await configured.text())
      await until('the audit event is on herald.system', async () => {
        const page = await json(
          await fetch(`${server.url}/v1/topics/herald.system/events?after=0&limit=1000`, { headers: AUTH }),
          200,
        )
        return page.events.some(
          (e: { type: string; data?: { topic?: string } }) =>
            e.type === 'topic.configured' && e.data?.topic === 'audited',
        )
          ? true
          : undefined
      })
      // Everywhere else, the schema applies (false: nothing is accepted).
      await problemOf(await publish(server.url, 'orders', { type: 'topic.configured' }, AUTH), 422)
    })

    test('reading the catalog needs credentials; registering needs admin', async () => {
      await problemOf(await fetch(`${server.url}/v1/event-types`), 401)
      const key = await json(
        await fetch(`${server.url}/v1/keys`, {
          method: 'POST',
          headers: { ...AUTH, 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'reader', scopes: [{ actions: ['subscribe'], topics: ['orders'] }] }),
        }),
        201,
      )
      const reader = { authorization: `Bearer ${key.key}` }
      await json(await fetch(`${server.url}/v1/event-types`, { headers: reader }), 200)
      const refused = await fetch(`${server.url}/v1/event-types/order.created`, {
        method: 'PUT',
        headers: { ...reader, 'content-type': 'application/json' },
        body: JSON.stringify({ schema: true }),
      })
      await problemOf(refused, 403)
    })

    test('the WebSocket publish op is checked too', async () => {
      const { WsClient } = await import('../streams/clients.ts')
      const socket = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${KEY}`)
      try {
        socket.send({ op: 'publish', topic: 'orders', type: 'order.created', data: { total: -1 }, ref: 7 })
        const answer = await socket.reply(7)
        assert.equal(answer.op, 'error')
        assert.equal(answer.status, 422)
        assert.deepEqual(answer.errors, [{ pointer: '/data/total', message: 'must be >= 0' }])
      } finally {
        await socket.close()
      }
    })
  })
}

describe('Event types across nodes', { skip: postgres ?? false }, () => {
  test('a type registered on one node is checked on another within a few seconds', async () => {
    const schema = testSchema('types2')
    const config = { apiKey: KEY, databaseUrl: TEST_DATABASE_URL, databaseSchema: schema }
    const a = await startTestServer(config)
    const b = await startTestServer(config)
    try {
      await json(await publish(b.url, 'orders', { type: 'order.created', data: { total: -1 } }, AUTH), 201)
      await json(await put(a, 'order.created', { schema: ORDER_V1 }), 201)
      await until('node b checks the new type', async () => {
        const response = await publish(b.url, 'orders', { type: 'order.created', data: { total: -1 } }, AUTH)
        await response.body?.cancel()
        return response.status === 422 ? true : undefined
      })
    } finally {
      await a.close()
      await b.close()
      await dropSchema(schema)
    }
  })
})
