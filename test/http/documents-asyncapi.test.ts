import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import Fastify from 'fastify'
import type { EventTypeVersion } from '../../src/event-types/catalog.ts'
import { errorHandler } from '../../src/http/problem.ts'
import { registerDocumentRoutes } from '../../src/http/routes/documents.ts'
import { documentOnlySchemas } from '../../src/http/schemas/common.ts'
import { publish, startTestServer, type TestServer } from '../helpers.ts'
import { WsClient } from '../streams/clients.ts'
import { documentValidator } from './documents-contract.ts'

const KEY = 'asyncapi-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }

// biome-ignore lint/suspicious/noExplicitAny: the document is walked as plain JSON, key by key
type Doc = Record<string, any>

/**
 * The AsyncAPI document against what really flows: every WebSocket message a client sends and every
 * one Herald answers, and the events of SSE and NDJSON streams, validated against the message
 * payloads /asyncapi.json declares.
 */
describe('what flows is what /asyncapi.json says', () => {
  let server: TestServer
  let document: Doc
  let validator: ReturnType<typeof documentValidator>

  before(async () => {
    server = await startTestServer({ apiKey: KEY })
    document = (await (await fetch(`${server.url}/asyncapi.json`, { headers: AUTH })).json()) as Doc
    validator = documentValidator(document)
    for (const n of [1, 2]) {
      assert.equal((await publish(server.url, 'w', { type: 'w.thing', data: { n } }, AUTH)).status, 201)
    }
  })
  after(() => server.close())

  /** The names of the messages an operation lists (its channel's, by reference). */
  function operationMessages(operation: string): string[] {
    const channel = document['operations'][operation].channel.$ref.split('/').at(-1)
    return document['operations'][operation].messages.map((reference: Doc) => {
      const name = reference['$ref'].split('/').at(-1)
      return document['channels'][channel].messages[name].$ref.split('/').at(-1) as string
    })
  }

  function assertMessage(name: string, value: unknown): void {
    const message = document['components']['messages'][name]
    assert.ok(message, `no message ${name}`)
    const validate = validator.compile(message.payload)
    assert.ok(
      validate(value),
      `${name}: ${JSON.stringify(value)}\n${JSON.stringify(validate.errors, null, 1)}`,
    )
  }

  test('WebSocket: each client message and each server message fits its declared payload, and every declared server op was seen', async () => {
    const sent: Record<string, unknown>[] = []
    const open = async () => WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`, ['herald.v1'])
    const first = await open()
    const second = await open()
    const send = (client: WsClient, message: Record<string, unknown>) => {
      sent.push(message)
      client.send(message)
    }
    try {
      send(first, { op: 'auth', token: KEY, ref: 'a' })
      send(second, { op: 'auth', token: KEY, ref: 'a' })
      await first.reply('a')
      await second.reply('a')
      send(first, {
        op: 'subscribe',
        topic: 'w',
        after: 0,
        presence: { info: { name: 'Ann' } },
        presence_events: true,
        ref: 1,
      })
      await first.until(() => first.events('w').length === 2)
      send(second, { op: 'subscribe', topic: 'w', presence: {}, ref: 2 })
      await second.reply(2)
      await first.until(() => first.messages.some((m) => m['op'] === 'join'))
      send(first, { op: 'presence', topic: 'w', ref: 3 })
      await first.reply(3)
      send(first, { op: 'publish', topic: 'w', type: 'w.thing', data: { n: 3 }, ref: 4 })
      await first.reply(4)
      // Not a valid subscribe (the topic's name), sent to get an error: not checked as a client message.
      first.send({ op: 'subscribe', topic: 'bad!topic', ref: 5 })
      await first.reply(5)
      send(second, { op: 'subscribe', topic: 'w', after: 1000, ref: 6 })
      await second.until(() => second.messages.some((m) => m['op'] === 'gap'))
      await second.close()
      await first.until(() => first.messages.some((m) => m['op'] === 'leave'))
      send(first, { op: 'unsubscribe', topic: 'w', ref: 7 })
      await first.reply(7)
    } finally {
      await first.close()
      await second.close()
    }

    const fromClient = operationMessages('webSocketSend')
    const byOp = (names: string[]) =>
      new Map(names.map((name) => [document['components']['messages'][name].payload, name] as const))
    // Each client message fits one of the messages a client sends (by its `op`).
    for (const message of sent) {
      const matching = [...byOp(fromClient)].filter(([payload]) => validator.compile(payload)(message))
      assert.equal(
        matching.length,
        1,
        `client message ${JSON.stringify(message)} fits ${matching.length} messages`,
      )
    }
    const fromServer = operationMessages('webSocketReceive')
    const seen = new Set<string>()
    for (const message of [...first.messages, ...second.messages]) {
      const name = `ws.${String(message['op'])}`
      assert.ok(fromServer.includes(name), `the server sent ${name}, which webSocketReceive does not list`)
      assertMessage(name, message)
      seen.add(name)
    }
    assert.deepEqual([...seen].sort(), [...fromServer].sort())
  })

  test('SSE and NDJSON: every event sent fits the Event message of the topic channel', async () => {
    assert.ok(operationMessages('subscribe').includes('Event'))
    for (const accept of ['text/event-stream', 'application/x-ndjson']) {
      const controller = new AbortController()
      const response = await fetch(`${server.url}/v1/topics/w/events?after=0`, {
        headers: { ...AUTH, accept },
        signal: controller.signal,
      })
      assert.equal(response.status, 200)
      const reader = response.body!.getReader()
      let text = ''
      const events = () =>
        text
          .split('\n')
          .filter((line) =>
            accept === 'text/event-stream' ? line.startsWith('data: ') : line.startsWith('{'),
          )
          .map((line) => JSON.parse(accept === 'text/event-stream' ? line.slice(6) : line) as unknown)
      while (events().length < 3) {
        const { value, done } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
      }
      controller.abort()
      assert.equal(events().length, 3, text)
      for (const event of events()) assertMessage('Event', event)
    }
  })
})

describe('the documents read the catalog they are given, at each request', () => {
  const CATALOG: EventTypeVersion[] = [
    {
      type: 'invoice.paid',
      version: 3,
      schema: { type: 'object', properties: { amount: { type: 'number' } } },
      description: 'Paid.',
      deprecated: false,
      created_at: '2026-11-01T00:00:00.000Z',
    },
  ]
  let url: string
  let failing = false
  const app = Fastify()
  before(async () => {
    app.setErrorHandler(errorHandler)
    documentOnlySchemas(app)
    registerDocumentRoutes(app, { config: { publicUrl: 'https://herald.example' } } as never, async () => {
      if (failing) throw new Error('the store is out of reach')
      return CATALOG
    })
    url = await app.listen({ port: 0, host: '127.0.0.1' })
  })
  after(() => app.close())

  test('a registered type appears in both documents', async () => {
    const openapi = (await (await fetch(`${url}/openapi.json`)).json()) as Doc
    assert.ok(openapi['webhooks']['invoice.paid'])
    assert.equal(openapi['servers'][0].url, 'https://herald.example')
    const asyncapi = (await (await fetch(`${url}/asyncapi.json`)).json()) as Doc
    assert.ok(asyncapi['components']['messages']['Event.invoice.paid'])
    assert.ok(asyncapi['channels']['topicEvents'].messages['Event.invoice.paid'])
  })

  test('a change of the catalog shows at the next request (a new type, a new description)', async () => {
    const before = (await (await fetch(`${url}/openapi.json`)).json()) as Doc
    assert.deepEqual(Object.keys(before['webhooks']).sort(), ['*', 'invoice.paid'])
    CATALOG.push({ ...CATALOG[0]!, type: 'invoice.voided', version: 1 })
    CATALOG[0]!.description = 'Paid in full.'
    try {
      const openapi = (await (await fetch(`${url}/openapi.json`)).json()) as Doc
      assert.deepEqual(Object.keys(openapi['webhooks']).sort(), ['*', 'invoice.paid', 'invoice.voided'])
      assert.match(openapi['webhooks']['invoice.paid'].post.description, /Paid in full/)
      const asyncapi = (await (await fetch(`${url}/asyncapi.json`)).json()) as Doc
      assert.ok(asyncapi['components']['messages']['Event.invoice.voided'])
    } finally {
      CATALOG.pop()
      CATALOG[0]!.description = 'Paid.'
    }
  })

  test('a catalog that cannot be read is a 503 problem+json, not a document without the types', async () => {
    failing = true
    try {
      for (const path of ['/openapi.json', '/asyncapi.json']) {
        const answer = await fetch(`${url}${path}`)
        assert.equal(answer.status, 503)
        assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/)
        assert.equal(answer.headers.get('cache-control'), null)
      }
    } finally {
      failing = false
    }
  })
})
