import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { publish, readAll } from '../helpers.ts'
import {
  type Answer,
  anyTopic,
  assertAlive,
  assertAnswer,
  checkProperty,
  type FuzzServer,
  hostileString,
  hostileTopic,
  maybe,
  Outcomes,
  percentEncode,
  send,
  startFuzzServer,
  topicsSnapshot,
  validTopic,
} from './fuzz.ts'

/**
 * Cursors, Last-Event-ID and topic names under fuzz: one-topic streams and pages, multi-topic streams
 * with their opaque cursors, and topic names in the URL path, raw and percent-encoded. A valid cursor
 * resumes exactly after its position; anything else is a problem+json 4xx; nothing read changes the
 * store, and nothing refused either.
 */

const FILE = 'test/fuzz/streams.test.ts'
/** Topics with events before the fuzz starts, and how many. */
const SEEDED: Record<string, number> = { one: 5, m1: 3, m2: 2 }
const MAX_SEQ = Number.MAX_SAFE_INTEGER

// ---- parsing what a stream sent ------------------------------------------------------------------

interface Frame {
  id: string | undefined
  event: { topic: string; seq: number }
}

function framesOf(answer: Answer | Buffer, sse: boolean): Frame[] {
  const text = (Buffer.isBuffer(answer) ? answer : answer.body).toString('utf8')
  const frames: Frame[] = []
  if (sse) {
    for (const block of text.split('\n\n')) {
      const lines = block.split('\n')
      const data = lines.find((line) => line.startsWith('data: '))
      if (data === undefined) continue
      // A gap signal (a cursor past the head, or below what retention kept) is not an event.
      if (lines.includes('event: gap') && isGap(JSON.parse(data.slice(6)))) continue
      const id = lines.find((line) => line.startsWith('id: '))?.slice(4)
      frames.push({ id, event: JSON.parse(data.slice(6)) as Frame['event'] })
    }
  } else {
    // NDJSON: complete lines only (the last one may still be arriving); empty lines are keep-alives.
    const lines = text.split('\n').slice(0, -1)
    for (const line of lines) {
      if (line === '') continue
      const parsed = JSON.parse(line) as Record<string, unknown>
      if ('gap' in parsed && isGap(parsed['gap'])) continue
      frames.push({ id: undefined, event: parsed as Frame['event'] })
    }
  }
  return frames
}

/** Whether a value is a gap signal as docs/api.md ("Gaps") spells it. */
function isGap(value: unknown): boolean {
  const gap = value as Record<string, unknown>
  return (
    typeof gap === 'object' &&
    gap !== null &&
    typeof gap['after'] === 'number' &&
    (gap['reason'] === 'pruned' || gap['reason'] === 'ahead') &&
    typeof gap[gap['reason'] === 'pruned' ? 'first_seq' : 'head_seq'] === 'number'
  )
}

/** A cursor that is a seq, as the contract spells it: ASCII digits, at most MAX_SEQ. */
function asSeq(text: string): number | undefined {
  return /^[0-9]+$/.test(text) && Number(text) <= MAX_SEQ ? Number(text) : undefined
}

/** A 431 is the answer to a URL or header block over the parser's limit (16 KiB), and only to that. */
function tooLarge(target: string, headers: Array<[string, string]>): void {
  const size =
    Buffer.byteLength(target) +
    headers.reduce((sum, [name, value]) => sum + name.length + Buffer.byteLength(value), 0)
  assert.ok(size > 8 * 1024, `a 431 for a request of ${size} bytes`)
}

/** HTTP trims spaces and tabs around a header value (RFC 9110 §5.5). */
function trimOws(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '')
}

// ---- generators ----------------------------------------------------------------------------------

/** Cursor text: small valid seqs, the edges of the range, near misses, and anything. */
const cursorText = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 8 }).map(String), weight: 5 },
  {
    arbitrary: fc.constantFrom(
      '007',
      '9007199254740991',
      '9007199254740992',
      '99999999999999999999999',
      '-1',
      '1.0',
      '1e3',
      '0x10',
      '+1',
      '\u0661',
      'Infinity',
      'NaN',
      '1 2',
      '',
      '0'.repeat(5000),
    ),
    weight: 3,
  },
  { arbitrary: hostileString, weight: 2 },
)

/** A header value that HTTP can carry, or now and then one it cannot (the parser refuses those). */
const headerText = cursorText.map((text) => text.replace(/[\r\n]/g, ''))

