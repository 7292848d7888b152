import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { EventSource } from 'undici'
import { decodeCursor } from '../../src/core/cursor.ts'
import { filterCounters } from '../../src/core/filter.ts'
import { problemOf, publish, startTestServer, type TestServer, until } from '../helpers.ts'
import { range, StreamReader, seqs, WsClient } from '../streams/clients.ts'

/**
 * Filters on every reading protocol: only matching events are sent, skipped ones still move the
 * cursor (SSE: a bare `id:` block; polls: `next`), and a resume after skipped events is exact.
 */

let server: TestServer
before(async () => {
  server = await startTestServer({ heartbeatMs: 500 })
})
after(() => server.close())

const TYPE_A = { exact: { type: 'a' } }
const q = (filter: unknown) => encodeURIComponent(JSON.stringify(filter))

/** Publishes events of these types, in order, one request each. */
async function publishTypes(topic: string, types: string[], data?: (i: number) => unknown) {
  for (const [i, type] of types.entries()) {
    const response = await publish(server.url, topic, { type, ...(data ? { data: data(i) } : {}) })
    assert.equal(response.status, 201)
  }
}

/** The blocks of an SSE text that carry an `id:` and no `data:`. */
function bareIds(text: string): string[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n'))
    .filter((lines) => !lines.some((line) => line.startsWith('data:')))
    .flatMap((lines) => lines.filter((line) => line.startsWith('id: ')).map((line) => line.slice(4)))
}

test('a bad filter is a 400 problem naming "filter", on streams and polls alike, never a match-all', async () => {
  for (const filter of ['{', '{}', '{"exact":{"type":1}}', '{"sql":"type = \'a\'"}', '', '[]']) {
    for (const [path, accept] of [
      ['/v1/topics/bad/events', 'application/json'],
      ['/v1/topics/bad/events', 'text/event-stream'],
      ['/v1/topics/bad/events', 'application/x-ndjson'],
      ['/v1/stream?topic=bad&topic=bad2', 'text/event-stream'],
    ] as const) {
      const joiner = path.includes('?') ? '&' : '?'
      const response = await fetch(`${server.url}${path}${joiner}filter=${encodeURIComponent(filter)}`, {
        headers: { accept },
      })
      const problem = await problemOf(response, 400)
      assert.ok(problem.field?.startsWith('filter'), `${path} ${accept} ${filter}: ${problem.field}`)
    }
  }
  const twice = await fetch(`${server.url}/v1/topics/bad/events?filter=${q(TYPE_A)}&filter=${q(TYPE_A)}`)
  assert.equal((await problemOf(twice, 400)).field, 'filter')
})

test('SSE: only matching events; after skipped ones, a bare id: block with the cursor', async () => {
  await publishTypes('sse-f', ['a', 'b', 'a', 'b', 'b'])
  const reader = await StreamReader.open(`${server.url}/v1/topics/sse-f/events?after=0&filter=${q(TYPE_A)}`, {
    accept: 'text/event-stream',
  })
  try {
    await reader.until(() => bareIds(reader.text).includes('5'))
    assert.deepEqual(seqs(reader.sseEvents().map((e) => e.data)), [1, 3])
    assert.deepEqual(
      reader.sseEvents().map((e) => e.id),
      ['1', '3'],
    )
    // Live: a run of skipped events then a match needs no bare id (the match's id moves the cursor).
    await publishTypes('sse-f', ['b', 'a', 'b'])
    await reader.until(() => bareIds(reader.text).includes('8'))
    assert.deepEqual(seqs(reader.sseEvents().map((e) => e.data)), [1, 3, 7])
  } finally {
    reader.close()
  }
})

