import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { matchesEventType } from '../../src/core/event-pattern.ts'
import { until } from '../helpers.ts'
import {
  type Answer,
  anyTopic,
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
 * What configures Herald under fuzz: topic retention and its durations (PUT /v1/topics/{topic}),
 * webhook event-type patterns (POST and PATCH /v1/hooks), and the WebSub hub's form (POST /websub).
 * A setting is taken as sent or refused with a 4xx that leaves every setting as it was.
 */

const FILE = 'test/fuzz/settings.test.ts'
const DAY_MS = 86_400_000
const MAX_DURATION_MS = 36_500 * DAY_MS
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS, '': 1000 }

function jsonPut(port: number, target: string, body: string): Promise<Answer> {
  return send(port, { method: 'PUT', target, headers: [['Content-Type', 'application/json']], body })
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url)
  assert.equal(response.status, 200, `GET ${url}: ${response.status}`)
  return response.json()
}

// ---- retention -----------------------------------------------------------------------------------

/** A duration built from its parts, so that its value is known: `{text, ms}`. */
const builtDuration = fc
  .record({
    number: fc.oneof(
      fc.integer({ min: 0, max: 100_000 }).map(String),
      fc
        .tuple(fc.nat(1000), fc.stringMatching(/^[0-9]{1,4}$/))
        .map(([whole, fraction]) => `${whole}.${fraction}`),
      fc.constantFrom('36500', '876000', '3153600000', '3153600000000', '999', '1000', '0'),
    ),
    unit: fc.constantFrom('ms', 's', 'm', 'h', 'd', ''),
  })
  .map(({ number, unit }) => ({ text: `${number}${unit}`, ms: Math.round(Number(number) * UNIT_MS[unit]!) }))

const durationText = fc.oneof(
  { arbitrary: builtDuration.map(({ text }) => text), weight: 4 },
  {
    arbitrary: fc.constantFrom(
      ' 7d ',
      '7 d',
      '7D',
      '-1s',
      '+1s',
      '.5s',
      '5.s',
      '1e3s',
      '1_000s',
      '\u0661s',
      'Infinity',
      'NaN',
      '0x10s',
      '9'.repeat(40),
      '1'.repeat(32),
      '',
      'none',
      '7d\u0000',
      '\u00a07d',
    ),
    weight: 2,
  },
  { arbitrary: hostileString, weight: 1 },
)

const retentionCase = fc.record({
  topic: fc.constantFrom('r1', 'r2/x', 'herald.system', 'r1'),
  maxAge: maybe(
    fc.oneof(
      { arbitrary: durationText.map((text) => JSON.stringify(text)), weight: 5 },
      { arbitrary: fc.constantFrom('null', '7', '[]', '{}', 'true'), weight: 1 },
      { arbitrary: jsonText, weight: 1 },
    ),
    70,
  ),
  maxEvents: maybe(
    fc.oneof(
      { arbitrary: fc.integer({ min: -2, max: 1_000_000 }).map(String), weight: 3 },
      { arbitrary: numberText, weight: 2 },
      { arbitrary: fc.constantFrom('null', '"5"', '5.0', '5.5', '9007199254740992', '[]'), weight: 1 },
      { arbitrary: jsonText, weight: 1 },
    ),
    50,
  ),
  extra: maybe(fc.constantFrom('"max_size":1', '"__proto__":{"max_events":1}', '"MAX_AGE":"1s"'), 10),
  shape: fc.constantFrom(
    'object',
    'object',
    'object',
    'object',
    'retention-not-object',
    'body-not-object',
    'empty',
  ),
  hostileRetention: jsonText,
})

function retentionBody(c: RetentionCase): string {
  switch (c.shape) {
    case 'retention-not-object':
      return `{"retention":${c.hostileRetention}}`
    case 'body-not-object':
      return c.hostileRetention
    case 'empty':
      return '{}'
  }
  const fields = [
    ...(c.maxAge === undefined ? [] : [`"max_age":${c.maxAge}`]),
    ...(c.maxEvents === undefined ? [] : [`"max_events":${c.maxEvents}`]),
    ...(c.extra === undefined ? [] : [c.extra]),
  ]
  return `{"retention":{${fields.join(',')}}}`
}

type RetentionCase = typeof retentionCase extends fc.Arbitrary<infer T> ? T : never

// ---- event-type patterns -------------------------------------------------------------------------