interface ReadCase {
  accept: string | undefined
  named: boolean
  header: string | undefined
  lastEventId: string | undefined
  after: string | undefined
  limit: string | undefined
  /** Query text appended as it is (duplicates, arrays, bad escapes): only the general checks then. */
  extra: string | undefined
  /** A long-poll wait, as `wait=` or `Prefer: wait=`: never one that would hold the request long. */
  wait: { text: string; prefer: boolean } | undefined
}

const readCase: fc.Arbitrary<ReadCase> = fc.record({
  accept: maybe(
    fc.constantFrom(
      'text/event-stream',
      'application/x-ndjson',
      'application/json',
      '*/*',
      'text/event-stream;q=0',
      'text/html, application/x-ndjson',
    ),
    85,
  ),
  named: fc.boolean(),
  header: maybe(headerText, 35),
  lastEventId: maybe(cursorText, 35),
  after: maybe(cursorText, 35),
  limit: maybe(fc.oneof(fc.integer({ min: -1, max: 1001 }).map(String), cursorText), 30),
  extra: maybe(
    fc.oneof(
      fc.constantFrom(
        '&after=1&after=2',
        '&last_event_id=1&last_event_id=2',
        '&limit=1&limit=2',
        '&after[]=1',
        '&__proto__=1',
        '&constructor[prototype]=1',
        '&after',
        '&&&',
        '&%zz=1',
        '&after=%zz',
        '&after=1%00',
        '&named=true&named=false',
      ),
      hostileString.map((text) => `&${percentEncode(text, false)}`),
    ),
    15,
  ),
  wait: maybe(
    fc.record({
      text: fc.oneof(
        fc.constantFrom('0', '0.01', '0.05', '61', '-1', '1e1', '0x1', ' 1', '60.5', '', 'Infinity'),
        hostileString,
      ),
      prefer: fc.boolean(),
    }),
    15,
  ),
})

/** Whether a wait would hold a request that has nothing to answer for long (those are not sent). */
function holdsLong(wait: { text: string; prefer: boolean }): boolean {
  const seconds = wait.prefer
    ? Number(/^\s*wait\s*=\s*"?(\d+)"?\s*(;.*)?$/i.exec(`wait=${wait.text}`)?.[1] ?? 0)
    : /^\d+(\.\d+)?$/.test(wait.text)
      ? Number(wait.text)
      : 0
  return seconds > 0.1
}

function query(params: Array<[string, string | undefined]>): string {
  const parts = params
    .filter((param): param is [string, string] => param[1] !== undefined)
    .map(([name, value]) => `${name}=${percentEncode(value, true)}`)
  return parts.length === 0 ? '' : `?${parts.join('&')}`
}

/** Control characters (but the tab) cannot be in a header value: the HTTP parser refuses them (400). */
function unsendable(value: string | undefined): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are the point
  return value !== undefined && /[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)
}

/** Where a one-topic request starts, by the documented precedence; undefined: a 400 is due. */
function expectedStart(c: ReadCase, stream: boolean, head: number): number | undefined | 'head' {
  if (unsendable(c.header)) return undefined
  if (!stream) return c.after === undefined || c.after === '' ? 0 : asSeq(c.after)
  const header = c.header === undefined ? undefined : trimOws(c.header)
  if (header !== undefined && header !== '') return asSeq(header)
  if (c.lastEventId !== undefined && c.lastEventId !== '') return asSeq(c.lastEventId)
  if (c.after !== undefined && c.after !== '') return asSeq(c.after)
  return head > 0 ? 'head' : 0
}

/** Multi-topic cursors: tokens built from hostile JSON as well as Herald's own shape. */
const seqJson = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 4 }).map(String), weight: 10 },
  {
    arbitrary: fc.constantFrom(
      '-1',
      '1.5',
      '1e400',
      '9007199254740992',
      '"1"',
      'null',
      '[]',
      '{}',
      'true',
      '-0',
    ),
    weight: 2,
  },
)
const cursorToken = fc.oneof(
  {
    arbitrary: fc
      .array(
        fc.tuple(
          fc.oneof(
            { arbitrary: fc.constantFrom('m1', 'm2', 'one', 'none'), weight: 4 },
            { arbitrary: fc.constantFrom('__proto__', 'constructor', ''), weight: 1 },
            { arbitrary: hostileTopic, weight: 1 },
          ),
          seqJson,
        ),
        { maxLength: 4 },
      )
      .map((entries) => `{${entries.map(([topic, seq]) => `${JSON.stringify(topic)}:${seq}`).join(',')}}`)
      .map((json) => Buffer.from(json).toString('base64url')),
    weight: 5,
  },
  {
    arbitrary: fc
      .oneof(fc.constantFrom('[]', 'null', '1', '"x"', '{', '{"m1":1'), hostileString)
      .map((text) => Buffer.from(text).toString('base64url')),
    weight: 1,
  },
  { arbitrary: hostileString, weight: 1 },
)

