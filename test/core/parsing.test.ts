import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { assertSafeBinding, ConfigError, loadConfig, parseSize } from '../../src/config/config.ts'
import { parseDuration, parseDurationList } from '../../src/core/duration.ts'
import { HeraldError } from '../../src/core/errors.ts'
import {
  type EventInput,
  parseBinaryEvent,
  parseEventObject,
  prepareEvent,
  prepareEvents,
  ulid,
  withPosition,
} from '../../src/core/event.ts'
import { validateTopic } from '../../src/core/topic.ts'

describe('durations and sizes', () => {
  test('units ms, s, m, h, d; a bare number is seconds', () => {
    assert.deepEqual(
      ['250ms', '5s', '5m', '2h', '7d', '1.5s', '30'].map(parseDuration),
      [250, 5000, 300_000, 7_200_000, 604_800_000, 1500, 30_000],
    )
    assert.throws(() => parseDuration('5 minutes'), /not a duration/)
    assert.throws(() => parseDuration('-1s'), /not a duration/)
  })

  test('a duration is at most 100 years (36500d), and short text', () => {
    assert.equal(parseDuration('36500d'), 36_500 * 86_400_000)
    assert.equal(parseDuration(' 2h '), 7_200_000)
    for (const text of ['36501d', '99999999999999d', `${'9'.repeat(30)}ms`]) {
      assert.throws(() => parseDuration(text), /longest duration Herald takes, 36500d/, text)
    }
    assert.throws(() => parseDuration(`1${' '.repeat(40)}s`), /not a duration/)
    assert.throws(() => parseDurationList('0s,5s,36501d'), /36500d/)
  })

  test('the default retry schedule parses to its eight delays', () => {
    assert.deepEqual(
      parseDurationList('0s,5s,5m,30m,2h,5h,10h,10h'),
      [0, 5000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
    )
    assert.throws(() => parseDurationList('1s,,2s'))
  })

  test('sizes in binary units', () => {
    assert.deepEqual(['1mb', '512kb', '100', '2MB'].map(parseSize), [1_048_576, 524_288, 100, 2_097_152])
    assert.throws(() => parseSize('big'))
  })
})

describe('configuration', () => {
  test('defaults match the public contract', () => {
    const config = loadConfig({}, {})
    assert.equal(config.port, 8080)
    assert.equal(config.host, '127.0.0.1')
    assert.match(config.dataDir, /herald-data$/)
    assert.equal(config.publicUrl, 'http://127.0.0.1:8080')
    assert.equal(config.heartbeatMs, 15_000)
    assert.equal(config.retryScheduleMs.length, 8)
    assert.equal(config.allowPrivateTargets, false)
    assert.equal(config.bodyLimitBytes, 1_048_576)
    assert.equal(config.apiKey, undefined)
    assert.equal(config.idempotencyTtlMs, 86_400_000)
    assert.equal(config.headersTimeoutMs, 10_000)
    assert.equal(config.requestTimeoutMs, 30_000)
    assert.equal(config.maxConnectionsPerIp, 1_000)
    assert.equal(config.streamStallTimeoutMs, 30_000)
    assert.equal(loadConfig({ 'max-connections-per-ip': 'none' }, {}).maxConnectionsPerIp, null)
  })

  test('a flag wins over the environment, which wins over the default', () => {
    const env = { HERALD_PORT: '9000', HERALD_HOST: '127.0.0.2', HERALD_API_KEY: 'k' }
    assert.equal(loadConfig({}, env).port, 9000)
    assert.equal(loadConfig({ port: '9100' }, env).port, 9100)
    assert.equal(loadConfig({}, env).publicUrl, 'http://127.0.0.2:9000')
    assert.equal(
      loadConfig({}, { HERALD_PUBLIC_URL: 'https://events.example/' }).publicUrl,
      'https://events.example',
    )
    assert.equal(loadConfig({}, { HERALD_ALLOW_PRIVATE_TARGETS: 'true' }).allowPrivateTargets, true)
    assert.deepEqual(
      loadConfig({ 'retention-max-age': 'none', 'retention-max-events': '500' }, {}).retention,
      {
        maxAgeMs: null,
        maxEvents: 500,
      },
    )
  })

  test('invalid values are ConfigErrors that name the option', () => {
    for (const [flags, pattern] of [
      [{ port: '70000' }, /--port/],
      [{ heartbeat: 'often' }, /--heartbeat/],
      [{ 'retry-schedule': '1s,x' }, /--retry-schedule/],
      [{ 'idempotency-ttl': '1h' }, /at least 24h/],
      [{ 'sqlite-sync': 'off' }, /--sqlite-sync/],
      [{ 'public-url': 'ftp://x' }, /--public-url/],
      [{ 'retention-max-age': '99999999999999d' }, /--retention-max-age: .*36500d/],
      [{ 'retry-schedule': '0s,5s,40000d' }, /--retry-schedule: .*36500d/],
      [{ 'idempotency-ttl': '36501d' }, /--idempotency-ttl: .*36500d/],
      [{ heartbeat: '30d' }, /--heartbeat: must be at most/],
      [{ 'delivery-timeout': '25d' }, /--delivery-timeout: must be at most/],
      [{ 'headers-timeout': '40s' }, /--headers-timeout/],
      [{ 'request-timeout': '0s' }, /--request-timeout/],
      [{ 'max-connections-per-ip': 'many' }, /--max-connections-per-ip/],
    ] as const) {
      assert.throws(
        () => loadConfig(flags, {}),
        (error: Error) => error instanceof ConfigError && pattern.test(error.message),
      )
    }
  })

  test('without an API key only loopback addresses may be bound', () => {
    assert.doesNotThrow(() => assertSafeBinding(loadConfig({ host: '127.0.0.1' }, {})))
    assert.doesNotThrow(() => assertSafeBinding(loadConfig({ host: '::1' }, {})))
    assert.doesNotThrow(() => assertSafeBinding(loadConfig({ host: 'localhost' }, {})))
    assert.throws(() => assertSafeBinding(loadConfig({ host: '0.0.0.0' }, {})), ConfigError)
    assert.throws(() => assertSafeBinding(loadConfig({ host: '::' }, {})), ConfigError)
    assert.doesNotThrow(() => assertSafeBinding(loadConfig({ host: '0.0.0.0' }, { HERALD_API_KEY: 'k' })))
  })
})

describe('topics', () => {
  test('valid names', () => {
    for (const name of ['orders', 'a', 'Shop.EU/orders~v2', 'x/y/z', '0-9_a'])
      assert.equal(validateTopic(name), name)
  })
  test('invalid names are coded 400s', () => {
    for (const name of ['', '/a', 'a/', 'a//b', '.hidden', 'a b', 'é', 'a/events', 'x'.repeat(201)]) {
      assert.throws(
        () => validateTopic(name),
        (error: unknown) => error instanceof HeraldError && error.status === 400,
        name,
      )
    }
    assert.equal(validateTopic('x'.repeat(200)).length, 200)
  })
})

describe('events', () => {
  test('ULIDs are 26 Crockford characters that sort by time', () => {
    const a = ulid(1_700_000_000_000)
    const b = ulid(1_700_000_000_001)
    assert.match(a, /^[0-9A-HJKMNP-TV-Z]{26}$/)
    assert.ok(a < b)
    const decoded = [...a.slice(0, 10)].reduce(
      (n, c) => n * 32 + '0123456789ABCDEFGHJKMNPQRSTVWXYZ'.indexOf(c),
      0,
    )
    assert.equal(decoded, 1_700_000_000_000, 'the first 10 characters encode the milliseconds')
    assert.notEqual(ulid(5), ulid(5), 'random part differs')
  })

  test('prepareEvent fills id, source and time, and withPosition appends topic and seq', () => {
    const now = new Date('2026-11-22T12:00:00.000Z')
    const prepared = prepareEvent('orders', { type: 'order.created', data: { a: 1 } }, now)
    assert.equal(prepared.clientId, false)
    const event = JSON.parse(withPosition(prepared.body, 'orders', 42))
    assert.deepEqual(event, {
      specversion: '1.0',
      id: prepared.id,
      source: '/v1/topics/orders',
      type: 'order.created',
      time: '2026-11-22T12:00:00.000Z',
      datacontenttype: 'application/json',
      data: { a: 1 },
      topic: 'orders',
      seq: 42,
    })
    assert.deepEqual(Object.keys(event).slice(-2), ['topic', 'seq'])
  })

  test('prepareEvents writes the same JSON as JSON.stringify of the CloudEvent, attribute order included', () => {
    const now = new Date('2026-11-22T12:00:00.000Z')
    const inputs: EventInput[] = [
      {
        type: 'a\u00e9',
        id: '\ud83d\ude00',
        source: 's"\\x',
        subject: 'line\u2028separator',
        time: '2020-01-01T00:00:00Z',
        datacontenttype: 'text/plain',
        dataschema: 'https://example.com/s',
        data: 'lone \ud800',
      },
      { type: 't', data: null },
      { type: 't', id: 'x', data: [1, { a: 'b' }], dataschema: 'd' },
      { type: 't', data_base64: 'AAAA' },
      { type: 't', data: { toJSON: 'kept', nested: { deep: [true, false, 1.5e300] } } },
      { type: 't', extensions: { '123': 1, ab: 'x', z: true }, data: 1 },
      { type: 't', data: { when: new Date(0), gone: undefined } },
      { type: 't' },
    ]
    const prepared = prepareEvents('to"pic', inputs, now)
    inputs.forEach((input, index) => {
      const event: Record<string, unknown> = {
        specversion: '1.0',
        id: prepared[index]!.id,
        source: input.source ?? '/v1/topics/to"pic',
        type: input.type,
        time: input.time ?? now.toISOString(),
      }
      if (input.subject !== undefined) event['subject'] = input.subject
      if (input.datacontenttype !== undefined) event['datacontenttype'] = input.datacontenttype
      else if (input.data !== undefined) event['datacontenttype'] = 'application/json'
      if (input.dataschema !== undefined) event['dataschema'] = input.dataschema
      Object.assign(event, input.extensions)
      if (input.data !== undefined) event['data'] = input.data
      if (input.data_base64 !== undefined) event['data_base64'] = input.data_base64
      assert.equal(prepared[index]!.body, JSON.stringify(event), `input ${index}`)
    })
    assert.equal(prepared[1]!.id.slice(0, 10), prepared[7]!.id.slice(0, 10), "one request's milliseconds")
    assert.notEqual(prepared[1]!.id, prepared[7]!.id)
  })

  test('data and data_base64 are exclusive; extensions only in structured mode', () => {
    assert.throws(() => parseEventObject({ type: 't', data: 1, data_base64: 'AA==' }, false), /not both/)
    assert.throws(() => parseEventObject({ type: 't', ext: 'x' }, false), /Unknown field/)
    assert.deepEqual(parseEventObject({ specversion: '1.0', type: 't', ext: 'x' }, true).extensions, {
      ext: 'x',
    })
    assert.throws(
      () => parseEventObject({ specversion: '1.0', type: 't', Bad_Name: 'x' }, true),
      /attribute name/,
    )
    assert.throws(
      () => parseEventObject({ specversion: '1.0', type: 't', ext: { o: 1 } }, true),
      /string, number or boolean/,
    )
    assert.throws(() => parseEventObject({ type: 't' }, true), /needs "specversion"/)
  })

  test('binary mode refuses data attributes in headers and bad percent-encoding', () => {
    assert.throws(
      () => parseBinaryEvent({ 'ce-type': 't', 'ce-data': 'x' }, undefined, undefined),
      /not a binary-mode header/,
    )
    assert.throws(() => parseBinaryEvent({ 'ce-type': '%E0%A4%A' }, undefined, undefined), /percent-encoded/)
    const json = parseBinaryEvent({ 'ce-type': 't' }, Buffer.from('{"a":1}'), 'application/vnd.x+json')
    assert.deepEqual(json.data, { a: 1 })
    assert.equal(json.datacontenttype, 'application/vnd.x+json')
  })
})
