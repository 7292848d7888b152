import assert from 'node:assert/strict'
import { isUtf8 } from 'node:buffer'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { publish, readAll } from '../helpers.ts'
import {
  assertAlive,
  assertAnswer,
  checkProperty,
  type FuzzServer,
  hostileString,
  jsonText,
  maybe,
  numberText,
  Outcomes,
  percentEncode,
  send,
  startFuzzServer,
  topicsSnapshot,
} from './fuzz.ts'

/**
 * The publish body parsers under fuzz: plain JSON, CloudEvents structured mode and batches, binary
 * mode with ce-* headers and any body in any media type. Whatever is sent, the answer is a 201/200
 * with what was stored, or a problem+json 4xx after which the store is exactly as it was.
 */

const FILE = 'test/fuzz/publish.test.ts'
const TOPICS = ['fz', 'fz/b']
const CONTROL = 'control'

// ---- generators ----------------------------------------------------------------------------------

const stringText = hostileString.map((s) => JSON.stringify(s))
const attributeText = fc.oneof({ arbitrary: stringText, weight: 4 }, { arbitrary: jsonText, weight: 1 })
const typeText = fc.oneof(
  {
    arbitrary: fc
      .constantFrom('order.created', 'a', 'x.y.z', 'a.b.c.d.e.f.g.h')
      .map((s) => JSON.stringify(s)),
    weight: 5,
  },
  { arbitrary: attributeText, weight: 3 },
)
const timeText = fc.oneof(
  fc
    .constantFrom(
      '2026-11-22T12:00:00Z',
      '2026-11-22t12:00:00.123456789z',
      '2026-02-30T00:00:00Z',
      '9999-12-31T23:59:59.999+23:59',
      '0000-01-01T00:00:00Z',
      '2026-11-22T25:61:61Z',
      '2026-11-22 12:00:00Z',
    )
    .map((s) => JSON.stringify(s)),
  attributeText,
)
const base64Text = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((bytes) => JSON.stringify(Buffer.from(bytes).toString('base64'))),
  fc.constantFrom('"="', '"===="', '"a"', '"YQ"', '"YQ=="', '"Y Q=="', '"-_"'),
  attributeText,
)
const extensionName = fc.oneof(
  fc.stringMatching(/^[a-z0-9]{1,20}$/),
  fc.constantFrom('topic', 'seq', 'Upper', 'x'.repeat(21), 'a-b', 'traceparent', '__proto__'),
  hostileString,
)

/** A valid-looking value (as JSON text) most of the time, a hostile one otherwise. */
function attribute(...valid: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...valid).map((value) => JSON.stringify(value)), weight: 3 },
    { arbitrary: attributeText, weight: 1 },
  )
}

/** Present `tenths` times in ten. */
function sometimes(arbitrary: fc.Arbitrary<string>, tenths: number): fc.Arbitrary<string | undefined> {
  return maybe(arbitrary, tenths * 10)
}

/** One event as JSON text: a subset of the attributes, each valid-looking or hostile. */
const eventText = fc
  .record({
    specversion: sometimes(
      fc.oneof(
        { arbitrary: fc.constant('"1.0"'), weight: 6 },
        { arbitrary: fc.constantFrom('"0.3"', '1', 'null', '"1.0 "'), weight: 1 },
      ),
      7,
    ),
    type: sometimes(typeText, 9),
    id: sometimes(attribute('1', 'id-2', 'x'.repeat(256), 'x'.repeat(257), '\ud800', '\udfff', '\ufffd'), 4),
    source: sometimes(attribute('/s', 'urn:x', 'https://example.com/a?b#c'), 3),
    subject: sometimes(attribute('s', '\u2028'), 2),
    time: sometimes(timeText, 2),
    datacontenttype: sometimes(attribute('application/json', 'text/plain', 'application/octet-stream'), 2),
    dataschema: sometimes(attribute('https://example.com/schema'), 1),
    data: sometimes(
      fc.oneof(
        { arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)), weight: 3 },
        { arbitrary: jsonText, weight: 2 },
      ),
      6,
    ),
    data_base64: sometimes(base64Text, 1),
    extensions: fc.oneof(
      { arbitrary: fc.constant([]), weight: 4 },
      {
        arbitrary: fc.array(fc.tuple(extensionName, fc.oneof(stringText, numberText, jsonText)), {
          maxLength: 3,
        }),
        weight: 1,
      },
    ),
  })
  .map(({ extensions, ...fields }) => {
    const entries = Object.entries(fields)
      .filter(([, value]) => value !== undefined)
      .map(([name, value]) => `"${name}":${value}`)
    for (const [name, value] of extensions) entries.push(`${JSON.stringify(name)}:${value}`)
    return `{${entries.join(',')}}`
  })

