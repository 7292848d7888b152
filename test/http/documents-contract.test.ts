import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { startTestServer, type TestServer } from '../helpers.ts'
import { documentValidator } from './documents-contract.ts'

const KEY = 'contract-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }
const JSON_AUTH = { ...AUTH, 'content-type': 'application/json' }

// biome-ignore lint/suspicious/noExplicitAny: the document is walked as plain JSON, key by key
type Doc = Record<string, any>

interface Answer {
  status: number
  text: string
  headers: Headers
  json(): Doc
}

/**
 * The contract: real requests to a real server, each answer checked against what /openapi.json
 * declares for its operation: the status is one it lists, the media type one it lists for that
 * status, and a JSON body valid against the schema it gives (ajv, JSON Schema 2020-12, formats on).
 */
describe('every answer is what /openapi.json says it is (the document cannot drift from the code)', () => {
  let server: TestServer
  let document: Doc
  let validator: ReturnType<typeof documentValidator>
  /** `METHOD path` of each documented operation a request went through. */
  const exercised = new Set<string>()

  before(async () => {
    server = await startTestServer({ apiKey: KEY, allowPrivateTargets: true })
    document = (await (await fetch(`${server.url}/openapi.json`, { headers: AUTH })).json()) as Doc
    validator = documentValidator(document)
  })
  after(() => server.close())

  function declared(method: string, template: string, status: number): Doc {
    const operation = document['paths'][template]?.[method.toLowerCase()]
    assert.ok(operation, `${method} ${template} is not in /openapi.json`)
    const responses = operation['responses'] as Record<string, Doc>
    const response = responses[String(status)] ?? responses[`${String(status)[0]}XX`]
    assert.ok(response, `${method} ${template} answered ${status}, which it does not declare`)
    return response
  }

  function mediaOf(response: Doc, type: string, where: string): Doc {
    const content = response['content'] as Record<string, Doc> | undefined
    assert.ok(content, `${where}: a body of ${type}, but no content declared`)
    const media = content[type] ?? content[`${type.split('/')[0]}/*`] ?? content['*/*']
    assert.ok(media, `${where}: ${type} is not among ${Object.keys(content).join(', ')}`)
    return media
  }

  async function call(
    method: string,
    template: string,
    target: string,
    init: { headers?: Record<string, string>; body?: string } = {},
  ): Promise<Answer> {
    const response = await fetch(`${server.url}${target}`, { method, ...init })
    const text = await response.text()
    const where = `${method} ${target} → ${response.status} ${text.slice(0, 300)}`
    const spec = declared(method, template, response.status)
    exercised.add(`${method} ${template}`)
    if (text !== '') {
      const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim()
      const media = mediaOf(spec, type, where)
      if (type.endsWith('json')) {
        const validate = validator.compile(media['schema'])
        const body = JSON.parse(text) as unknown
        assert.ok(validate(body), `${where}\n${JSON.stringify(validate.errors, null, 1)}`)
      }
    }
    return { status: response.status, text, headers: response.headers, json: () => JSON.parse(text) as Doc }
  }

  /** A stream: its status and media type, then it is closed. */
  async function stream(template: string, target: string, accept: string): Promise<number> {
    const controller = new AbortController()
    const response = await fetch(`${server.url}${target}`, {
      headers: { ...AUTH, accept },
      signal: controller.signal,
    })
    const spec = declared('GET', template, response.status)
    const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim()
    mediaOf(spec, type, `GET ${target}`)
    exercised.add(`GET ${template}`)
    controller.abort()
    return response.status
  }

  const expect = async (status: number, answer: Promise<Answer>) => {
    const got = await answer
    assert.equal(got.status, status, got.text.slice(0, 300))
    return got
  }

  test('public routes: probes, metrics, pages, the client, the hub page; the documents', async () => {
    await expect(200, call('GET', '/healthz', '/healthz'))
    await expect(200, call('GET', '/readyz', '/readyz'))
    await expect(200, call('GET', '/metrics', '/metrics'))
    await expect(200, call('GET', '/v1/client.js', '/v1/client.js'))
    const page = await expect(200, call('GET', '/', '/'))
    const asset = /\/console\/assets\/[^"']+/.exec(page.text)?.[0]
    if (asset !== undefined) await expect(200, call('GET', '/console/assets/{file}', asset))
    await expect(404, call('GET', '/console/assets/{file}', '/console/assets/nothing.js'))
    await expect(405, call('GET', '/websub', '/websub'))
    await expect(401, call('GET', '/openapi.json', '/openapi.json'))
    await expect(200, call('GET', '/openapi.json', '/openapi.json', { headers: AUTH }))
    await expect(200, call('GET', '/asyncapi.json', '/asyncapi.json', { headers: AUTH }))
  })

  test('topics: publish (one, repeat, batch, CloudEvent), read, long poll with a gap, one event, presence, configure, streams', async () => {
    const events = '/v1/topics/{topic}/events'
    const body = JSON.stringify({ type: 'order.created', data: { id: 1 } })
    await expect(401, call('POST', events, '/v1/topics/c/events', { body }))
    await expect(201, call('POST', events, '/v1/topics/c/events', { headers: JSON_AUTH, body }))
    const once = { headers: { ...JSON_AUTH, 'idempotency-key': 'k1' }, body }
    await expect(201, call('POST', events, '/v1/topics/c/events', once))
    await expect(200, call('POST', events, '/v1/topics/c/events', once))
    await expect(
      201,
      call('POST', events, '/v1/topics/c/events', { headers: JSON_AUTH, body: `[${body},${body}]` }),
    )
    await expect(
      201,
      call('POST', events, '/v1/topics/c/events', {
        headers: { ...AUTH, 'content-type': 'application/cloudevents+json' },
        body: JSON.stringify({ specversion: '1.0', id: 'ce-1', source: '/x', type: 'ce.thing', ext1: 'v' }),
      }),
    )
    await expect(400, call('POST', events, '/v1/topics/c/events', { headers: JSON_AUTH, body: '{"type":' }))
    await expect(422, call('POST', events, '/v1/topics/c/events', { headers: JSON_AUTH, body: '{"data":1}' }))
    await expect(
      415,
      call('POST', events, '/v1/topics/c/events', {
        headers: { ...AUTH, 'content-type': 'text/plain' },
        body: 'x',
      }),
    )
    await expect(405, call('POST', events, '/v1/topics/c', { headers: JSON_AUTH, body }))

    const list = await expect(200, call('GET', '/v1/topics', '/v1/topics', { headers: AUTH }))
    assert.ok(list.json()['topics'].some((topic: Doc) => topic['topic'] === 'c'))
    await expect(200, call('GET', '/v1/topics/{topic}', '/v1/topics/c', { headers: AUTH }))
    await expect(200, call('GET', '/v1/topics/{topic}', '/v1/topics/never/published', { headers: AUTH }))
    await expect(400, call('GET', '/v1/topics/{topic}', '/v1/topics/bad!name', { headers: AUTH }))
    const read = await expect(200, call('GET', events, '/v1/topics/c/events?after=0', { headers: AUTH }))
    assert.ok(read.json()['events'].length >= 4)
    await expect(400, call('GET', events, '/v1/topics/c/events?limit=0', { headers: AUTH }))
    const ahead = await expect(
      200,
      call('GET', events, '/v1/topics/c/events?after=1000&wait=0.2', { headers: AUTH }),
    )
    assert.equal(ahead.json()['gap']?.reason, 'ahead')
    await expect(
      200,
      call('GET', '/v1/topics/{topic}/events/{seq}', '/v1/topics/c/events/1', { headers: AUTH }),
    )
    await expect(
      404,
      call('GET', '/v1/topics/{topic}/events/{seq}', '/v1/topics/c/events/999', { headers: AUTH }),
    )
    await expect(200, call('GET', '/v1/topics/{topic}/presence', '/v1/topics/c/presence', { headers: AUTH }))
    const retention = JSON.stringify({ retention: { max_age: '7d', max_events: null } })
    await expect(
      200,
      call('PUT', '/v1/topics/{topic}', '/v1/topics/c', { headers: JSON_AUTH, body: retention }),
    )
    await expect(
      400,
      call('PUT', '/v1/topics/{topic}', '/v1/topics/c', { headers: JSON_AUTH, body: '{"retention":1}' }),
    )
    await expect(
      405,
      call('PUT', '/v1/topics/{topic}', '/v1/topics/c/events', { headers: JSON_AUTH, body: retention }),
    )

    assert.equal(await stream(events, '/v1/topics/c/events?after=0', 'text/event-stream'), 200)
    assert.equal(await stream(events, '/v1/topics/c/events?after=0', 'application/x-ndjson'), 200)
    assert.equal(await stream('/v1/stream', '/v1/stream?topic=c&topic=d', 'text/event-stream'), 200)
    await expect(406, call('GET', '/v1/stream', '/v1/stream?topic=c', { headers: AUTH }))
    await expect(
      400,
      call('GET', '/v1/stream', '/v1/stream', { headers: { ...AUTH, accept: 'text/event-stream' } }),
    )
  })

  test('webhooks: create, list, read, change, test, deliveries, retry, replay, delete', async () => {
    const created = await expect(
      201,
      call('POST', '/v1/hooks', '/v1/hooks', {
        headers: JSON_AUTH,
        body: JSON.stringify({ target_url: 'http://127.0.0.1:9/hook', topic: 'h', description: 'contract' }),
      }),
    )
    const id = created.json()['id'] as string
    await expect(400, call('POST', '/v1/hooks', '/v1/hooks', { headers: JSON_AUTH, body: '{"nope":1}' }))
    await expect(401, call('GET', '/v1/hooks', '/v1/hooks'))
    await expect(200, call('GET', '/v1/hooks', '/v1/hooks', { headers: AUTH }))
    await expect(200, call('GET', '/v1/hooks/{id}', `/v1/hooks/${id}`, { headers: AUTH }))
    await expect(404, call('GET', '/v1/hooks/{id}', '/v1/hooks/hook_none', { headers: AUTH }))
    await expect(
      200,
      call('PATCH', '/v1/hooks/{id}', `/v1/hooks/${id}`, {
        headers: JSON_AUTH,
        body: '{"rotate_secret":true}',
      }),
    )
    await expect(
      400,
      call('PATCH', '/v1/hooks/{id}', `/v1/hooks/${id}`, { headers: JSON_AUTH, body: '{"state":"x"}' }),
    )
    await expect(200, call('POST', '/v1/hooks/{id}/test', `/v1/hooks/${id}/test`, { headers: AUTH }))

    await expect(
      201,
      call('POST', '/v1/topics/{topic}/events', '/v1/topics/h/events', {
        headers: JSON_AUTH,
        body: '{"type":"h.thing"}',
      }),
    )
    const deliveries = await expect(
      200,
      call('GET', '/v1/deliveries', `/v1/deliveries?hook=${id}`, { headers: AUTH }),
    )
    const delivery = deliveries.json()['deliveries'][0]?.['id'] as number
    assert.ok(Number.isInteger(delivery), deliveries.text)
    await expect(400, call('GET', '/v1/deliveries', '/v1/deliveries?state=lost', { headers: AUTH }))
    await expect(
      200,
      call('GET', '/v1/hooks/{id}/deliveries', `/v1/hooks/${id}/deliveries`, { headers: AUTH }),
    )
    const one = `/v1/hooks/${id}/deliveries/${delivery}`
    await expect(200, call('GET', '/v1/hooks/{id}/deliveries/{delivery}', one, { headers: AUTH }))
    await expect(
      404,
      call('GET', '/v1/hooks/{id}/deliveries/{delivery}', `/v1/hooks/${id}/deliveries/x`, { headers: AUTH }),
    )
    await expect(
      202,
      call('POST', '/v1/hooks/{id}/deliveries/{delivery}/retry', `${one}/retry`, { headers: AUTH }),
    )
    const replay = `/v1/hooks/${id}/replay`
    await expect(
      202,
      call('POST', '/v1/hooks/{id}/replay', replay, { headers: JSON_AUTH, body: '{"after":0}' }),
    )
    await expect(400, call('POST', '/v1/hooks/{id}/replay', replay, { headers: JSON_AUTH, body: '{}' }))
    const retry = { headers: JSON_AUTH, body: '{"state":"failed"}' }
    await expect(202, call('POST', '/v1/deliveries/retry', '/v1/deliveries/retry', retry))
    await expect(
      400,
      call('POST', '/v1/deliveries/retry', '/v1/deliveries/retry', { headers: JSON_AUTH, body: '{}' }),
    )
    await expect(204, call('DELETE', '/v1/hooks/{id}', `/v1/hooks/${id}`, { headers: AUTH }))
    await expect(404, call('DELETE', '/v1/hooks/{id}', `/v1/hooks/${id}`, { headers: AUTH }))
  })

  test('WebSub: the hub refuses what is not a hub request (plain text), and its admin API', async () => {
    const form = { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' }
    await expect(
      415,
      call('POST', '/websub', '/websub', { headers: { ...AUTH, 'content-type': 'text/plain' }, body: 'x' }),
    )
    await expect(400, call('POST', '/websub', '/websub', { headers: form, body: 'hub.mode=nothing' }))
    // The access check's refusal, in the hub's plain text.
    const anonymous = {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'hub.mode=subscribe',
    }
    await expect(401, call('POST', '/websub', '/websub', anonymous))
    await expect(200, call('GET', '/v1/websub/subscriptions', '/v1/websub/subscriptions', { headers: AUTH }))
    await expect(200, call('GET', '/v1/websub/verifications', '/v1/websub/verifications', { headers: AUTH }))
    const missing = '/v1/websub/subscriptions/none'
    await expect(404, call('GET', '/v1/websub/subscriptions/{id}', missing, { headers: AUTH }))
    await expect(404, call('DELETE', '/v1/websub/subscriptions/{id}', missing, { headers: AUTH }))
  })

  test('administration: keys (and a key without the right: 403), connections, cluster', async () => {
    const created = await expect(
      201,
      call('POST', '/v1/keys', '/v1/keys', {
        headers: JSON_AUTH,
        body: JSON.stringify({ name: 'reader', scopes: [{ actions: ['subscribe'], topics: ['*'] }] }),
      }),
    )
    const { id, key } = created.json() as { id: string; key: string }
    await expect(400, call('POST', '/v1/keys', '/v1/keys', { headers: JSON_AUTH, body: '{"name":""}' }))
    await expect(200, call('GET', '/v1/keys', '/v1/keys', { headers: AUTH }))
    await expect(200, call('GET', '/v1/keys/{id}', `/v1/keys/${id}`, { headers: AUTH }))
    await expect(403, call('GET', '/v1/hooks', '/v1/hooks', { headers: { authorization: `Bearer ${key}` } }))
    await expect(204, call('DELETE', '/v1/keys/{id}', `/v1/keys/${id}`, { headers: AUTH }))
    await expect(404, call('GET', '/v1/keys/{id}', `/v1/keys/${id}`, { headers: AUTH }))
    await expect(200, call('GET', '/v1/connections', '/v1/connections', { headers: AUTH }))
    await expect(400, call('GET', '/v1/connections', '/v1/connections?protocol=smoke', { headers: AUTH }))
    await expect(404, call('DELETE', '/v1/connections/{id}', '/v1/connections/none', { headers: AUTH }))
    await expect(200, call('GET', '/v1/cluster', '/v1/cluster', { headers: AUTH }))
  })

  test('event types: register, a new version with its report, list, one, one version (JSON and the schema itself), publish refused', async () => {
    const type = '/v1/event-types/{type}'
    const schema = { type: 'object', properties: { n: { type: 'integer' } } }
    await expect(
      201,
      call('PUT', type, '/v1/event-types/c.made', { headers: JSON_AUTH, body: JSON.stringify({ schema }) }),
    )
    await expect(
      200,
      call('PUT', type, '/v1/event-types/c.made', {
        headers: JSON_AUTH,
        body: JSON.stringify({ schema: { ...schema, required: ['n'] }, description: 'Made.' }),
      }),
    )
    await expect(
      400,
      call('PUT', type, '/v1/event-types/c.made', { headers: JSON_AUTH, body: '{"schema":"x"}' }),
    )
    await expect(200, call('GET', '/v1/event-types', '/v1/event-types', { headers: AUTH }))
    await expect(400, call('GET', '/v1/event-types', '/v1/event-types?limit=0', { headers: AUTH }))
    await expect(200, call('GET', type, '/v1/event-types/c.made', { headers: AUTH }))
    await expect(404, call('GET', type, '/v1/event-types/c.none', { headers: AUTH }))
    const version = '/v1/event-types/{type}/versions/{version}'
    await expect(200, call('GET', version, '/v1/event-types/c.made/versions/1', { headers: AUTH }))
    await expect(
      200,
      call('GET', version, '/v1/event-types/c.made/versions/2', {
        headers: { ...AUTH, accept: 'application/schema+json' },
      }),
    )
    await expect(404, call('GET', version, '/v1/event-types/c.made/versions/9', { headers: AUTH }))
    const refused = JSON.stringify({ type: 'c.made', data: { n: 'x' } })
    await expect(
      422,
      call('POST', '/v1/topics/{topic}/events', '/v1/topics/c/events', { headers: JSON_AUTH, body: refused }),
    )
  })

  test('every documented operation was called above (but the WebSocket handshake, which test/streams covers)', () => {
    const missing: string[] = []
    for (const [path, item] of Object.entries(document['paths'] as Record<string, Doc>)) {
      for (const method of Object.keys(item)) {
        const name = `${method.toUpperCase()} ${path}`
        if (path === '/v1/ws' || exercised.has(name)) continue
        missing.push(name)
      }
    }
    assert.deepEqual(missing, [])
  })
})