const patternText = fc.oneof(
  {
    arbitrary: fc
      .array(fc.constantFrom('order', '*', 'a', 'b', 'created', '*', 'x-y_z'), { minLength: 1, maxLength: 8 })
      .map((segments) => segments.join('.')),
    weight: 5,
  },
  {
    arbitrary: fc.constantFrom(
      Array.from({ length: 60 }, () => '*').join('.'),
      `${Array.from({ length: 40 }, () => '*').join('.')}.z`,
      'a'.repeat(200),
      'a'.repeat(201),
      '',
      '.',
      'a..b',
      '.a',
      'a.',
      '*a',
      'a*',
      '**',
      'a.**',
      'a b',
      'a\tb',
      'a\u0000',
      'a\u00a0b',
      '\u2028',
      'ünï.*',
    ),
    weight: 2,
  },
  { arbitrary: hostileString, weight: 1 },
)

/** The documented rules of a pattern: 1–200 characters, no spaces or controls, whole `*` segments. */
function isPattern(text: string): boolean {
  return (
    text.length >= 1 &&
    text.length <= 200 &&
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
    !/[\u0000-\u001f\u007f\s]/.test(text) &&
    text.split('.').every((segment) => segment !== '' && (segment === '*' || !segment.includes('*')))
  )
}

/** Event types to publish against the stored patterns: long ones included (the former regex froze). */
const typeText = fc.oneof(
  fc
    .array(fc.constantFrom('order', 'a', 'b', 'created', 'z', 's'), { minLength: 1, maxLength: 60 })
    .map((s) => s.join('.')),
  fc.constantFrom(Array.from({ length: 50 }, (_, i) => `s${i}`).join('.'), 'a..b', '.', 'a.'),
)

const hookCase = fc.record({
  patch: fc.boolean(),
  event: fc.oneof(
    { arbitrary: patternText.map((text) => JSON.stringify(text)), weight: 8 },
    { arbitrary: fc.constantFrom('null', '1', '[]', '{}', '["a"]'), weight: 1 },
    { arbitrary: jsonText, weight: 1 },
  ),
  topic: maybe(anyTopic, 50),
  /** Now and then another field is hostile too. */
  other: maybe(
    fc.oneof(
      numberText.map((n) => `"max_in_flight":${n}`),
      numberText.map((n) => `"rate_limit":${n}`),
      hostileString.map((s) => `"description":${JSON.stringify(s)}`),
      jsonText.map((value) => `"ordered":${value}`),
      hostileString.map((s) => `"secret":${JSON.stringify(s)}`),
      hostileString.map((s) => `${JSON.stringify(s)}:1`),
      // A content filter (src/core/filter.ts): a well-formed one is stored, anything else is a 400.
      fc
        .oneof(
          fc.constantFrom('{"exact":{"type":"a"}}', '[{"suffix":{"data.x":"1"}}]', 'null', '{}'),
          jsonText,
        )
        .map((value) => `"filter":${value}`),
    ),
    20,
  ),
  type: typeText,
})

// ---- the WebSub form -----------------------------------------------------------------------------

interface Receiver {
  server: Server
  port: number
}

