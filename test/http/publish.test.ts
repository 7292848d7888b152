import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import {
  problemOf,
  publish,
  readAll,
  type StoredEventJson,
  startTestServer,
  type TestServer,
} from '../helpers.ts'

describe('publish', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ bodyLimitBytes: 64 * 1024 })
  })
  after(() => server.close())

  test('one event: 201, the stored CloudEvent with topic and seq, and its Location', async () => {
    const response = await publish(server.url, 'orders', { type: 'order.created', data: { total: 42 } })
    assert.equal(response.status, 201)
    const event = (await response.json()) as StoredEventJson
    assert.equal(event['specversion'], '1.0')
    assert.match(event.id, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID')
    assert.equal(event['source'], '/v1/topics/orders')
    assert.equal(event.type, 'order.created')
    assert.equal(event['datacontenttype'], 'application/json')
    assert.deepEqual(event.data, { total: 42 })
    assert.equal(event.topic, 'orders')
    assert.equal(event.seq, 1)
    assert.ok(!Number.isNaN(Date.parse(event['time'] as string)))
    assert.equal(response.headers.get('location'), '/v1/topics/orders/events/1')
    const one = await fetch(`${server.url}/v1/topics/orders/events/1`)
    assert.deepEqual(await one.json(), event)
  })

  test('a batch is stored atomically with consecutive seqs, answered as an array', async () => {
    const response = await publish(server.url, 'batch', [
      { type: 'a', data: 1 },
      { type: 'b', data: 2, subject: 's' },
      { type: 'c' },
    ])
    assert.equal(response.status, 201)
    const events = (await response.json()) as StoredEventJson[]
    assert.deepEqual(
      events.map((e) => [e.type, e.seq]),
      [
        ['a', 1],
        ['b', 2],
        ['c', 3],
      ],
    )
    assert.equal(events[1]!['subject'], 's')
    assert.equal('data' in events[2]!, false, 'no data, no data attribute')
  })

  test('a batch with one invalid event stores none of it, and names the field', async () => {
    const response = await publish(server.url, 'atomic', [{ type: 'ok' }, { data: 1 }])
    const problem = await problemOf(response, 422)
    assert.equal(problem.field, '[1].type')
    assert.deepEqual(await readAll(server.url, 'atomic'), [])
  })

  test('CloudEvents structured mode keeps extension attributes', async () => {
    const response = await publish(
      server.url,
      'ce',
      { specversion: '1.0', id: 'ce-1', source: 'urn:shop', type: 'x.y', traceparent: 'tp', data: { a: 1 } },
      { 'content-type': 'application/cloudevents+json' },
    )
    assert.equal(response.status, 201)
    const event = (await response.json()) as StoredEventJson
    assert.equal(event.id, 'ce-1')
    assert.equal(event['source'], 'urn:shop')
    assert.equal(event['traceparent'], 'tp')
    const batch = await publish(
      server.url,
      'ce',
      [
        { specversion: '1.0', type: 'b1' },
        { specversion: '1.0', type: 'b2' },
      ],
      { 'content-type': 'application/cloudevents-batch+json' },
    )
    assert.equal(batch.status, 201)
    assert.deepEqual(
      ((await batch.json()) as StoredEventJson[]).map((e) => e.seq),
      [2, 3],
    )
  })

  test('CloudEvents binary mode: ce-* headers, the body as data in its own media type', async () => {
    const text = await fetch(`${server.url}/v1/topics/binary/events`, {
      method: 'POST',
      headers: {
        'content-type': 'text/plain',
        'ce-specversion': '1.0',
        'ce-type': 'note',
        'ce-id': 'n1',
        'ce-subject': 'caf%C3%A9',
      },
      body: 'hello',
    })
    assert.equal(text.status, 201)
    const note = (await text.json()) as StoredEventJson
    assert.deepEqual(
      [note.id, note.type, note['subject'], note['datacontenttype'], note.data],
      ['n1', 'note', 'café', 'text/plain', 'hello'],
    )
    const json = await fetch(`${server.url}/v1/topics/binary/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'ce-type': 'j' },
      body: '{"k":[1,2]}',
    })
    assert.deepEqual(((await json.json()) as StoredEventJson).data, { k: [1, 2] })
    const bytes = await fetch(`${server.url}/v1/topics/binary/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'ce-type': 'bin' },
      body: new Uint8Array([0, 255, 1]),
    })
    const bin = (await bytes.json()) as StoredEventJson
    assert.equal(bin['data_base64'], Buffer.from([0, 255, 1]).toString('base64'))
  })

  test('a batch holds at most 1000 events; more is 413 and stores nothing', async () => {
    const events = (count: number) => Array.from({ length: count }, () => ({ type: 't' }))
    const full = await publish(server.url, 'big-batch', events(1000))
    assert.equal(full.status, 201)
    assert.equal(((await full.json()) as StoredEventJson[]).length, 1000)
    const over = await problemOf(await publish(server.url, 'big-batch', events(1001)), 413)
    assert.equal(over.type, 'urn:herald:problem:payload-too-large')
    assert.match(over.detail, /at most 1000 events/)
    const ceOver = await publish(
      server.url,
      'big-batch',
      Array.from({ length: 1001 }, () => ({ specversion: '1.0', type: 't' })),
      { 'content-type': 'application/cloudevents-batch+json' },
    )
    await problemOf(ceOver, 413)
    assert.equal((await readAll(server.url, 'big-batch')).length, 1000)
  })

  test('Idempotency-Key: the repeat returns the original with 200 and stores nothing', async () => {
    const headers = { 'idempotency-key': 'order-77' }
    const first = await publish(server.url, 'idem', { type: 'paid', data: { n: 1 } }, headers)
    assert.equal(first.status, 201)
    const original = await first.json()
    const repeat = await publish(server.url, 'idem', { type: 'paid', data: { n: 1 } }, headers)
    assert.equal(repeat.status, 200)
    assert.deepEqual(await repeat.json(), original)
    assert.equal((await readAll(server.url, 'idem')).length, 1)
    const reused = await publish(server.url, 'idem', { type: 'paid', data: { n: 2 } }, headers)
    const problem = await problemOf(reused, 422)
    assert.equal(problem.field, 'Idempotency-Key')
    assert.equal((await readAll(server.url, 'idem')).length, 1)
  })

  test('a client id already stored in the topic is a repeat: 200 and the original', async () => {
    const first = await publish(server.url, 'dedupe', { type: 't', id: 'evt-1', data: 1 })
    assert.equal(first.status, 201)
    const again = await publish(server.url, 'dedupe', { type: 't', id: 'evt-1', data: 1 })
    assert.equal(again.status, 200)
    assert.deepEqual(await again.json(), await first.json())
    const other = await publish(server.url, 'dedupe-other', { type: 't', id: 'evt-1' })
    assert.equal(other.status, 201, 'ids are unique per topic')
  })

  test('a client id is a repeat only with the same source: CloudEvents identifies events by both', async () => {
    const structured = { 'content-type': 'application/cloudevents+json' }
    const ce = (source: string) => ({ specversion: '1.0', type: 't', id: 'ce-dup', source })
    const eu = await publish(server.url, 'dup-src', ce('urn:shop/eu'), structured)
    assert.equal(eu.status, 201)
    const euEvent = await eu.json()
    const us = await publish(server.url, 'dup-src', ce('urn:shop/us'), structured)
    assert.equal(us.status, 201, 'the same id from another source is another event')
    assert.equal(((await us.json()) as StoredEventJson).seq, 2)
    const euAgain = await publish(server.url, 'dup-src', ce('urn:shop/eu'), structured)
    assert.equal(euAgain.status, 200)
    assert.deepEqual(await euAgain.json(), euEvent)
    // Without a source, the event's source is the topic's: that pair is a third event.
    const plain = await publish(server.url, 'dup-src', { type: 't', id: 'ce-dup' })
    assert.equal(plain.status, 201)
    const plainAgain = await publish(server.url, 'dup-src', {
      type: 't',
      id: 'ce-dup',
      source: '/v1/topics/dup-src',
    })
    assert.equal(plainAgain.status, 200)
    assert.deepEqual(await plainAgain.json(), await plain.json())
    assert.deepEqual(
      (await readAll(server.url, 'dup-src')).map((event) => event['source']),
      ['urn:shop/eu', 'urn:shop/us', '/v1/topics/dup-src'],
    )
  })

  test('attributes that are not well-formed Unicode are refused, never stored as another event’s repeat', async () => {
    // A lone surrogate (JSON "\ud800") is no Unicode character, and CloudEvents Strings may not hold one.
    // Stored, it became U+FFFD: "\ud800", "\udfff" and "\ufffd" were one (source, id) and the later
    // events were answered as repeats of the first, and lost.
    const kept = await publish(server.url, 'surrogates', { type: 't', id: '\ufffd', data: 'kept' })
    assert.equal(kept.status, 201)
    for (const [field, event] of [
      ['id', { type: 't', id: '\ud800', data: 'lone high' }],
      ['id', { type: 't', id: '\udfff', data: 'lone low' }],
      ['source', { type: 't', id: 'a', source: '/s/\udbff' }],
      ['type', { type: 'order.\ud800' }],
      ['subject', { type: 't', subject: 'x\udc00y' }],
    ] as const) {
      const body = JSON.stringify(event)
      assert.match(body, /\\ud[8-9a-f]/, 'JSON.stringify escapes the lone surrogate')
      const problem = await problemOf(await publish(server.url, 'surrogates', body), 422)
      assert.equal(problem.field, field)
    }
    const extension = await publish(
      server.url,
      'surrogates',
      { specversion: '1.0', type: 't', source: '/s', id: 'e', ext: '\ud800' },
      { 'content-type': 'application/cloudevents+json' },
    )
    assert.equal((await problemOf(extension, 422)).field, 'ext')
    assert.deepEqual(
      (await readAll(server.url, 'surrogates')).map((event) => event.data),
      ['kept'],
    )
    // Data is JSON and keeps any string as sent, escaped: it comes back as it went in.
    const data = await publish(server.url, 'surrogates', { type: 't', data: { s: '\ud800' } })
    assert.equal(data.status, 201)
    assert.equal(((await data.json()) as { data: { s: string } }).data.s, '\ud800')
  })

  test('seq stays gapless under concurrent publishers', async () => {
    const publishers = Array.from({ length: 16 }, async (_, p) => {
      const seqs: number[] = []
      for (let i = 0; i < 25; i++) {
        const body = i % 5 === 0 ? [{ type: `p${p}` }, { type: `p${p}` }] : { type: `p${p}` }
        const response = await publish(server.url, 'race', body)
        assert.equal(response.status, 201)
        const stored = (await response.json()) as StoredEventJson | StoredEventJson[]
        seqs.push(...(Array.isArray(stored) ? stored : [stored]).map((e) => e.seq))
      }
      return seqs
    })
    const acknowledged = (await Promise.all(publishers)).flat().sort((a, b) => a - b)
    assert.equal(acknowledged.length, 16 * 30)
    assert.deepEqual(
      acknowledged,
      Array.from({ length: acknowledged.length }, (_, i) => i + 1),
    )
    const stored = await readAll(server.url, 'race')
    assert.deepEqual(
      stored.map((e) => e.seq),
      acknowledged,
    )
  })

  describe('bad input gets problem+json and stores nothing', () => {
    test('malformed JSON → 400', async () => {
      const problem = await problemOf(await publish(server.url, 'bad', '{"type": '), 400)
      assert.equal(problem.type, 'urn:herald:problem:invalid-json')
      const ce = await publish(server.url, 'bad', '{oops', { 'content-type': 'application/cloudevents+json' })
      assert.equal((await problemOf(ce, 400)).type, 'urn:herald:problem:invalid-json')
    })

    test('missing type → 422 naming the field', async () => {
      const problem = await problemOf(await publish(server.url, 'bad', { data: 1 }), 422)
      assert.equal(problem.field, 'type')
      assert.match(problem.detail, /type/)
    })

    test('wrong attribute types and unknown fields → 422 naming the field', async () => {
      const cases: Array<[unknown, string]> = [
        [{ type: 7 }, 'type'],
        [{ type: 't', id: '' }, 'id'],
        [{ type: 't', time: 'yesterday' }, 'time'],
        [{ type: 't', typo: 1 }, 'typo'],
        [{ type: 't', seq: 5 }, 'seq'],
        [{ type: 't', specversion: '0.3' }, 'specversion'],
        ['"just a string"', ''],
        [[], ''],
      ]
      for (const [body, field] of cases) {
        const problem = await problemOf(await publish(server.url, 'bad', body as object), 422)
        if (field) assert.equal(problem.field, field, JSON.stringify(body))
      }
    })

    test('an oversize body → 413', async () => {
      const body = { type: 't', data: 'x'.repeat(70 * 1024) }
      await problemOf(await publish(server.url, 'bad', body), 413)
    })

    test('a bad topic name → 400', async () => {
      for (const topic of ['-starts-with-dash', 'a//b', 'a/events', `${'x'.repeat(201)}`, 'sp%20ace']) {
        const problem = await problemOf(await publish(server.url, topic, { type: 't' }), 400)
        assert.equal(problem.type, 'urn:herald:problem:invalid-topic', topic)
      }
    })

    test('an unsupported media type → 415, an empty body → 400', async () => {
      const form = await fetch(`${server.url}/v1/topics/bad/events`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: 'type=t',
      })
      await problemOf(form, 415)
      await problemOf(await fetch(`${server.url}/v1/topics/bad/events`, { method: 'POST' }), 400)
    })

    test('nothing was stored by any of them', async () => {
      assert.deepEqual(await readAll(server.url, 'bad'), [])
    })
  })

  describe('data is stored as sent, or refused', () => {
    test('a number beyond a double (1e400) → 422 naming the field, in every mode; nothing stored', async () => {
      const structured = { 'content-type': 'application/cloudevents+json' }
      const ceBatch = { 'content-type': 'application/cloudevents-batch+json' }
      const cases: Array<[string, Record<string, string>, string]> = [
        ['{"type":"t","data":1e400}', {}, 'data'],
        ['{"type":"t","data":{"a/b":[1,-1e400]}}', {}, 'data'],
        ['[{"type":"a"},{"type":"b","data":{"x":1e999}}]', {}, '[1].data'],
        ['{"specversion":"1.0","type":"t","data":[1e400]}', structured, 'data'],
        ['{"specversion":"1.0","type":"t","big":1e400}', structured, 'big'],
        [
          '[{"specversion":"1.0","type":"t"},{"specversion":"1.0","type":"t","big":-1e400}]',
          ceBatch,
          '[1].big',
        ],
      ]
      for (const [body, headers, field] of cases) {
        const problem = await problemOf(await publish(server.url, 'inf', body, headers), 422)
        assert.equal(problem.field, field, body)
        assert.match(problem.detail, /1e400/)
      }
      const where = await problemOf(
        await publish(server.url, 'inf', '{"type":"t","data":{"a/b":[1,-1e400]}}'),
        422,
      )
      assert.match(where.detail, / at \/a~1b\/1 /, 'the detail points into data (RFC 6901)')
      for (const contentType of ['application/json', 'application/vnd.example+json']) {
        const binary = await fetch(`${server.url}/v1/topics/inf/events`, {
          method: 'POST',
          headers: { 'content-type': contentType, 'ce-type': 't' },
          body: '{"n":1e400}',
        })
        assert.equal((await problemOf(binary, 422)).field, 'data', contentType)
      }
      assert.deepEqual(await readAll(server.url, 'inf'), [])
      const largest = await publish(server.url, 'inf', '{"type":"t","data":[1.7976931348623157e308,-5e-324]}')
      assert.equal(largest.status, 201, 'large but finite numbers are kept')
      assert.deepEqual(((await largest.json()) as StoredEventJson).data, [Number.MAX_VALUE, -5e-324])
    })

    test('binary mode: text that is not UTF-8 is kept as its bytes, with its charset', async () => {
      const send = (contentType: string, bytes: number[]) =>
        fetch(`${server.url}/v1/topics/charset/events`, {
          method: 'POST',
          headers: { 'content-type': contentType, 'ce-type': 't' },
          body: new Uint8Array(bytes),
        })
      const cafe = [0x63, 0x61, 0x66, 0xe9] // "café" in ISO-8859-1
      const latin1 = await send('text/plain; charset=iso-8859-1', cafe)
      assert.equal(latin1.status, 201)
      const kept = (await latin1.json()) as StoredEventJson
      assert.equal(kept['data_base64'], Buffer.from(cafe).toString('base64'))
      assert.equal(kept['datacontenttype'], 'text/plain; charset=iso-8859-1')
      assert.equal('data' in kept, false)
      const invalid = (await (await send('text/plain', [0x41, 0xff, 0xfe])).json()) as StoredEventJson
      assert.equal(invalid['data_base64'], Buffer.from([0x41, 0xff, 0xfe]).toString('base64'), 'not UTF-8')
      const mislabelled = (await (await send('text/plain; charset=utf-8', cafe)).json()) as StoredEventJson
      assert.equal(mislabelled['data_base64'], Buffer.from(cafe).toString('base64'), 'says UTF-8, is not')
      const utf8 = (await (
        await send('text/plain; charset="UTF-8"', [...Buffer.from('\ufeffcafé')])
      ).json()) as StoredEventJson
      assert.equal(utf8.data, '\ufeffcafé', 'UTF-8 text is a string, its byte order mark kept')
      const stored = await readAll(server.url, 'charset')
      assert.deepEqual(
        stored.map((event) => event['data_base64'] ?? event.data),
        [kept['data_base64'], invalid['data_base64'], mislabelled['data_base64'], '\ufeffcafé'],
      )
    })

    test('JSON in another charset than UTF-8 is refused, not misread', async () => {
      const latin1Json = await fetch(`${server.url}/v1/topics/charset-json/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=iso-8859-1', 'ce-type': 't' },
        body: new Uint8Array([0x22, 0xe9, 0x22]),
      })
      assert.equal((await problemOf(latin1Json, 415)).field, 'Content-Type')
      const invalidUtf8 = await fetch(`${server.url}/v1/topics/charset-json/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/vnd.example+json', 'ce-type': 't' },
        body: new Uint8Array([0x22, 0xe9, 0x22]),
      })
      assert.equal((await problemOf(invalidUtf8, 400)).type, 'urn:herald:problem:invalid-json')
      for (const contentType of ['application/json', 'application/cloudevents+json']) {
        const plain = await publish(
          server.url,
          'charset-json',
          '{"specversion":"1.0","type":"t","data":"é"}',
          {
            'content-type': `${contentType}; charset=windows-1252`,
          },
        )
        assert.equal((await problemOf(plain, 415)).field, 'Content-Type', contentType)
      }
      assert.deepEqual(await readAll(server.url, 'charset-json'), [])
      const utf8 = await publish(server.url, 'charset-json', '{"type":"t","data":"é"}', {
        'content-type': 'application/json; charset=utf-8',
      })
      assert.equal(((await utf8.json()) as StoredEventJson).data, 'é')
    })
  })

  describe('nesting depth', () => {
    /** JSON text of arrays nested `depth` levels deep. */
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

    test('data nested up to 100 levels is stored as sent', async () => {
      const response = await publish(server.url, 'deep-ok', `{"type":"t","data":${nested(100)}}`)
      assert.equal(response.status, 201)
      const event = (await response.json()) as StoredEventJson
      assert.equal(JSON.stringify(event.data), nested(100))
    })

    test('deeper data → 422 naming the field, in every publish form; nothing stored', async () => {
      for (const depth of [101, 5000]) {
        const plain = await publish(server.url, 'deep', `{"type":"t","data":${nested(depth)}}`)
        const problem = await problemOf(plain, 422)
        assert.equal(problem.field, 'data', `depth ${depth}`)
        assert.match(problem.detail, /100 levels/)
      }
      const batch = await publish(
        server.url,
        'deep',
        `[{"type":"a"},{"type":"b"},{"type":"c"},{"type":"d","data":{"k":${nested(5000)}}}]`,
      )
      assert.equal((await problemOf(batch, 422)).field, '[3].data')
      const structured = await publish(
        server.url,
        'deep',
        `{"specversion":"1.0","type":"t","data":${nested(5000)}}`,
        { 'content-type': 'application/cloudevents+json' },
      )
      assert.equal((await problemOf(structured, 422)).field, 'data')
      const ceBatch = await publish(
        server.url,
        'deep',
        `[{"specversion":"1.0","type":"t","data":${nested(5000)}}]`,
        {
          'content-type': 'application/cloudevents-batch+json',
        },
      )
      assert.equal((await problemOf(ceBatch, 422)).field, '[0].data')
      for (const contentType of ['application/json', 'application/vnd.example+json']) {
        const binary = await fetch(`${server.url}/v1/topics/deep/events`, {
          method: 'POST',
          headers: { 'content-type': contentType, 'ce-type': 't' },
          body: nested(5000),
        })
        assert.equal((await problemOf(binary, 422)).field, 'data', contentType)
      }
      assert.deepEqual(await readAll(server.url, 'deep'), [])
    })

    test('a body deep anywhere else is a 4xx too, never a 500', async () => {
      const deep = nested(30_000)
      const cases: Array<[string, string, string, number]> = [
        ['application/json', `[${deep}]`, '[0]', 422],
        ['application/json', deep, '[0]', 422],
        ['application/json', `{"type":${deep}}`, 'type', 422],
        ['application/json', `{"type":"t","typo":${deep}}`, 'typo', 422],
        ['application/json', `{"type":"t","id":${deep}}`, 'id', 422],
        ['application/cloudevents+json', `{"specversion":"1.0","type":"t","ext":${deep}}`, 'ext', 422],
        ['application/cloudevents-batch+json', `[${deep}]`, '[0]', 422],
      ]
      for (const [contentType, body, field, status] of cases) {
        const problem = await problemOf(
          await publish(server.url, 'deep', body, { 'content-type': contentType }),
          status,
        )
        assert.equal(problem.field, field, `${contentType} ${body.slice(0, 30)}`)
      }
      const retention = await fetch(`${server.url}/v1/topics/deep`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: `{"retention":{"max_age":${deep}}}`,
      })
      assert.equal((await problemOf(retention, 400)).field, 'retention.max_age')
      const hook = await fetch(`${server.url}/v1/hooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"target_url":${deep},"topic":"deep"}`,
      })
      assert.equal((await problemOf(hook, 400)).field, 'target_url')
      assert.deepEqual(await readAll(server.url, 'deep'), [])
    })
  })

  test('unknown routes and wrong methods answer problem+json', async () => {
    await problemOf(await fetch(`${server.url}/v2/nothing`), 404)
    await problemOf(await fetch(`${server.url}/v1/topics/orders/events/999`), 404)
    await problemOf(await fetch(`${server.url}/v1/topics/orders`, { method: 'POST' }), 405)
  })
})
