import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import SwaggerParser from '@apidevtools/swagger-parser'
import { Parser } from '@asyncapi/parser'
import Fastify from 'fastify'
import type { EventTypeVersion } from '../../src/event-types/catalog.ts'
import { declaredRoutes } from '../../src/http/access.ts'
import { buildAsyncApi } from '../../src/http/documents/asyncapi.ts'
import { buildOpenApi, openApiPath } from '../../src/http/documents/openapi.ts'
import { documentedRoutes } from '../../src/http/routes/documents.ts'
import { documentOnlySchemas } from '../../src/http/schemas/common.ts'
import { startTestServer, type TestServer } from '../helpers.ts'
import { documentValidator } from './documents-contract.ts'

// biome-ignore lint/suspicious/noExplicitAny: the documents are walked as plain JSON, key by key
type Doc = Record<string, any>

/** Two sample types, the first with a nested schema (local $defs, an object in an object, an array). */
const CATALOG: EventTypeVersion[] = [
  {
    type: 'order.created',
    version: 1,
    schema: { type: 'object' },
    description: 'An order (first schema).',
    deprecated: false,
    created_at: '2026-11-01T00:00:00.000Z',
  },
  {
    type: 'order.created',
    version: 2,
    schema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      $id: 'https://example.test/schemas/order.created',
      type: 'object',
      required: ['id', 'total', 'customer'],
      properties: {
        id: { type: 'string' },
        total: { type: 'number', minimum: 0 },
        customer: { $ref: '#/$defs/customer' },
        lines: { type: 'array', items: { $ref: '#/$defs/line' } },
      },
      $defs: {
        customer: {
          type: 'object',
          required: ['name', 'address'],
          properties: {
            name: { type: 'string' },
            address: {
              type: 'object',
              required: ['city'],
              properties: { city: { type: 'string' }, zip: { type: 'string' } },
            },
          },
        },
        line: {
          type: 'object',
          required: ['sku', 'quantity'],
          properties: { sku: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } },
        },
      },
    },
    description: 'An order was placed.',
    deprecated: false,
    created_at: '2026-11-02T00:00:00.000Z',
  },
  {
    type: 'user signed/up',
    version: 1,
    schema: { type: 'object', required: ['email'], properties: { email: { type: 'string' } } },
    description: null,
    deprecated: true,
    created_at: '2026-11-03T00:00:00.000Z',
  },
]

const ORDER = {
  specversion: '1.0',
  id: '01JDV0000000000000000000AA',
  source: '/v1/topics/orders',
  type: 'order.created',
  time: '2026-11-22T12:00:00.000Z',
  datacontenttype: 'application/json',
  data: {
    id: 'o-1',
    total: 12.5,
    customer: { name: 'Ann', address: { city: 'Lyon' } },
    lines: [{ sku: 'a', quantity: 2 }],
  },
  topic: 'orders',
  seq: 42,
}

async function assertValidOpenApi(document: Doc): Promise<void> {
  try {
    // The parser dereferences what it is given: a copy.
    await SwaggerParser.validate(structuredClone(document) as never)
  } catch (error) {
    assert.fail(`OpenAPI 3.1 validation failed:\n${(error as Error).message}`)
  }
}

async function asyncApiErrors(document: Doc): Promise<string[]> {
  const { diagnostics } = await new Parser().parse(document as never)
  // Severity 0 is an error; warnings (a newer AsyncAPI version exists) and hints are not.
  return diagnostics
    .filter((diagnostic) => diagnostic.severity === 0)
    .map((diagnostic) => `${diagnostic.code} at ${diagnostic.path.join('/')}: ${diagnostic.message}`)
}