interface MultiCase {
  topics: string[]
  token: string | undefined
  inHeader: boolean
  after: string | undefined
  accept: string | undefined
}

const multiCase: fc.Arbitrary<MultiCase> = fc.record({
  topics: fc.oneof(
    { arbitrary: fc.array(fc.constantFrom('m1', 'm2', 'none', 'one'), { maxLength: 4 }), weight: 6 },
    { arbitrary: fc.array(anyTopic, { maxLength: 3 }), weight: 2 },
    {
      arbitrary: fc.integer({ min: 99, max: 102 }).map((n) => Array.from({ length: n }, (_, i) => `t${i}`)),
      weight: 1,
    },
  ),
  token: maybe(cursorToken, 75),
  inHeader: fc.boolean(),
  after: maybe(cursorText, 15),
  accept: maybe(
    fc.constantFrom('text/event-stream', 'application/x-ndjson', 'text/event-stream', 'application/json'),
    90,
  ),
})

/** The positions a multi-topic cursor names, decoded as the contract says; undefined when invalid. */
function decodeToken(token: string): Map<string, number> | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined
  const positions = new Map<string, number>()
  for (const [topic, seq] of Object.entries(parsed)) {
    if (!isTopicName(topic) || !Number.isSafeInteger(seq) || (seq as number) < 0) return undefined
    positions.set(topic, seq as number)
  }
  return positions
}

/** The documented grammar of topic names. */
function isTopicName(name: string): boolean {
  return (
    name.length >= 1 &&
    name.length <= 200 &&
    /^[A-Za-z0-9][A-Za-z0-9._~-]*(\/[A-Za-z0-9][A-Za-z0-9._~-]*)*$/.test(name) &&
    !name.split('/').includes('events')
  )
}

interface PathCase {
  method: string
  topic: string
  encoding: 'raw' | 'safe' | 'all' | 'double'
  suffix: string
}

const pathCase: fc.Arbitrary<PathCase> = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'GET', 'POST', 'DELETE', 'PATCH'),
  topic: fc.oneof(
    validTopic,
    hostileTopic,
    validTopic.map((name) => name.replaceAll('/', '//')),
  ),
  encoding: fc.constantFrom('raw', 'safe', 'all', 'double'),
  suffix: fc.constantFrom(
    '',
    '/events',
    '/events',
    '/events/1',
    '/events/0',
    '/events/99999999999999999999',
    '/events/x',
    '/',
    '/events/',
    '?x=1',
    '/events?after=1',
  ),
})

function encodePath(c: PathCase): string {
  switch (c.encoding) {
    case 'raw':
      return c.topic.replace(/[\r\n ]/g, '_') // what a request line can carry at all
    case 'safe':
      return percentEncode(c.topic, false)
    case 'all':
      return percentEncode(c.topic, true)
    case 'double':
      return percentEncode(percentEncode(c.topic, true), true)
  }
}

/** The list and read routes, with the query parameters each takes ({hook}: a hook's id). */
const LISTS: Array<[path: string, params: string[], accept?: string]> = [
  ['/v1/topics', ['after', 'limit']],
  ['/v1/topics/one/events', ['after', 'limit', 'filter']],
  ['/v1/topics/one/events', ['after', 'last_event_id', 'named', 'filter'], 'text/event-stream'],
  ['/v1/stream?topic=m1&topic=m2', ['last_event_id', 'topic', 'after', 'filter'], 'application/x-ndjson'],
  ['/v1/hooks', ['after', 'limit']],
  ['/v1/hooks/{hook}/deliveries', ['limit', 'before', 'delivery', 'event']],
  ['/v1/websub/subscriptions', ['after', 'limit', 'topic']],
  ['/v1/websub/verifications', ['limit', 'topic']],
]

