import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { WebSocket } from 'ws'
import { publish, readAll } from '../helpers.ts'
import {
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
  send,
  startFuzzServer,
  topicsSnapshot,
} from './fuzz.ts'

/**
 * WebSocket client messages under fuzz: any text (JSON or not), any op, topic, after, ref and publish
 * attributes, and now and then a frame that breaks the protocol. Every message gets one answer; an
 * error is `{"op":"error","status":4xx,…}` and the socket stays open; only a protocol violation
 * (binary, invalid UTF-8, oversized) closes it, with its RFC 6455 code; a refused publish stores nothing.
 */

const FILE = 'test/fuzz/websocket.test.ts'
const STREAM_OPS = new Set(['event', 'gap', 'join', 'leave'])
const CONTROL = 'ws-control'

type Message = Record<string, unknown>

/** A socket whose answers are queued; `event` pushes are kept apart from the answers. */
class Client {
  readonly ws: WebSocket
  private readonly answers: Message[] = []
  private waiting: (() => void) | undefined
  closed: { code: number; reason: string } | undefined

  private constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      assert.equal(isBinary, false, 'the server sent a binary message')
      const message = JSON.parse(data.toString('utf8')) as Message
      // Events, gap signals and presence changes come as they happen, not as answers to a message.
      if (!STREAM_OPS.has(message['op'] as string)) this.answers.push(message)
      this.waiting?.()
    })
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() }
      this.waiting?.()
    })
    ws.on('error', () => {}) // a close follows
  }

  static open(url: string): Promise<Client> {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`, 'herald.v1')
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Client(ws)))
      ws.once('error', reject)
    })
  }

  /** The next answer, or the close. */
  async next(timeoutMs = 5000): Promise<Message | 'closed'> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const answer = this.answers.shift()
      if (answer) return answer
      if (this.closed) return 'closed'
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('no answer from the WebSocket within 5 s')
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiting = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      this.waiting = undefined
    }
  }
}

// ---- generators ----------------------------------------------------------------------------------

const stringText = hostileString.map((s) => JSON.stringify(s))

/** A value as JSON text: mostly the given valid ones, sometimes anything. */
function valueText(...valid: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...valid), weight: 8 },
    { arbitrary: stringText, weight: 1 },
    { arbitrary: jsonText, weight: 1 },
  )
}

const topicText = fc.oneof(
  { arbitrary: fc.constantFrom('"ws-a"', '"ws-b/c"', '"ws-a"', '"herald.system"'), weight: 5 },
  { arbitrary: anyTopic.map((topic) => JSON.stringify(topic)), weight: 1 },
  { arbitrary: jsonText, weight: 1 },
)

/** Fields of a message; undefined ones are left out. */
function objectText(fields: Record<string, string | undefined>, extra: [string, string] | undefined): string {
  const entries = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([name, value]) => `"${name}":${value}`)
  if (extra) entries.push(`${JSON.stringify(extra[0])}:${extra[1]}`)
  return `{${entries.join(',')}}`
}

const common = {
  ref: maybe(fc.oneof(fc.integer().map(String), stringText, numberText, jsonText), 60),
  extra: maybe(
    fc.tuple(fc.oneof(hostileString, fc.constantFrom('presence', 'filter', 'after')), jsonText),
    10,
  ),
}

/** A client message as JSON text: one op with its fields, each valid-looking or hostile. */
const messageText = fc
  .oneof(
    {
      arbitrary: fc.record({
        op: valueText('"subscribe"'),
        topic: maybe(topicText, 95),
        after: maybe(
          fc.oneof(fc.integer({ min: 0, max: 5 }).map(String), numberText, valueText('"1"', '-1', '1.5')),
          50,
        ),
        ...common,
      }),
      weight: 3,
    },
    {
      arbitrary: fc.record({ op: valueText('"unsubscribe"'), topic: maybe(topicText, 95), ...common }),
      weight: 1,
    },
    {
      arbitrary: fc.record({
        op: valueText('"publish"'),
        topic: maybe(topicText, 95),
        type: maybe(valueText('"ws.fuzz"', '"a.b"'), 90),
        data: maybe(jsonText, 60),
        id: maybe(valueText('"w1"', '"w2"', '"\\ud800"'), 25),
        source: maybe(valueText('"/ws"'), 15),
        subject: maybe(valueText('"s"'), 10),
        time: maybe(valueText('"2026-11-22T12:00:00Z"', '"yesterday"'), 10),
        specversion: maybe(valueText('"1.0"', '"0.3"'), 10),
        ...common,
      }),
      weight: 5,
    },
    {
      arbitrary: fc.record({
        op: valueText('"auth"'),
        token: maybe(valueText('""', '"key"'), 70),
        ...common,
      }),
      weight: 1,
    },
    {
      arbitrary: fc.record({
        op: maybe(
          fc.oneof(stringText, jsonText, fc.constantFrom('"presence"', '"SUBSCRIBE"', '"event"', '"error"')),
          90,
        ),
        topic: maybe(topicText, 50),
        ...common,
      }),
      weight: 1,
    },
  )
  .map(({ extra, ...fields }) => objectText(fields, extra))

/** What goes over the socket: JSON objects mostly, any text, and rare protocol violations. */
type Frame =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: Buffer }
  | { kind: 'invalid-utf8'; bytes: Buffer }
  | { kind: 'oversized'; text: string }

/** The server's message limit (the default --body-limit, 1mb): a longer text frame is a violation. */
const MESSAGE_LIMIT_BYTES = 1024 * 1024

const frame: fc.Arbitrary<Frame> = fc
  .oneof(
    { arbitrary: messageText.map((text) => ({ kind: 'text' as const, text })), weight: 20 },
    { arbitrary: jsonText.map((text) => ({ kind: 'text' as const, text })), weight: 3 },
    { arbitrary: hostileString.map((text) => ({ kind: 'text' as const, text })), weight: 2 },
    {
      arbitrary: fc
        .constantFrom('', '{', '[]', 'null', '"op"', '{"op":"publish"}{}')
        .map((text) => ({ kind: 'text' as const, text })),
      weight: 1,
    },
    {
      arbitrary: fc
        .uint8Array({ maxLength: 40 })
        .map((bytes) => ({ kind: 'binary' as const, bytes: Buffer.from(bytes) })),
      weight: 1,
    },
    {
      arbitrary: fc
        .tuple(
          messageText,
          fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80]),
        )
        .map(([text, bad]) => ({
          kind: 'invalid-utf8' as const,
          bytes: Buffer.concat([Buffer.from(text.slice(0, -1)), Buffer.from(bad), Buffer.from('}')]),
        })),
      weight: 1,
    },
    {
      arbitrary: fc.constant({
        kind: 'oversized' as const,
        text: `{"op":"publish","topic":"ws-a","type":"big","data":"${'x'.repeat(1024 * 1024)}"}`,
      }),
      weight: 1,
    },
  )
  .map(
    (f): Frame =>
      // Deeply nested JSON can grow past the limit by itself (100,000 levels inside a few more).
      f.kind === 'text' && Buffer.byteLength(f.text) > MESSAGE_LIMIT_BYTES
        ? { kind: 'oversized', text: f.text }
        : f,
  )

/** The close code a protocol violation earns (RFC 6455 §7.4.1). */
const CLOSE_FOR: Record<Exclude<Frame['kind'], 'text'>, number> = {
  binary: 1003,
  'invalid-utf8': 1007,
  oversized: 1009,
}

function parsed(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** An upgrade request: the handshake's headers, each right, wrong or missing. */
const upgradeCase = fc.record({
  method: fc.constantFrom('GET', 'GET', 'GET', 'POST', 'PUT', 'HEAD'),
  path: fc.oneof(
    { arbitrary: fc.constant('/v1/ws'), weight: 6 },
    {
      arbitrary: fc.constantFrom('/v1/ws?x=1', '/v1/ws/', '/v1//ws', '/V1/WS', '/v1/%77s', '/v1/wss', '/'),
      weight: 2,
    },
  ),
  upgrade: maybe(fc.constantFrom('websocket', 'websocket', 'WebSocket', 'h2c', 'websocket, h2c', ''), 95),
  connection: fc.constantFrom('Upgrade', 'Upgrade', 'Upgrade', 'keep-alive, Upgrade', 'close'),
  version: maybe(fc.constantFrom('13', '13', '13', '8', '', 'abc', '13, 8', '0013'), 95),
  key: maybe(
    fc.oneof(
      {
        arbitrary: fc
          .uint8Array({ minLength: 16, maxLength: 16 })
          .map((b) => Buffer.from(b).toString('base64')),
        weight: 5,
      },
      {
        arbitrary: fc.constantFrom('', 'abc', 'dGhlIHNhbXBsZSBub25jZQ', '!!!!!!!!!!!!!!!!!!!!!!=='),
        weight: 1,
      },
    ),
    90,
  ),
  protocol: maybe(
    fc.constantFrom('herald.v1', 'herald.v1, other', 'other', '', ',', 'a b', 'herald.v1, herald.v1', '"x"'),
    40,
  ),
  origin: maybe(fc.constantFrom('http://127.0.0.1', 'https://evil.example', 'null'), 20),
  host: maybe(fc.constantFrom('localhost', 'evil.example', '[::1]'), 15),
})

// ---- the properties --------------------------------------------------------------------------------

describe('fuzz: WebSocket client messages', () => {
  let server: FuzzServer
  let client: Client | undefined
  let control: unknown[]

  before(async () => {
    server = await startFuzzServer()
    assert.equal((await publish(server.url, CONTROL, { type: 'c', data: 1 })).status, 201)
    control = await readAll(server.url, CONTROL)
  })
  after(async () => {
    client?.ws.terminate()
    assert.deepEqual(await readAll(server.url, CONTROL), control, 'the control topic changed')
    await server.close()
  })

  test('any message: one answer, errors are 4xx with the socket kept, violations close with their code', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(frame, async (f) => {
        if (!client || client.closed) client = await Client.open(server.url)
        const before = await topicsSnapshot(server.url)
        if (f.kind === 'text' || f.kind === 'oversized') client.ws.send(f.text)
        else client.ws.send(f.bytes, { binary: f.kind === 'binary' })
        const answer = await client.next()
        if (f.kind !== 'text') {
          assert.equal(
            answer,
            'closed',
            `a ${f.kind} frame was answered: ${JSON.stringify(answer).slice(0, 200)}`,
          )
          assert.equal(
            client.closed?.code,
            CLOSE_FOR[f.kind],
            `a ${f.kind} frame closed with ${client.closed?.code}`,
          )
          outcomes.add(`close ${client.closed?.code}`)
        } else {
          assert.notEqual(
            answer,
            'closed',
            `the socket closed (${JSON.stringify(client.closed)}) on ${f.text.slice(0, 200)}`,
          )
          const reply = answer as Message
          const sent = parsed(f.text)
          const ref =
            typeof sent === 'object' && sent !== null && !Array.isArray(sent)
              ? (sent as Message)['ref']
              : undefined
          // The ref comes back as JSON carries it (a string or a number; 1e400 becomes null).
          if (typeof ref === 'string' || typeof ref === 'number') {
            assert.equal(reply['ref'], JSON.parse(JSON.stringify(ref)), 'the ref was not echoed')
          } else assert.ok(reply['ref'] === undefined || reply['ref'] === null, 'a ref that was not sent')
          if (reply['op'] === 'error') {
            const status = reply['status'] as number
            outcomes.add(`error ${status}`)
            assert.ok(
              Number.isInteger(status) && status >= 400 && status < 500,
              `error status ${status}: ${reply['detail']}`,
            )
            for (const key of ['title', 'detail', 'type', 'code']) {
              assert.ok(typeof reply[key] === 'string' && reply[key] !== '', `an error without ${key}`)
            }
            assert.deepEqual(await topicsSnapshot(server.url), before, 'a refused message changed the store')
          } else {
            outcomes.add(String(reply['op']))
            const op = (sent as Message)['op']
            // The answer to each op: authenticated, published, subscribed, unsubscribed; presence is
            // answered with the members, as op presence.
            const answerOf: Record<string, string> = {
              auth: 'authenticated',
              publish: 'published',
              presence: 'presence',
            }
            assert.equal(reply['op'], answerOf[op as string] ?? `${op}d`)
            if (reply['op'] === 'published') {
              const event = reply['event'] as { topic: string; seq: number }
              const stored = await fetch(`${server.url}/v1/topics/${event.topic}/events/${event.seq}`)
              assert.deepEqual(await stored.json(), event, 'the published event is not what was stored')
            } else if (reply['op'] !== 'authenticated') {
              assert.equal(reply['topic'], (sent as Message)['topic'])
            }
          }
          // Still open, and still answering.
          client.ws.send('{"op":"unsubscribe","topic":"probe","ref":"probe"}')
          assert.deepEqual(await client.next(), { op: 'unsubscribed', topic: 'probe', ref: 'probe' })
        }
        await assertAlive(server, 'after a WebSocket message')
      }),
      { runs: 300, seconds: 5, outcomes, server },
    )
  })

  test('any upgrade request: 101, or a problem+json 4xx', async (t) => {
    const outcomes = new Outcomes()
    await checkProperty(
      t,
      FILE,
      fc.asyncProperty(upgradeCase, async (c) => {
        const headers: Array<[string, string]> = []
        if (c.host !== undefined) headers.push(['Host', c.host])
        if (c.upgrade !== undefined) headers.push(['Upgrade', c.upgrade])
        headers.push(['Connection', c.connection])
        if (c.version !== undefined) headers.push(['Sec-WebSocket-Version', c.version])
        if (c.key !== undefined) headers.push(['Sec-WebSocket-Key', c.key])
        if (c.protocol !== undefined) headers.push(['Sec-WebSocket-Protocol', c.protocol])
        if (c.origin !== undefined) headers.push(['Origin', c.origin])
        const answer = await send(server.port, { method: c.method, target: c.path, headers })
        outcomes.add(answer.status)
        if (c.method === 'HEAD') {
          // A HEAD answer has no body: its status and Content-Type still say what it is.
          assert.ok(answer.status < 500, `HEAD upgrade: ${answer.status}`)
          if (answer.status >= 400)
            assert.match(answer.headers['content-type'] ?? '', /^application\/problem\+json/)
        } else if (answer.status !== 101) assertAnswer(answer, `upgrade ${JSON.stringify(c)}`)
        await assertAlive(server, 'after an upgrade request')
      }),
      { runs: 200, seconds: 2, outcomes, server },
    )
  })
})