describe('GET /openapi.json and GET /asyncapi.json', () => {
  let server: TestServer
  let openapi: Doc
  let asyncapi: Doc
  before(async () => {
    server = await startTestServer({ apiKey: 'documents-key-0123456789' })
    const auth = { authorization: 'Bearer documents-key-0123456789' }
    const refused = await fetch(`${server.url}/openapi.json`)
    assert.equal(refused.status, 401, 'the documents embed the catalog: credentials needed')
    const answer = await fetch(`${server.url}/openapi.json`, { headers: auth })
    assert.equal(answer.status, 200)
    assert.match(answer.headers.get('content-type') ?? '', /^application\/json/)
    assert.match(answer.headers.get('cache-control') ?? '', /max-age=\d+/)
    openapi = (await answer.json()) as Doc
    assert.equal((await fetch(`${server.url}/asyncapi.json`)).status, 401)
    const second = await fetch(`${server.url}/asyncapi.json`, { headers: auth })
    assert.equal(second.status, 200)
    assert.match(second.headers.get('cache-control') ?? '', /max-age=\d+/)
    asyncapi = (await second.json()) as Doc
  })
  after(() => server.close())

  test('both answer whoever may read a topic (before() was refused without credentials)', () => {
    assert.equal(openapi['openapi'], '3.1.0')
    assert.equal(asyncapi['asyncapi'], '3.0.0')
  })

  test('the served OpenAPI document is valid OpenAPI 3.1 (swagger-parser), and the validator does refuse a broken one', async () => {
    await assertValidOpenApi(openapi)
    const broken = structuredClone(openapi)
    broken['paths']['/v1/hooks']['post']['responses'] = 'none'
    await assert.rejects(SwaggerParser.validate(broken as never))
  })

  test('the served AsyncAPI document is valid AsyncAPI 3.0 (@asyncapi/parser), and the parser does refuse a broken one', async () => {
    const errors = await asyncApiErrors(asyncapi)
    assert.deepEqual(errors, [], errors.join('\n'))
    const broken = structuredClone(asyncapi)
    broken['operations']['publish']['channel'] = { $ref: '#/channels/nowhere' }
    assert.ok((await asyncApiErrors(broken)).length > 0)
  })

  test('with no registered type, webhooks has the one generic delivery entry', () => {
    assert.deepEqual(Object.keys(openapi['webhooks']), ['*'])
    const delivery = openapi['webhooks']['*']['post']
    const headers = delivery.parameters.map((parameter: Doc) => parameter['name'])
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature'])
      assert.ok(headers.includes(name), name)
    assert.ok(delivery.responses['2XX'])
    assert.ok(delivery.responses['410'])
  })

  test('AsyncAPI: servers for HTTP, SSE and the WebSocket; channels with addresses; send and receive operations', () => {
    const servers = asyncapi['servers']
    assert.equal(servers['http'].protocol, 'http')
    assert.equal(servers['sse'].protocol, 'http')
    assert.equal(servers['ws'].protocol, 'ws')
    assert.equal(servers['ws'].pathname, '/v1/ws')
    // The host of HERALD_PUBLIC_URL (here its default, from --host and --port), as /openapi.json's server.
    assert.equal(servers['ws'].host, new URL(openapi['servers'][0].url).host)
    assert.equal(asyncapi['channels']['topicEvents'].address, '/v1/topics/{topic}/events')
    assert.ok(asyncapi['channels']['topicEvents'].parameters.topic)
    assert.equal(asyncapi['channels']['webSocket'].address, '/v1/ws')
    assert.equal(asyncapi['operations']['publish'].action, 'send')
    assert.equal(asyncapi['operations']['subscribe'].action, 'receive')
    const messages = Object.keys(asyncapi['components']['messages'])
    for (const op of ['subscribe', 'event', 'error', 'gap', 'presence', 'join', 'leave', 'published'])
      assert.ok(messages.includes(`ws.${op}`), op)
  })

  test('every route registered on the app is in the document, at the paths it serves, with its method', () => {
    const app = server.herald.server
    const paths = openapi['paths'] as Record<string, Record<string, Doc>>
    // A wildcard route serves the paths its schema lists (x-paths): topics' names contain `/`.
    const expanded: Record<string, string[]> = {
      '/v1/topics/*': [
        '/v1/topics/{topic}',
        '/v1/topics/{topic}/events',
        '/v1/topics/{topic}/events/{seq}',
        '/v1/topics/{topic}/presence',
      ],
      '/console/assets/*': ['/console/assets/{file}'],
    }
    const routes = declaredRoutes(app)
    assert.ok(routes.length >= 40, `only ${routes.length} routes`)
    let checked = 0
    for (const route of routes) {
      // Fastify's automatic HEAD twin of a GET route is documented by the GET.
      const method = route.method === 'HEAD' ? 'get' : route.method.toLowerCase()
      // The CORS preflight answers OPTIONS on any path (only with --cors-origins): not an operation.
      if (route.method === 'OPTIONS' && route.url === '/*') continue
      const where = route.url.endsWith('*') ? expanded[route.url] : [openApiPath(route.url)]
      assert.ok(where !== undefined, `no expansion known for the wildcard route ${route.url}`)
      const found = where.filter((path) => paths[path]?.[method] !== undefined)
      assert.ok(found.length > 0, `${route.method} ${route.url} is not in /openapi.json`)
      for (const path of found) {
        const operation = paths[path]![method]!
        assert.equal(operation['x-herald-right'], route.right, `${method} ${path}`)
        assert.deepEqual(
          operation['security'].length === 0,
          route.right === 'public',
          `${method} ${path} security`,
        )
      }
      checked++
    }
    assert.ok(checked >= 40)
    // And the document says nothing of routes that do not exist (but the WebSocket handshake, which is
    // served on the HTTP server's upgrades, not by a route).
    const served = new Set<string>()
    for (const route of documentedRoutes(app)) {
      const method = route.method === 'HEAD' ? 'get' : route.method.toLowerCase()
      for (const path of route.url.endsWith('*') ? (expanded[route.url] ?? []) : [openApiPath(route.url)])
        served.add(`${method} ${path}`)
    }
    for (const [path, item] of Object.entries(paths)) {
      for (const method of Object.keys(item)) {
        if (path === '/v1/ws') continue
        assert.ok(served.has(`${method} ${path}`), `${method} ${path} is documented but not served`)
      }
    }
  })

  test('security follows each route’s declared right: admin routes need the bearer key, streams may take access_token', () => {
    const paths = openapi['paths']
    assert.deepEqual(paths['/v1/hooks']['post'].security, [{ bearer: [] }])
    assert.deepEqual(paths['/healthz']['get'].security, [])
    assert.deepEqual(paths['/openapi.json']['get'].security, [{ bearer: [] }])
    assert.deepEqual(paths['/v1/topics/{topic}/events']['get'].security, [
      { bearer: [] },
      { accessToken: [] },
    ])
    assert.ok(paths['/v1/hooks']['post'].responses['401'])
    assert.ok(paths['/v1/hooks']['post'].responses['403'])
    assert.equal(paths['/healthz']['get'].responses['401'], undefined)
  })

  test('the parallel changes’ parameters are declared: ?filter on reads and streams, filter in hook bodies', () => {
    const paths = openapi['paths']
    const names = (op: Doc) => op['parameters'].map((parameter: Doc) => parameter['name'])
    assert.ok(names(paths['/v1/topics/{topic}/events']['get']).includes('filter'))
    assert.ok(names(paths['/v1/stream']['get']).includes('filter'))
    const validator = documentValidator(openapi)
    const hookFilter = validator.compile(openapi['components']['schemas']['HookInput'].properties.filter)
    for (const filter of [
      null,
      { exact: { type: 'order.created' } },
      { all: [{ prefix: { 'data.region': 'eu' } }, { not: { suffix: { subject: '.tmp' } } }] },
      [{ exact: { type: 'a' } }, { any: [] }],
    ]) {
      assert.equal(hookFilter(filter), true, JSON.stringify(filter))
    }
    for (const filter of [{ exact: { type: 1 } }, { exact: {}, prefix: {} }, {}, 'type=a']) {
      assert.equal(hookFilter(filter), false, JSON.stringify(filter))
    }
  })
})