/** A query string for one of those routes: its own parameters, repeated, and others, any value. */
const listCase = fc.record({
  route: fc.nat(LISTS.length - 1),
  params: fc.array(
    fc.tuple(
      fc.oneof(
        { arbitrary: fc.nat(3), weight: 6 }, // an index into the route's own parameters
        { arbitrary: fc.constantFrom('__proto__', 'constructor', 'access_token', 'x[]', ''), weight: 1 },
      ),
      fc.oneof(
        cursorText,
        fc.constantFrom('a', 'm1', 'hook_x', '2026-01-01T00:00:00Z'),
        // Filters (src/core/filter.ts), well-formed or not: a stream, a page, or a 400.
        fc.constantFrom(
          '{"exact":{"type":"a"}}',
          '[{"prefix":{"subject":""}},{"not":{"exact":{"data.a.b":"1"}}}]',
          '{"not":{}}',
          '{"sql":"true"}',
        ),
        fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
      ),
    ),
    { maxLength: 5 },
  ),
})

// ---- the properties ------------------------------------------------------------------------------

describe('fuzz: cursors, Last-Event-ID and topic names', () => {
  let server: FuzzServer
  let seeded: Record<string, unknown[]> = {}

  before(async () => {
    // Private targets allowed: the one hook the list-route property makes points at loopback.
    server = await startFuzzServer({ allowPrivateTargets: true })
    for (const [topic, count] of Object.entries(SEEDED)) {
      for (let i = 1; i <= count; i++) {
        assert.equal((await publish(server.url, topic, { type: `seed.${i}`, data: i })).status, 201)
      }
      seeded[topic] = await readAll(server.url, topic)
    }
  })
  after(async () => {
    for (const [topic, events] of Object.entries(seeded)) {
      const now = (await readAll(server.url, topic)).slice(0, events.length)
      assert.deepEqual(now, events, `the seeded topic ${topic} changed`)
    }
    seeded = {}
    await server.close()
  })

  test('one topic: a valid cursor resumes exactly after it (SSE, NDJSON, page); any other is a 400', async (t) => {
    const outcomes = new Outcomes()
    const head = SEEDED['one']!
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(readCase, async (c) => {
        const accept = c.accept ?? ''
        const sse = accept.includes('text/event-stream')
        const stream = sse || accept.includes('application/x-ndjson')
        const start = expectedStart(c, stream, head)
        const headers: Array<[string, string]> = []
        if (c.accept !== undefined) headers.push(['Accept', c.accept])
        if (c.header !== undefined) headers.push(['Last-Event-ID', c.header])
        const wait =
          c.wait === undefined || holdsLong(c.wait)
            ? undefined
            : { ...c.wait, text: c.wait.prefer ? c.wait.text.replace(/[\r\n]/g, '') : c.wait.text }
        if (wait?.prefer) headers.push(['Prefer', `wait=${wait.text}`])
        const base = `/v1/topics/one/events${query([
          ['last_event_id', c.lastEventId],
          ['after', c.after],
          ['limit', c.limit],
          ['named', c.named ? 'true' : undefined],
          ['wait', wait && !wait.prefer ? wait.text : undefined],
        ])}`
        const extra = c.extra === undefined ? '' : base.includes('?') ? c.extra : c.extra.replace(/^&/, '?')
        const target = base + extra
        const from = typeof start === 'number' ? start : head
        const answer = await send(server.port, {
          method: 'GET',
          target,
          headers,
          // Wait for the whole backlog when there is one; a stream at its head sends nothing.
          enough: (body) => from >= head || framesOf(body, sse).some((frame) => frame.event.seq === head),
          streamMs: from >= head ? 20 : 2000,
        })
        const problem = assertAnswer(answer, `GET ${target}`)
        outcomes.add(`${stream ? (sse ? 'sse' : 'ndjson') : 'page'} ${answer.status}`)
        if (answer.status === 431) return tooLarge(target, headers)
        if (c.extra !== undefined) return // no model of odd query strings: the general checks only
        // `wait=` is an instruction (0–60, else 400); `Prefer: wait=` a hint, never an error.
        const waitOk =
          wait === undefined ||
          wait.prefer ||
          wait.text === '' ||
          (/^\d+(\.\d+)?$/.test(wait.text) && Number(wait.text) <= 60)
        const limitValid = c.limit === undefined || c.limit === '' || (asSeq(c.limit) ?? 0) >= 1
        const limitOk = stream || (limitValid && Number(c.limit ?? 1) <= 1000 && waitOk)
        if (start === undefined || !limitOk || (wait?.prefer && unsendable(wait.text))) {
          assert.equal(
            answer.status,
            400,
            `an invalid cursor or limit was taken: ${answer.status} ${answer.text.slice(0, 200)}`,
          )
          return
        }
        assert.equal(problem, undefined, `a valid cursor was refused: ${answer.text.slice(0, 300)}`)
        assert.equal(answer.status, 200)
        const seqs = stream
          ? framesOf(answer, sse).map((frame) => {
              if (sse) assert.equal(frame.id, String(frame.event.seq), 'an SSE id is not the seq')
              return frame.event.seq
            })
          : (JSON.parse(answer.text) as { events: Array<{ seq: number }> }).events.map((event) => event.seq)
        const limit = stream || c.limit === undefined || c.limit === '' ? 1000 : Number(c.limit)
        const expected: number[] = []
        for (let seq = from + 1; seq <= Math.min(head, from + limit); seq++) expected.push(seq)
        assert.deepEqual(seqs, expected, `resumed after ${from}`)
      }),
      { runs: 250, seconds: 3, outcomes, server },
    )
    await assertAlive(server, 'after the one-topic reads')
  })

  test('several topics: a cursor Herald issued resumes each topic exactly; any other is a 400', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(multiCase, async (c) => {
        const accept = c.accept ?? ''
        const sse = accept.includes('text/event-stream')
        const stream = sse || accept.includes('application/x-ndjson')
        const headers: Array<[string, string]> = []
        if (c.accept !== undefined) headers.push(['Accept', c.accept])
        const token = c.token?.replace(/[\r\n]/g, '')
        if (token !== undefined && c.inHeader) headers.push(['Last-Event-ID', token])
        const params: Array<[string, string | undefined]> = c.topics.map((topic) => ['topic', topic])
        if (token !== undefined && !c.inHeader) params.push(['last_event_id', token])
        params.push(['after', c.after])
        const target = `/v1/stream${query(params)}`

        // The model: which cursor counts (the header, else last_event_id, else after), what it names.
        const topics = [...new Set(c.topics)]
        const fromHeader = token !== undefined && c.inHeader ? trimOws(token) : undefined
        const cursor = fromHeader
          ? fromHeader
          : token !== undefined && !c.inHeader && token !== ''
            ? token
            : undefined
        let positions: Map<string, number> | undefined = new Map()
        if (cursor !== undefined) {
          if (topics.length === 1) {
            // One topic: its cursor is a seq, as on /v1/topics/{topic}/events.
            const seq = asSeq(cursor)
            positions = seq === undefined ? undefined : new Map([[topics[0]!, seq]])
          } else positions = decodeToken(cursor)
        } else if (c.after !== undefined && c.after !== '') {
          const seq = topics.length === 1 ? asSeq(c.after) : undefined
          positions = seq === undefined ? undefined : new Map([[topics[0]!, seq]])
        }
        const valid =
          topics.length >= 1 &&
          topics.length <= 100 &&
          topics.every(isTopicName) &&
          stream &&
          positions !== undefined &&
          !(c.inHeader && unsendable(token))
        // What each topic owes: its events after the cursor's position; none without one (live only).
        const owed = new Map<string, number[]>()
        if (valid) {
          for (const topic of topics) {
            const head = SEEDED[topic] ?? 0
            const from = positions!.get(topic) ?? head
            owed.set(
              topic,
              Array.from({ length: Math.max(0, head - from) }, (_, i) => from + 1 + i),
            )
          }
        }
        const total = [...owed.values()].reduce((sum, seqs) => sum + seqs.length, 0)
        const answer = await send(server.port, {
          method: 'GET',
          target,
          headers,
          enough: (body) => total === 0 || framesOf(body, sse).length >= total,
          streamMs: total === 0 ? 20 : 2000,
        })
        const problem = assertAnswer(answer, `GET ${target.slice(0, 300)}`)
        outcomes.add(`${stream ? (sse ? 'sse' : 'ndjson') : 'other'} ${answer.status}`)
        if (answer.status === 431) return tooLarge(target, headers)
        if (!valid) {
          assert.ok(problem, `an invalid request was streamed: ${target.slice(0, 300)}`)
          return
        }
        assert.equal(problem, undefined, `a valid request was refused: ${answer.text.slice(0, 300)}`)
        const frames = framesOf(answer, sse)
        for (const topic of topics) {
          const seqs = frames.filter((frame) => frame.event.topic === topic).map((frame) => frame.event.seq)
          assert.deepEqual(seqs, owed.get(topic), `topic ${topic} did not resume where the cursor said`)
        }
        assert.equal(frames.length, total, 'frames of topics not asked for')
        if (sse && topics.length > 1) {
          // Each frame's id is a cursor holding every topic's position, the frame's own included.
          for (const frame of frames) {
            const decoded = decodeToken(frame.id ?? '')
            assert.ok(decoded, `an SSE id that is not a cursor: ${frame.id}`)
            assert.equal(decoded.get(frame.event.topic), frame.event.seq)
          }
        }
      }),
      { runs: 250, seconds: 3, outcomes, server },
    )
    await assertAlive(server, 'after the multi-topic streams')
  })

  test('topic names in the path, raw and percent-encoded: a valid name is served, any other refused', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(pathCase, async (c) => {
        const target = `/v1/topics/${encodePath(c)}${c.suffix}`
        const before = await topicsSnapshot(server.url)
        const body =
          c.method === 'POST'
            ? '{"type":"path.fuzz"}'
            : c.method === 'PUT' || c.method === 'PATCH'
              ? '{"retention":{"max_age":"7d"}}'
              : undefined
        const answer = await send(server.port, {
          method: c.method,
          target,
          headers: body === undefined ? [] : [['Content-Type', 'application/json']],
          ...(body === undefined ? {} : { body }),
        })
        const problem = assertAnswer(answer, `${c.method} ${target.slice(0, 300)}`)
        outcomes.add(`${c.method} ${answer.status}`)
        const after = await topicsSnapshot(server.url)
        if (problem || c.method === 'GET') {
          assert.deepEqual(
            after,
            before,
            `${c.method} ${target.slice(0, 200)} (${answer.status}) changed the store`,
          )
          if (problem) return
        }
        // Served: the topic it names is a valid name, and the one the path spelt (once decoded).
        const answered = JSON.parse(answer.text) as { topic?: string; events?: Array<{ topic: string }> }
        const named = answered.topic ?? answered.events?.[0]?.topic
        if (named !== undefined) {
          assert.ok(isTopicName(named), `served a topic with an invalid name: ${JSON.stringify(named)}`)
          // Percent-encoded, a valid name is spelt exactly (raw, a `?` or `#` in it would end the path),
          // but for one trailing slash, which the router ignores (ignoreTrailingSlash in server.ts).
          // (A name with an `events` segment is no topic: the path names another topic's events.)
          const valid = isTopicName(c.topic) || (c.topic.endsWith('/') && isTopicName(c.topic.slice(0, -1)))
          if ((c.encoding === 'safe' || c.encoding === 'all') && valid) {
            assert.ok(
              named === c.topic || `${named}/` === c.topic,
              `${JSON.stringify(c.topic)} served as ${named}`,
            )
          }
        }
      }),
      { runs: 300, seconds: 4, outcomes, server },
    )
    await assertAlive(server, 'after the path fuzz')
  })

  test('list and read routes: any query string, parameters repeated included, is a page or a 4xx', async (t) => {
    const outcomes = new Outcomes()
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      // A closed loopback port, on a topic without events: nothing is sent, and nothing leaves the machine.
      body: JSON.stringify({ target_url: 'http://127.0.0.1:9/never', topic: 'no-events' }),
    })
    assert.equal(created.status, 201)
    const hook = ((await created.json()) as { id: string }).id
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(listCase, async (c) => {
        const [path, names, accept] = LISTS[c.route]!
        const pairs = c.params.map(([name, value]) => [
          typeof name === 'number' ? (names[name] ?? names[0]!) : name,
          value,
        ])
        const query = pairs.map(([name, value]) => `${name}=${percentEncode(value!, true)}`).join('&')
        const base = path.replace('{hook}', hook)
        const target = query === '' ? base : `${base}${base.includes('?') ? '&' : '?'}${query}`
        const before = await topicsSnapshot(server.url)
        const answer = await send(server.port, {
          method: 'GET',
          target,
          headers: accept === undefined ? [] : [['Accept', accept]],
          streamMs: 20,
        })
        assertAnswer(answer, `GET ${target.slice(0, 300)}`)
        outcomes.add(`${path.split('?')[0]} ${answer.status}`)
        assert.deepEqual(await topicsSnapshot(server.url), before, 'a read changed the store')
        await assertAlive(server, `after GET ${target.slice(0, 300)}`)
      }),
      { runs: 300, seconds: 4, outcomes, server },
    )
  })
})