/** An event likely to be valid, so that batches and repeats reach the store. */
const plainEventText = fc
  .record(
    {
      type: fc.constantFrom('a', 'b.c'),
      id: fc.constantFrom('1', '2', 'x', '\ud800', '\udc00'),
      source: fc.constantFrom('/s', 'urn:x'),
      data: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: ['type'] },
  )
  .map((event) => JSON.stringify(event))

const batchText = fc
  .array(fc.oneof(eventText, plainEventText, plainEventText), { maxLength: 5 })
  .map((items) => `[${items.join(',')}]`)

/** A body: an event, a batch, any JSON, mutated JSON, arbitrary bytes, or too much. */
const bodyBytes: fc.Arbitrary<Buffer> = fc.oneof(
  { arbitrary: eventText.map((text) => Buffer.from(text)), weight: 6 },
  { arbitrary: plainEventText.map((text) => Buffer.from(text)), weight: 2 },
  { arbitrary: batchText.map((text) => Buffer.from(text)), weight: 3 },
  { arbitrary: jsonText.map((text) => Buffer.from(text)), weight: 2 },
  {
    // JSON cut short, or with a byte overwritten: the parser's error paths.
    arbitrary: fc
      .tuple(eventText, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean())
      .map(([text, at, byte, cut]) => {
        const bytes = Buffer.from(text)
        const index = at % Math.max(1, bytes.length)
        if (cut) return bytes.subarray(0, index)
        bytes[index] = byte
        return bytes
      }),
    weight: 2,
  },
  { arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)), weight: 2 },
  {
    arbitrary: fc.constantFrom(
      Buffer.from(`[${Array.from({ length: 1001 }, () => '{"type":"x"}').join(',')}]`),
      Buffer.from(`{"type":"big","data":"${'x'.repeat(1024 * 1024)}"}`),
      Buffer.from('\ufeff{"type":"bom"}'),
      Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from('{"type":"bom"}')]),
      Buffer.from([0x7b, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0x22, 0x7d]), // bad UTF-8
      Buffer.from('{"type":"a"} {"type":"b"}'),
      Buffer.alloc(0),
    ),
    weight: 1,
  },
)

const jsonContentType = fc.constantFrom(
  'application/json',
  'application/json',
  'application/cloudevents+json',
  'application/cloudevents-batch+json',
  'application/json; charset=utf-8',
  'application/json;charset="UTF-8"',
  'APPLICATION/JSON',
  'application/json; charset=iso-8859-1',
  'application/json; charset=utf-16',
  'application/cloudevents+json',
  'application/cloudevents+json; charset=utf-8',
  'application/cloudevents-batch+json',
  'application/json; foo=bar; charset=utf8',
)
const otherContentType = fc.oneof(
  fc.constantFrom(
    'text/plain',
    'text/plain; charset=utf-8',
    'text/plain; charset=iso-8859-1',
    'text/html; charset="utf-8"',
    'application/octet-stream',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/xml',
    'application/vnd.api+json',
    'application/ld+json; charset=latin1',
    'application/json, text/plain',
    ';;;',
    '*/*',
    'text/',
    '',
  ),
  fc.stringMatching(/^[\x21-\x7e]{1,30}$/),
)

/** Header values as a client may send them: plain, percent-encoded, invalid escapes, raw non-ASCII. */
const headerValue = fc.oneof(
  { arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,40}$/).map((s) => s.trim()), weight: 4 },
  { arbitrary: hostileString.map((s) => percentEncode(s, false)), weight: 3 },
  { arbitrary: fc.constantFrom('%', '%zz', '%ff', '%C3%28', '%00', '%0a', '%E2%80%A8', 'a%2'), weight: 2 },
  { arbitrary: fc.constantFrom('\u00e9', '\u00ff\u00fe', 'caf\u00e9'), weight: 1 },
  { arbitrary: fc.constantFrom('\u0001', 'a\u0000b', '\u007f'), weight: 1 },
  { arbitrary: fc.constantFrom('x'.repeat(3000), '%41'.repeat(1000)), weight: 1 },
)
const ceHeaders = fc.array(
  fc.tuple(
    fc.oneof(
      fc.constantFrom(
        'ce-type',
        'ce-type',
        'ce-specversion',
        'ce-id',
        'ce-source',
        'ce-subject',
        'ce-time',
        'ce-dataschema',
        'ce-data',
        'ce-data_base64',
        'ce-datacontenttype',
        'ce-topic',
        'ce-seq',
        'CE-Type',
      ),
      fc.stringMatching(/^[a-z0-9]{1,22}$/).map((name) => `ce-${name}`),
    ),
    headerValue,
  ),
  { maxLength: 6 },
)