describe('the documents with registered event types (built directly from a catalog)', () => {
  const routes = [
    { method: 'GET', url: '/healthz', right: 'public' as const, tokenInQuery: false, schema: undefined },
  ]
  const openapi: Doc = buildOpenApi({ routes: [], catalog: CATALOG, publicUrl: 'https://herald.example' })
  const asyncapi: Doc = buildAsyncApi({ catalog: CATALOG, publicUrl: 'https://herald.example' })

  test('a route without a schema is refused: the document cannot leave one out silently', () => {
    assert.throws(() => buildOpenApi({ routes, catalog: [], publicUrl: 'http://x' }), /declares no schema/)
  })

  test('OpenAPI with two types is valid, with one webhooks entry per type (its latest version) and the generic one', async () => {
    await assertValidOpenApi(openapi)
    assert.deepEqual(Object.keys(openapi['webhooks']).sort(), ['*', 'order.created', 'user signed/up'])
    const order = openapi['webhooks']['order.created']['post']
    assert.match(order.description, /version 2/)
    assert.equal(openapi['webhooks']['user signed/up']['post'].deprecated, true)
  })

  test('AsyncAPI with two types is valid, with one message per type', async () => {
    const errors = await asyncApiErrors(asyncapi)
    assert.deepEqual(errors, [], errors.join('\n'))
    const messages = asyncapi['components']['messages']
    assert.ok(messages['Event.order.created'])
    assert.ok(messages['Event.user_signed_up'])
    assert.equal(asyncapi['servers']['ws'].protocol, 'wss')
  })

  test("a delivery body is checked against the type's schema as data, nested references included (OpenAPI webhooks)", () => {
    const validator = documentValidator(openapi)
    const schema = openapi['webhooks']['order.created']['post'].requestBody.content['application/json'].schema
    const check = validator.compile(schema)
    assert.equal(check(ORDER), true, JSON.stringify(check.errors))
    const badCity = structuredClone(ORDER)
    ;(badCity.data.customer.address as Record<string, unknown>)['city'] = 7
    assert.equal(check(badCity), false)
    const badLine = structuredClone(ORDER)
    badLine.data.lines[0]!.quantity = 0
    assert.equal(check(badLine), false)
    assert.equal(check({ ...ORDER, type: 'order.updated' }), false)
    assert.equal(check({ ...ORDER, seq: undefined }), false, 'the envelope is required too')
    // The generic entry takes any event.
    const generic = validator.compile(
      openapi['webhooks']['*']['post'].requestBody.content['application/json'].schema,
    )
    assert.equal(generic({ ...ORDER, type: 'anything', data: 1 }), true)
  })

  test("an AsyncAPI message's payload is the envelope with the type's schema as data", () => {
    const validator = documentValidator(asyncapi)
    const check = validator.compile(asyncapi['components']['messages']['Event.order.created'].payload)
    assert.equal(check(ORDER), true, JSON.stringify(check.errors))
    const bad = structuredClone(ORDER)
    ;(bad.data.customer.address as Record<string, unknown>)['city'] = 7
    assert.equal(check(bad), false)
  })
})

describe('the schemas are documentation: Fastify neither validates nor serializes with them', () => {
  const app = Fastify()
  let url: string
  before(async () => {
    documentOnlySchemas(app)
    app.post(
      '/thing',
      {
        schema: {
          body: { type: 'object', required: ['x'], properties: { x: { type: 'integer' } } },
          querystring: { type: 'object', properties: { n: { type: 'integer' } } },
          response: {
            200: { content: { 'application/json': { schema: { type: 'object', properties: { a: {} } } } } },
          },
        },
      },
      async (request) => ({ a: 1, b: 'kept', body: request.body, query: request.query }),
    )
    url = await app.listen({ port: 0, host: '127.0.0.1' })
  })
  after(() => app.close())

  test('a body and a query the schema refuses reach the handler as sent, and undeclared properties are answered', async () => {
    const answer = await fetch(`${url}/thing?n=abc`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"y":"no x"}',
    })
    assert.equal(answer.status, 200)
    assert.deepEqual(await answer.json(), { a: 1, b: 'kept', body: { y: 'no x' }, query: { n: 'abc' } })
  })
})
