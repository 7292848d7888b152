import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { publish, startTestServer, type TestServer } from '../helpers.ts'
import { StreamReader, WsClient } from '../streams/clients.ts'

/**
 * Every dialect on every reading protocol: the same events, the same filters, the same answer over
 * SSE, NDJSON, a multi-topic stream, the WebSocket, and short and long polls.
 */

let server: TestServer
before(async () => {
  server = await startTestServer()
  for (const topic of ['dialects', 'dialects-2']) {
    assert.equal((await publish(server.url, topic, EVENTS)).status, 201)
  }
})
after(() => server.close())

const EVENTS = [
  { type: 'order.created', subject: 'o1-eu', data: { customer: { tier: 'gold' }, total: 42 } },
  { type: 'order.paid', subject: 'o2-us', data: { customer: { tier: 'silver' }, total: 10, rush: true } },
  { type: 'order.refunded', data: { customer: { tier: 'gold' } } },
  { type: 'user.created', subject: 'u-eu', data: { total: 42 } },
  { type: 'order.paid', data: 'not an object' },
]

/** Each dialect, and the seqs of EVENTS it matches. */
const CASES: Array<[string, unknown, number[]]> = [
  ['exact', { exact: { 'data.customer.tier': 'gold' } }, [1, 3]],
  ['prefix', { prefix: { type: 'order.pa' } }, [2, 5]],
  ['suffix', { suffix: { subject: '-eu' } }, [1, 4]],
  ['all', { all: [{ prefix: { type: 'order.' } }, { exact: { 'data.total': '42' } }] }, [1]],
  ['top-level array', [{ prefix: { type: 'order.' } }, { exact: { 'data.total': '42' } }], [1]],
  ['any', { any: [{ exact: { type: 'order.refunded' } }, { exact: { 'data.rush': 'true' } }] }, [2, 3]],
  ['not', { not: { exact: { 'data.customer.tier': 'gold' } } }, [2, 4, 5]],
]

const q = (filter: unknown) => encodeURIComponent(JSON.stringify(filter))

/** What one protocol delivers of topic "dialects" (and "dialects-2" where it follows two) for a filter. */
const PROTOCOLS: Record<string, (filter: unknown, count: number) => Promise<Array<[string, number]>>> = {
  async sse(filter, count) {
    const reader = await StreamReader.open(
      `${server.url}/v1/topics/dialects/events?after=0&filter=${q(filter)}`,
      {
        accept: 'text/event-stream',
      },
    )
    try {
      // The bare id of the last event (5) says the stream has looked at everything.
      await reader.until(() => reader.text.includes('id: 5\n'))
      assert.equal(reader.sseEvents().length, count)
      return reader.sseEvents().map((e) => [e.data.topic, e.data.seq])
    } finally {
      reader.close()
    }
  },
  async ndjson(filter, count) {
    const reader = await StreamReader.open(
      `${server.url}/v1/topics/dialects/events?after=0&filter=${q(filter)}`,
      {
        accept: 'application/x-ndjson',
      },
    )
    try {
      await reader.until(() => reader.ndjsonEvents().length === count)
      await new Promise((resolve) => setTimeout(resolve, 100))
      return reader.ndjsonEvents().map((e) => [e.topic, e.seq])
    } finally {
      reader.close()
    }
  },
  async 'multi-topic'(filter, count) {
    const cursor = Buffer.from(JSON.stringify({ dialects: 0, 'dialects-2': 0 })).toString('base64url')
    const reader = await StreamReader.open(
      `${server.url}/v1/stream?topic=dialects&topic=dialects-2&filter=${q(filter)}`,
      { accept: 'text/event-stream', 'last-event-id': cursor },
    )
    try {
      await reader.until(() => reader.sseEvents().length === 2 * count)
      await new Promise((resolve) => setTimeout(resolve, 100))
      return reader
        .sseEvents()
        .filter((e) => e.data.topic === 'dialects')
        .map((e) => [e.data.topic, e.data.seq])
    } finally {
      reader.close()
    }
  },
  async websocket(filter, count) {
    const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
    try {
      ws.send({ op: 'subscribe', topic: 'dialects', after: 0, filter, ref: 1 })
      assert.equal((await ws.reply(1))['op'], 'subscribed')
      await ws.until(() => ws.events('dialects').length === count)
      await new Promise((resolve) => setTimeout(resolve, 100))
      return ws.events('dialects').map((e) => [e.topic, e.seq])
    } finally {
      await ws.close()
    }
  },
  async 'short poll'(filter) {
    const answer = (await (
      await fetch(`${server.url}/v1/topics/dialects/events?after=0&filter=${q(filter)}`)
    ).json()) as { events: Array<{ topic: string; seq: number }>; next: number }
    assert.equal(answer.next, 5)
    return answer.events.map((e) => [e.topic, e.seq])
  },
  async 'long poll'(filter) {
    const answer = (await (
      await fetch(`${server.url}/v1/topics/dialects/events?after=0&wait=5&filter=${q(filter)}`)
    ).json()) as { events: Array<{ topic: string; seq: number }>; next: number }
    assert.equal(answer.next, 5)
    return answer.events.map((e) => [e.topic, e.seq])
  },
}

for (const [protocol, read] of Object.entries(PROTOCOLS)) {
  test(`every dialect over ${protocol}`, async () => {
    for (const [name, filter, expected] of CASES) {
      const got = await read(filter, expected.length)
      assert.deepEqual(
        got.map(([, seq]) => seq),
        expected,
        `${name} over ${protocol}`,
      )
      assert.ok(got.every(([topic]) => topic === 'dialects'))
    }
  })
}