/** Callbacks and external topics: `/echo…` confirms verifications, `/topic…` serves content. */
async function startReceiver(): Promise<Receiver> {
  const server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://receiver')
    if (url.pathname.startsWith('/echo') && request.method === 'GET') {
      response.end(url.searchParams.get('hub.challenge') ?? '')
    } else if (url.pathname.startsWith('/topic')) {
      response.setHeader('content-type', 'text/plain')
      response.end('content')
    } else {
      request.resume()
      response.statusCode = 404
      response.end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

function formCase(herald: () => string, receiver: () => number) {
  const callback = fc.oneof(
    {
      arbitrary: fc
        .tuple(fc.constantFrom('/echo', '/echo', '/deny', '/topic'), maybe(hostileString, 50))
        .map(
          ([path, query]) =>
            `http://127.0.0.1:${receiver()}${path}${query === undefined ? '' : `?q=${encodeURIComponent(query.replace(/[\ud800-\udfff]/g, ''))}`}`,
        ),
      weight: 5,
    },
    {
      arbitrary: fc.constantFrom(
        'http://127.0.0.1:9/closed',
        'javascript:alert(1)',
        'ftp://127.0.0.1/',
        'http://user:pass@127.0.0.1/',
        'http://[::1]:9/',
        'http://0.0.0.0:9/',
        'http://127.0.0.2:9/latest',
        `http://127.0.0.1/${'a'.repeat(2049)}`,
        'http://',
        '//127.0.0.1/x',
        '',
      ),
      weight: 2,
    },
    { arbitrary: hostileString, weight: 1 },
  )
  const topicUrl = fc.oneof(
    { arbitrary: anyTopic.map((topic) => `${herald()}/v1/topics/${percentEncode(topic, false)}`), weight: 4 },
    {
      arbitrary: hostileString.map(
        (path) => `http://127.0.0.1:${receiver()}/topic/${percentEncode(path, false)}`,
      ),
      weight: 2,
    },
    {
      arbitrary: fc
        .constantFrom(
          () => `${herald()}/v1/topics/herald.system`,
          () => `${herald()}/v1/topics/%zz`,
          () => `${herald()}/v1/topics/a%2Fb`,
          () => `${herald()}/v1/topics/`,
          () => 'mailto:x@example.com',
          () => 'http://127.0.0.3:9/',
        )
        .map((make) => make()),
      weight: 1,
    },
    { arbitrary: hostileString, weight: 1 },
  )
  const field = (name: string, value: fc.Arbitrary<string>, percent: number) =>
    maybe(
      value.map((v): [string, string] => [name, v]),
      percent,
    )
  return fc.record({
    fields: fc
      .tuple(
        field(
          'hub.mode',
          fc.oneof(
            { arbitrary: fc.constantFrom('subscribe', 'subscribe', 'unsubscribe', 'publish'), weight: 6 },
            { arbitrary: fc.constantFrom('denied', 'SUBSCRIBE', 'subscribe ', ''), weight: 1 },
            { arbitrary: hostileString, weight: 1 },
          ),
          95,
        ),
        field('hub.topic', topicUrl, 90),
        field('hub.callback', callback, 85),
        field(
          'hub.lease_seconds',
          fc.oneof(
            fc.integer({ min: 0, max: 10_000_000 }).map(String),
            fc.constantFrom('99999999999999999999999999', '-1', '1.5', '1e3', '', ' 60', '\u0661'),
            hostileString,
          ),
          40,
        ),
        field(
          'hub.secret',
          fc.oneof(
            fc.integer({ min: 0, max: 250 }).map((n) => 's'.repeat(n)),
            fc.integer({ min: 95, max: 105 }).map((n) => '\u00e9'.repeat(n)),
            hostileString,
          ),
          30,
        ),
        field('hub.url', topicUrl, 15),
        maybe(
          fc.tuple(
            fc.oneof(
              hostileString.map((name) => `hub.${name}`),
              fc.constantFrom('hub.challenge', 'hub.reason', 'hub.Mode', 'HUB.MODE', 'hub.mode ', 'hub.'),
            ),
            hostileString,
          ),
          20,
        ),
        field('hub.mode', fc.constantFrom('publish', 'subscribe'), 5),
      )
      .map((fields) => fields.filter((pair): pair is [string, string] => pair !== undefined)),
    encoding: fc.constantFrom('form', 'form', 'form', 'raw'),
    junk: maybe(
      fc.oneof(
        fc.constantFrom('&&&', '=&=', '%zz', '%', 'hub.mode', '+', '&hub.mode=%ff', '\u0000'),
        fc.uint8Array({ maxLength: 30 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
        fc.constant(`&hub.other=${'x'.repeat(1024 * 1024)}`), // over the body limit: a 413
      ),
      15,
    ),
    contentType: fc.oneof(
      { arbitrary: fc.constant('application/x-www-form-urlencoded'), weight: 8 },
      {
        arbitrary: fc.constantFrom(
          'application/x-www-form-urlencoded; charset=utf-8',
          'APPLICATION/X-WWW-FORM-URLENCODED',
          'text/plain',
          'application/json',
          'multipart/form-data; boundary=x',
          '',
        ),
        weight: 2,
      },
    ),
  })
}

/** A form body: URL-encoded as a browser does, or each field written raw, plus junk. */
function formBody(fields: Array<[string, string]>, encoding: string, junk: string | undefined): Buffer {
  const text =
    encoding === 'form'
      ? fields.map(([name, value]) => `${name}=${percentEncode(value, true)}`).join('&')
      : fields.map(([name, value]) => `${name}=${value}`).join('&')
  return Buffer.from(junk === undefined ? text : `${text}${junk}`, 'utf8')
}

// ---- the properties ------------------------------------------------------------------------------

describe('fuzz: retention, event patterns and the WebSub form', () => {
  let server: FuzzServer
  let receiver: Receiver

  before(async () => {
    server = await startFuzzServer({ allowPrivateTargets: true })
    receiver = await startReceiver()
  })
  after(async () => {
    await server.close()
    await new Promise((resolve) => receiver.server.close(resolve))
  })

  test('retention: a duration and a count are taken within their bounds, or refused changing nothing', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(retentionCase, async (c) => {
        const body = retentionBody(c)
        const before = await topicsSnapshot(server.url)
        const answer = await jsonPut(server.port, `/v1/topics/${c.topic}`, body)
        const problem = assertAnswer(answer, `PUT ${c.topic}`)
        outcomes.add(`${answer.status}${problem && 'field' in problem ? ` ${problem.field}` : ''}`)
        if (problem) {
          assert.deepEqual(
            await topicsSnapshot(server.url),
            before,
            `a refused PUT (${answer.status}) changed a topic`,
          )
          return
        }
        assert.equal(answer.status, 200)
        const info = JSON.parse(answer.text) as {
          topic: string
          retention: { max_age_ms: number | null; max_events: number | null }
        }
        assert.equal(info.topic, c.topic)
        assert.deepEqual(
          await getJson(`${server.url}/v1/topics/${c.topic}`),
          info,
          'the answer is not what was stored',
        )
        const { max_age_ms: maxAge, max_events: maxEvents } = info.retention
        if (maxAge !== null) {
          assert.ok(
            Number.isSafeInteger(maxAge) && maxAge >= 1000 && maxAge <= MAX_DURATION_MS,
            `max_age_ms ${maxAge}`,
          )
        }
        if (maxEvents !== null)
          assert.ok(Number.isSafeInteger(maxEvents) && maxEvents >= 1, `max_events ${maxEvents}`)
        // A duration spelt plainly (digits, a unit) is read as it says.
        const text =
          c.maxAge === undefined || c.shape !== 'object' ? undefined : (JSON.parse(c.maxAge) as unknown)
        if (typeof text === 'string' && /^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$/.test(text)) {
          const unit = /[a-z]+$/.exec(text)?.[0] ?? ''
          assert.equal(maxAge, Math.round(Number(text.slice(0, text.length - unit.length)) * UNIT_MS[unit]!))
        }
      }),
      { runs: 250, seconds: 4, outcomes, server },
    )
    await assertAlive(server, 'after the retention fuzz')
  })

  test('patterns: the documented rules, checked against a reference matcher', async (t) => {
    // The matcher against the plainest reading of the rules (a regular expression, fine for short
    // input): `*` is one or more whole segments, other segments match themselves.
    const reference = (pattern: string, type: string) =>
      new RegExp(
        `^${pattern
          .split('.')
          .map((s) => (s === '*' ? '[^.]+(?:\\.[^.]+)*' : s))
          .join('\\.')}$`,
      ).test(type)
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(
        fc.array(fc.constantFrom('a', 'b', '*'), { minLength: 1, maxLength: 6 }).map((s) => s.join('.')),
        fc.array(fc.constantFrom('a', 'b', 'c', ''), { minLength: 1, maxLength: 8 }).map((s) => s.join('.')),
        async (pattern, type) => {
          assert.equal(matchesEventType(pattern, type), reference(pattern, type), `${pattern} ~ ${type}`)
        },
      ),
      { runs: 3000, seconds: 1 },
    )
  })

  test('hook patterns: a valid pattern is stored as sent and matched in time; any other is a 400 changing nothing', async (t) => {
    const outcomes = new Outcomes()
    const base = (await (
      await fetch(`${server.url}/v1/hooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ target_url: 'http://127.0.0.1:9/base', event: 'base.*' }),
      })
    ).json()) as { id: string }
    // What clients set on hooks (delivery outcomes, such as failing_since, change on their own).
    const hooks = async () =>
      (
        (await getJson(`${server.url}/v1/hooks?limit=1000`)) as { hooks: Array<Record<string, unknown>> }
      ).hooks.map(
        ({ failing_since: _failing, disabled_reason: _reason, state: _state, ...settings }) => settings,
      )
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(hookCase, async (c) => {
        const fields = [`"event":${c.event}`]
        if (c.topic !== undefined) fields.push(`"topic":${JSON.stringify(c.topic)}`)
        if (c.other !== undefined) fields.push(c.other)
        if (!c.patch) fields.push('"target_url":"http://127.0.0.1:9/h"')
        const body = `{${fields.join(',')}}`
        const before = await hooks()
        const answer = await send(server.port, {
          method: c.patch ? 'PATCH' : 'POST',
          target: c.patch ? `/v1/hooks/${base.id}` : '/v1/hooks',
          headers: [['Content-Type', 'application/json']],
          body,
        })
        const problem = assertAnswer(answer, `${c.patch ? 'PATCH' : 'POST'} /v1/hooks ${body.slice(0, 200)}`)
        outcomes.add(`${c.patch ? 'PATCH' : 'POST'} ${answer.status}`)
        const sent = JSON.parse(c.event) as unknown
        if (problem) {
          assert.deepEqual(await hooks(), before, 'a refused hook request changed the hooks')
          if (typeof sent === 'string' && !isPattern(sent)) assert.equal(answer.status, 400)
          return
        }
        // null clears the filter (allowed while the hook keeps a topic).
        assert.ok(
          sent === null || (typeof sent === 'string' && isPattern(sent)),
          `an invalid pattern was taken: ${c.event}`,
        )
        const hook = JSON.parse(answer.text) as { id: string; event: string | null }
        assert.equal(hook.event, sent)
        // The stored pattern is matched against any type without holding the server.
        const published = await send(server.port, {
          method: 'POST',
          target: `/v1/topics/${c.topic !== undefined && /^[a-z0-9]+$/.test(c.topic) ? c.topic : 'hk'}/events`,
          headers: [['Content-Type', 'application/json']],
          body: JSON.stringify({ type: c.type }),
        })
        assertAnswer(published, 'publish against the patterns')
        if (!c.patch) {
          const deleted = await fetch(`${server.url}/v1/hooks/${hook.id}`, { method: 'DELETE' })
          assert.equal(deleted.status, 204)
        }
      }),
      { runs: 250, seconds: 4, outcomes, server },
    )
    await assertAlive(server, 'after the pattern fuzz')
  })

  test('the WebSub form: 202 then a verification, or a plain-text 4xx that records nothing', async (t) => {
    const outcomes = new Outcomes()
    // The hub's records as requests make them (delivery outcomes, such as failing_since, change on
    // their own, and a lease runs out by itself).
    const state = async () => ({
      subscriptions: (
        (await getJson(`${server.url}/v1/websub/subscriptions?limit=1000`)) as {
          subscriptions: Array<Record<string, unknown>>
        }
      ).subscriptions.map(({ failing_since: _failing, state: _state, ...rest }) => rest),
      verifications: (
        (await getJson(`${server.url}/v1/websub/verifications?limit=1000`)) as {
          verifications: Array<{ state: string }>
        }
      ).verifications,
    })
    // A subscribe or unsubscribe is verified after the 202: its record appears, then completes.
    const verified = (count: number) =>
      until('the verification to complete', async () => {
        const { verifications } = await state()
        return verifications.length === count && verifications.every((v) => v.state !== 'pending')
          ? true
          : undefined
      })
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(
        formCase(
          () => server.url,
          () => receiver.port,
        ),
        async (c) => {
          const before = await state()
          const answer = await send(server.port, {
            method: 'POST',
            target: '/websub',
            headers: c.contentType === '' ? [] : [['Content-Type', c.contentType]],
            body: formBody(c.fields, c.encoding, c.junk),
          })
          const type = answer.headers['content-type'] ?? ''
          if (type.startsWith('application/problem+json')) assertAnswer(answer, 'POST /websub')
          else {
            // The hub answers in plain text, as WebSub asks (documented).
            assert.ok(answer.status < 500, `POST /websub: ${answer.status} ${answer.text}`)
            assert.equal(type, 'text/plain; charset=utf-8', `POST /websub: ${answer.status} in ${type}`)
            assert.ok(answer.text.trim() !== '', 'an empty answer')
          }
          outcomes.add(answer.status)
          if (answer.status >= 400) {
            assert.deepEqual(
              await state(),
              before,
              `a refused hub request (${answer.status}) changed the hub's records`,
            )
          } else {
            assert.equal(answer.status, 202, `POST /websub: ${answer.status}`)
            const mode = new URLSearchParams(formBody(c.fields, c.encoding, c.junk).toString('utf8')).get(
              'hub.mode',
            )
            if (mode === 'subscribe' || mode === 'unsubscribe')
              await verified(before.verifications.length + 1)
          }
          await assertAlive(server, 'after a hub request')
        },
      ),
      { runs: 200, seconds: 5, outcomes, server },
    )
  })
})