const idempotencyKey = maybe(
  fc.oneof(fc.constantFrom('k1', 'k2', 'k'.repeat(255), 'k'.repeat(256), ''), headerValue),
  20,
)

interface PublishCase {
  topic: string
  mode: 'json' | 'binary' | 'any'
  contentType: string | undefined
  ce: Array<[string, string]>
  idempotencyKey: string | undefined
  body: Buffer
}

/** A JSON body with a Content-Type that mostly fits its shape (one event, or a batch), or any. */
const jsonBody = fc.oneof(
  {
    arbitrary: fc.record({
      body: eventText.map((text) => Buffer.from(text)),
      contentType: fc.oneof(
        { arbitrary: fc.constantFrom('application/json', 'application/cloudevents+json'), weight: 4 },
        { arbitrary: jsonContentType, weight: 1 },
      ),
    }),
    weight: 3,
  },
  {
    arbitrary: fc.record({
      body: batchText.map((text) => Buffer.from(text)),
      contentType: fc.oneof(
        { arbitrary: fc.constantFrom('application/json', 'application/cloudevents-batch+json'), weight: 4 },
        { arbitrary: jsonContentType, weight: 1 },
      ),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ body: bodyBytes, contentType: jsonContentType }), weight: 2 },
)

const publishCase: fc.Arbitrary<PublishCase> = fc.oneof(
  {
    arbitrary: fc
      .record({ topic: fc.constantFrom(...TOPICS), json: jsonBody, idempotencyKey })
      .map(({ topic, json, idempotencyKey }) => ({
        topic,
        mode: 'json' as const,
        ce: [],
        idempotencyKey,
        ...json,
      })),
    weight: 5,
  },
  {
    arbitrary: fc.record({
      topic: fc.constantFrom(...TOPICS),
      mode: fc.constant('binary' as const),
      contentType: maybe(fc.oneof(jsonContentType, otherContentType), 85),
      ce: ceHeaders.map((headers): Array<[string, string]> => [['ce-type', 'bin.x'], ...headers]),
      idempotencyKey,
      body: fc.oneof(
        bodyBytes,
        fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      ),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({
      topic: fc.constantFrom(...TOPICS),
      mode: fc.constant('any' as const),
      contentType: maybe(otherContentType, 75),
      ce: fc.oneof(fc.constant<Array<[string, string]>>([]), ceHeaders),
      idempotencyKey,
      body: bodyBytes,
    }),
    weight: 2,
  },
)

// ---- the property --------------------------------------------------------------------------------

interface TopicRow {
  topic: string
  head_seq: number
}

function headOf(snapshot: unknown[], topic: string): number {
  return (snapshot as TopicRow[]).find((row) => row.topic === topic)?.head_seq ?? 0
}

/** Binary mode: a ce-type or ce-specversion header, whatever the body. */
function isBinary(c: PublishCase): boolean {
  return c.ce.some(([name]) => name.toLowerCase() === 'ce-type' || name.toLowerCase() === 'ce-specversion')
}

/** What a client meant to store, from the JSON it sent (only called when the server took it). */
function sentEvents(c: PublishCase): Array<Record<string, unknown>> {
  const parsed = JSON.parse(c.body.toString('utf8')) as unknown
  return Array.isArray(parsed)
    ? (parsed as Array<Record<string, unknown>>)
    : [parsed as Record<string, unknown>]
}

/** The binary-mode data as stored, compared with the body's bytes. */
function assertBinaryData(c: PublishCase, stored: Record<string, unknown>): void {
  if (c.body.length === 0) {
    assert.ok(!('data' in stored) && !('data_base64' in stored), 'an empty body stored data')
    return
  }
  if (typeof stored['data_base64'] === 'string') {
    assert.equal(stored['data_base64'], c.body.toString('base64'), 'data_base64 is not the bytes sent')
  } else if (
    typeof stored['data'] === 'string' &&
    (c.contentType ?? '').toLowerCase().trim().startsWith('text/')
  ) {
    assert.ok(isUtf8(c.body), 'bytes that are not UTF-8 were stored as a string')
    assert.equal(stored['data'], c.body.toString('utf8'), 'text data is not the text sent')
  } else {
    assert.equal(
      JSON.stringify(stored['data']),
      JSON.stringify(JSON.parse(c.body.toString('utf8'))),
      'JSON data is not the JSON sent',
    )
  }
  if (c.contentType) assert.equal(stored['datacontenttype'], c.contentType, 'datacontenttype is not as sent')
}

describe('fuzz: publish body parsers', () => {
  let server: FuzzServer
  let control: unknown[]

  before(async () => {
    server = await startFuzzServer()
    // A control topic, never a target: what the fuzz sends must never change it.
    for (const body of [
      { type: 'c.1', data: { n: 1 } },
      { type: 'c.2', data: 'two' },
    ]) {
      assert.equal((await publish(server.url, CONTROL, body)).status, 201)
    }
    control = await readAll(server.url, CONTROL)
  })
  after(async () => {
    assert.deepEqual(await readAll(server.url, CONTROL), control, 'the control topic changed')
    await server.close()
  })

  test('any body, in any mode: a stored event as sent, or a problem+json 4xx that stores nothing', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(publishCase, async (c) => {
        const headers: Array<[string, string]> = []
        if (c.contentType !== undefined) headers.push(['Content-Type', c.contentType])
        headers.push(...c.ce)
        if (c.idempotencyKey !== undefined) headers.push(['Idempotency-Key', c.idempotencyKey])
        const before = await topicsSnapshot(server.url)
        const answer = await send(server.port, {
          method: 'POST',
          target: `/v1/topics/${c.topic}/events`,
          headers,
          body: c.body,
        })
        const problem = assertAnswer(answer, `POST ${c.mode}`)
        outcomes.add(`${c.mode} ${answer.status}${problem ? ` ${problem.type.split(':').at(-1)}` : ''}`)
        const after = await topicsSnapshot(server.url)
        if (problem) {
          assert.deepEqual(after, before, `a refused publish (${answer.status}) changed the store`)
        } else {
          assert.ok(answer.status === 201 || answer.status === 200, `publish answered ${answer.status}`)
          const answered = JSON.parse(answer.text) as unknown
          const events = (Array.isArray(answered) ? answered : [answered]) as Array<Record<string, unknown>>
          const headBefore = headOf(before, c.topic)
          const fresh = new Set(
            events.map((event) => event['seq'] as number).filter((seq) => seq > headBefore),
          )
          assert.equal(
            headOf(after, c.topic),
            headBefore + fresh.size,
            'the head did not move by the events stored',
          )
          assert.equal(
            answer.status,
            fresh.size > 0 ? 201 : 200,
            'status does not say whether anything was stored',
          )
          assert.deepEqual(
            after.filter((row) => (row as TopicRow).topic !== c.topic),
            before.filter((row) => (row as TopicRow).topic !== c.topic),
            'a publish changed another topic',
          )
          // Each answered event is what the store now holds at its seq.
          for (const event of events) {
            assert.equal(event['topic'], c.topic)
            const stored = await fetch(`${server.url}/v1/topics/${c.topic}/events/${event['seq']}`)
            assert.equal(stored.status, 200)
            assert.deepEqual(await stored.json(), event, 'the answer is not what was stored')
          }
          // …and holds what was sent; a repeat answers the event it repeats: the same (source, id).
          const sent = isBinary(c) ? undefined : sentEvents(c)
          const seen = new Set<number>()
          events.forEach((event, index) => {
            const seq = event['seq'] as number
            const isNew = seq > headBefore && !seen.has(seq)
            seen.add(seq)
            if (!isNew) {
              if (sent === undefined || c.idempotencyKey !== undefined) return
              const input = sent[index]!
              assert.equal(event['id'], input['id'], 'answered as a repeat of an event with another id')
              assert.equal(
                event['source'],
                input['source'] ?? `/v1/topics/${c.topic}`,
                'a repeat of another source',
              )
              return
            }
            if (sent === undefined) {
              assertBinaryData(c, event)
              return
            }
            const input = sent[index]!
            for (const name of ['type', 'id', 'source', 'subject', 'time', 'dataschema', 'data_base64']) {
              if (input[name] !== undefined) assert.equal(event[name], input[name], `${name} is not as sent`)
            }
            if ('data' in input) {
              assert.equal(
                JSON.stringify(event['data']),
                JSON.stringify(input['data']),
                'data is not as sent',
              )
            }
          })
        }
        await assertAlive(server, 'after a publish')
      }),
      { runs: 300, seconds: 6, outcomes, server },
    )
  })
})