test('SSE: EventSource resumes after the skipped events, exactly once (Last-Event-ID is the bare id)', async () => {
  const topic = 'sse-resume'
  await publishTypes(topic, ['a', 'b', 'b'])
  // A proxy in front of Herald: it records the Last-Event-ID of each request, and can cut the stream.
  const lastEventIds: Array<string | undefined> = []
  const open = new Set<import('node:http').ServerResponse>()
  const proxy: Server = createServer((req, res) => {
    lastEventIds.push(req.headers['last-event-id'] as string | undefined)
    const upstream = httpRequest(`${server.url}${req.url}`, { headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    res.on('close', () => upstream.destroy())
    open.add(res)
    res.on('close', () => open.delete(res))
    upstream.end()
  })
  proxy.listen(0, '127.0.0.1')
  await once(proxy, 'listening')
  const port = (proxy.address() as AddressInfo).port
  const received: Array<{ seq: number; lastEventId: string }> = []
  const source = new EventSource(
    `http://127.0.0.1:${port}/v1/topics/${topic}/events?after=0&filter=${q(TYPE_A)}`,
  )
  source.onmessage = (message) => {
    received.push({
      seq: (JSON.parse(message.data) as { seq: number }).seq,
      lastEventId: message.lastEventId,
    })
  }
  try {
    await until('the first event', () => (received.length === 1 ? true : undefined))
    assert.deepEqual(received, [{ seq: 1, lastEventId: '1' }])
    // Wait for the bare id block (the proxy passed it on) before cutting the stream.
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const res of open) res.destroy()
    await until('a reconnect', () => (lastEventIds.length >= 2 ? true : undefined))
    assert.equal(lastEventIds[1], '3', 'EventSource resumed from the bare id, past the skipped events')
    await publishTypes(topic, ['b', 'a', 'a'])
    await until('the events after the reconnect', () => (received.length === 3 ? true : undefined))
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(seqs(received), [1, 5, 6], 'each matching event exactly once')
  } finally {
    source.close()
    for (const res of open) res.destroy()
    proxy.closeAllConnections()
    proxy.close()
  }
})

test('NDJSON: only matching events, and nothing for skipped ones (a resume re-reads and skips them)', async () => {
  const topic = 'nd-f'
  await publishTypes(topic, ['a', 'b', 'a', 'b'], (i) => ({ n: i }))
  const filter = { any: [{ exact: { 'data.n': '0' } }, { suffix: { type: 'b' } }] }
  const reader = await StreamReader.open(
    `${server.url}/v1/topics/${topic}/events?after=0&filter=${q(filter)}`,
    {
      accept: 'application/x-ndjson',
    },
  )
  try {
    await reader.until(() => reader.ndjsonEvents().length === 3)
    assert.deepEqual(seqs(reader.ndjsonEvents()), [1, 2, 4])
    await publishTypes(topic, ['a', 'b'], (i) => ({ n: i + 10 }))
    await reader.until(() => reader.ndjsonEvents().length === 4)
    assert.deepEqual(seqs(reader.ndjsonEvents()), [1, 2, 4, 6])
    assert.ok(
      reader.text.split('\n').every((line) => line === '' || line.includes('"specversion"')),
      'no line but events and keep-alives',
    )
  } finally {
    reader.close()
  }
  // Resuming after the last event received (4) reads 5 again and skips it again: exactly once.
  const again = await StreamReader.open(
    `${server.url}/v1/topics/${topic}/events?after=4&filter=${q(filter)}`,
    {
      accept: 'application/x-ndjson',
    },
  )
  try {
    await again.until(() => again.ndjsonEvents().length === 1)
    assert.deepEqual(seqs(again.ndjsonEvents()), [6])
  } finally {
    again.close()
  }
})

test('multi-topic SSE: the filter applies to every topic; the bare id carries the cursor of all; resume is exact', async () => {
  await publishTypes('mt-x', ['a', 'b'])
  await publishTypes('mt-y', ['b', 'a', 'b'])
  const url = `${server.url}/v1/stream?topic=mt-x&topic=mt-y&filter=${q({ prefix: { type: 'a' } })}`
  const first = await StreamReader.open(url, { accept: 'text/event-stream' })
  let cursor: string
  try {
    // Live only (no position given): publish now.
    await new Promise((resolve) => setTimeout(resolve, 200))
    await publishTypes('mt-x', ['b', 'a', 'b'])
    await publishTypes('mt-y', ['a', 'b'])
    // mt-y 5 is skipped after the last event sent (mt-y 4): a bare id follows with the cursor past it.
    await first.until(() => bareIds(first.text).some((id) => decodeCursor(id, 'id').get('mt-y') === 5))
    const events = first.sseEvents().map((e) => [e.data.topic, e.data.seq])
    assert.deepEqual(events, [
      ['mt-x', 4],
      ['mt-y', 4],
    ])
    cursor = bareIds(first.text).at(-1)!
    assert.deepEqual(Object.fromEntries(decodeCursor(cursor, 'id')), { 'mt-x': 5, 'mt-y': 5 })
  } finally {
    first.close()
  }
  await publishTypes('mt-x', ['b', 'a'])
  await publishTypes('mt-y', ['b'])
  const resumed = await StreamReader.open(url, {
    accept: 'text/event-stream',
    'last-event-id': cursor,
  })
  try {
    await resumed.until(() => resumed.sseEvents().length === 1 && bareIds(resumed.text).length > 0)
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(
      resumed.sseEvents().map((e) => [e.data.topic, e.data.seq]),
      [['mt-x', 7]],
      'only what came after the cursor, once',
    )
  } finally {
    resumed.close()
  }
})

test('short poll: next moves past skipped events; paging with next reads each match once', async () => {
  const topic = 'poll-f'
  await publishTypes(topic, ['a', 'b', 'b', 'a', 'b', 'b', 'b'])
  const page = async (after: number, limit: number) => {
    const response = await fetch(
      `${server.url}/v1/topics/${topic}/events?after=${after}&limit=${limit}&filter=${q(TYPE_A)}`,
    )
    assert.equal(response.status, 200)
    return (await response.json()) as { events: Array<{ seq: number }>; next: number }
  }
  const one = await page(0, 1)
  assert.deepEqual([seqs(one.events), one.next], [[1], 1], 'a full page stops at its last match')
  const two = await page(1, 1)
  assert.deepEqual([seqs(two.events), two.next], [[4], 4], 'skipped 2 and 3 on the way')
  const three = await page(4, 1)
  assert.deepEqual([seqs(three.events), three.next], [[], 7], 'no more matches: next is the head')
  const four = await page(7, 10)
  assert.deepEqual([seqs(four.events), four.next], [[], 7])
  const all = await page(0, 100)
  assert.deepEqual([seqs(all.events), all.next], [[1, 4], 7])
})

test('polls look at 10,000 skipped events at most, then answer with next past them', async () => {
  const topic = 'poll-scan'
  for (let i = 0; i < 11; i++) {
    const batch = Array.from({ length: 1000 }, () => ({ type: 'b' }))
    if (i === 10) batch[999] = { type: 'a' }
    assert.equal((await publish(server.url, topic, batch)).status, 201)
  }
  const read = async (after: number, wait = 0) => {
    const response = await fetch(
      `${server.url}/v1/topics/${topic}/events?after=${after}&limit=1&wait=${wait}&filter=${q(TYPE_A)}`,
    )
    assert.equal(response.status, 200)
    return (await response.json()) as { events: Array<{ seq: number }>; next: number }
  }
  const first = await read(0)
  assert.deepEqual([seqs(first.events), first.next], [[], 10_000])
  const second = await read(first.next)
  assert.deepEqual([seqs(second.events), second.next], [[11_000], 11_000])
  const started = Date.now()
  const held = await read(0, 10)
  assert.ok(Date.now() - started < 5000, 'a long poll over a long skipped backlog answers early')
  assert.equal(held.events.length, 0)
  assert.ok(held.next >= 10_000, `next moved on: ${held.next}`)
})

test('long poll: skipped events keep it waiting; it answers the match with next; or times out with next advanced', async () => {
  const topic = 'lp-f'
  const started = Date.now()
  const poll = fetch(`${server.url}/v1/topics/${topic}/events?after=0&wait=10&filter=${q(TYPE_A)}`)
  await new Promise((resolve) => setTimeout(resolve, 200))
  await publishTypes(topic, ['b', 'b'])
  await new Promise((resolve) => setTimeout(resolve, 300))
  await publishTypes(topic, ['b', 'a', 'b'])
  const answer = (await (await poll).json()) as { events: Array<{ seq: number }>; next: number }
  assert.ok(Date.now() - started < 9000, 'answered at the match, not at the timeout')
  assert.deepEqual(seqs(answer.events), [4])
  assert.ok(answer.next >= 4)

  const timedOut = Date.now()
  const idle = fetch(
    `${server.url}/v1/topics/${topic}/events?after=${answer.next}&wait=1&filter=${q(TYPE_A)}`,
  )
  await new Promise((resolve) => setTimeout(resolve, 100))
  await publishTypes(topic, ['b', 'b'])
  const empty = (await (await idle).json()) as { events: unknown[]; next: number }
  assert.ok(Date.now() - timedOut >= 900, 'it waited out its time')
  assert.deepEqual(empty, { events: [], next: 7 }, 'next moved past the skipped events')
  // A long poll whose backlog holds only skipped events waits too, then answers with next past them.
  const backlog = (await (
    await fetch(`${server.url}/v1/topics/${topic}/events?after=5&wait=1&filter=${q(TYPE_A)}`)
  ).json()) as { events: unknown[]; next: number }
  assert.deepEqual(backlog, { events: [], next: 7 })
})

test('WebSocket: "filter" on subscribe; a bad one is an error op 400 and the socket stays; resume with after is exact', async () => {
  const topic = 'ws-f'
  await publishTypes(topic, ['a', 'b', 'a'], (i) => ({ tier: i === 2 ? 'gold' : 'silver' }))
  const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
  try {
    ws.send({ op: 'subscribe', topic, after: 0, filter: { exact: { nope: 1 } }, ref: 1 })
    const error = await ws.reply(1)
    assert.equal(error['op'], 'error')
    assert.equal(error['status'], 400)
    assert.match(String(error['field']), /^filter/)
    ws.send({ op: 'subscribe', topic, after: 0, filter: null, ref: 2 })
    assert.equal((await ws.reply(2))['status'], 400, 'null is no filter')
    ws.send({
      op: 'subscribe',
      topic,
      after: 0,
      filter: [TYPE_A, { exact: { 'data.tier': 'gold' } }],
      ref: 3,
    })
    assert.equal((await ws.reply(3))['op'], 'subscribed')
    await ws.until(() => ws.events(topic).length === 1)
    await publishTypes(topic, ['b', 'a', 'a'], (i) => ({ tier: i === 2 ? 'gold' : 'silver' }))
    await ws.until(() => ws.events(topic).length === 2)
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(seqs(ws.events(topic)), [3, 6])
  } finally {
    await ws.close()
  }
  // The client resumes from the last seq it got: skipped events after it are read and skipped again.
  await publishTypes(topic, ['a', 'b'], () => ({ tier: 'gold' }))
  const again = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
  try {
    again.send({
      op: 'subscribe',
      topic,
      after: 3,
      filter: [{ exact: { 'data.tier': 'gold' } }, TYPE_A],
      ref: 1,
    })
    await again.until(() => again.events(topic).length === 2)
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.deepEqual(seqs(again.events(topic)), [6, 7])
  } finally {
    await again.close()
  }
})

test('a filter is evaluated once per event and distinct filter, not once per subscriber', async () => {
  const topic = 'once-f'
  const gold = { exact: { 'data.tier': 'gold' } }
  // Two distinct filters, each written several ways, on seven live subscribers over three protocols.
  const sameA = [{ all: [TYPE_A, gold] }, [gold, TYPE_A], { all: [{ all: [gold] }, TYPE_A, gold] }]
  const other = { not: TYPE_A }
  const readers = await Promise.all([
    ...sameA.map((filter) =>
      StreamReader.open(`${server.url}/v1/topics/${topic}/events?filter=${q(filter)}`, {
        accept: 'text/event-stream',
      }),
    ),
    StreamReader.open(`${server.url}/v1/topics/${topic}/events?filter=${q(other)}`, {
      accept: 'application/x-ndjson',
    }),
    StreamReader.open(`${server.url}/v1/topics/${topic}/events?filter=${q({ not: { not: other } })}`, {
      accept: 'text/event-stream',
    }),
  ])
  const sockets = await Promise.all(
    [0, 1].map(() => WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)),
  )
  try {
    sockets[0]!.send({ op: 'subscribe', topic, filter: sameA[1], ref: 1 })
    sockets[1]!.send({ op: 'subscribe', topic, filter: other, ref: 1 })
    for (const socket of sockets) assert.equal((await socket.reply(1))['op'], 'subscribed')
    // A warm-up event every filter takes or skips: once each subscriber has dealt with it, all are live.
    await publish(server.url, topic, [
      { type: 'a', data: { tier: 'gold' } },
      { type: 'b', data: { tier: 'gold' } },
    ])
    for (const reader of readers) {
      await reader.until(() => reader.text.includes('"seq":1') || reader.text.includes('"seq":2'))
    }
    for (const socket of sockets) await socket.until(() => socket.events(topic).length === 1)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const before = { ...filterCounters }
    const batch = range(1, 20).map((i) => ({
      type: i % 2 === 0 ? 'a' : 'b',
      data: { tier: i % 4 === 0 ? 'gold' : 'x' },
    }))
    assert.equal((await publish(server.url, topic, batch)).status, 201)
    const matchesA = batch.filter((e) => e.type === 'a' && e.data.tier === 'gold').length
    for (const reader of readers.slice(0, 3))
      await reader.until(() => reader.sseEvents().length === 1 + matchesA)
    await readers[3]!.until(() => readers[3]!.ndjsonEvents().length === 1 + 10)
    await readers[4]!.until(() => readers[4]!.sseEvents().length === 1 + 10)
    await sockets[0]!.until(() => sockets[0]!.events(topic).length === 1 + matchesA)
    await sockets[1]!.until(() => sockets[1]!.events(topic).length === 1 + 10)
    assert.equal(filterCounters.evaluations - before.evaluations, 2 * batch.length, 'two distinct filters')
    assert.equal(filterCounters.parses - before.parses, batch.length, 'each event parsed once')
  } finally {
    for (const reader of readers) reader.close()
    for (const socket of sockets) await socket.close()
  }
})
