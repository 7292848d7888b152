import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { EventSource } from 'eventsource'
import { BIN, publish, type StoredEventJson, sleep, startTestServer, type TestServer } from '../helpers.ts'
import { range, StreamReader, seqs, WsClient } from './clients.ts'

// Issue 15, part 2: a cursor below what retention kept, or past the head, is signalled on every
// protocol (docs/api.md, "Gaps"), never resumed silently.

const SSE = { accept: 'text/event-stream' }
const NDJSON = { accept: 'application/x-ndjson' }

interface Page {
  events: StoredEventJson[]
  next: number
  gap?: Record<string, unknown>
}

describe('gap signal', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ pruneIntervalMs: 100 })
  })
  after(() => server.close())

  /** A topic of 10 events of which retention kept 8, 9 and 10. */
  async function prunedTopic(topic: string): Promise<void> {
    const put = await fetch(`${server.url}/v1/topics/${topic}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retention: { max_events: 3 } }),
    })
    assert.equal(put.status, 200)
    await publishMany(topic, 10)
    let info = { first_seq: 0 }
    for (let i = 0; i < 100 && info.first_seq !== 8; i++) {
      await sleep(50)
      info = (await (await fetch(`${server.url}/v1/topics/${topic}`)).json()) as typeof info
    }
    assert.equal(info.first_seq, 8, 'retention pruned the topic')
  }

  async function publishMany(topic: string, count: number, from = 1): Promise<void> {
    const response = await publish(
      server.url,
      topic,
      Array.from({ length: count }, (_, i) => ({ type: 'tick', data: from + i })),
    )
    assert.equal(response.status, 201)
  }

  async function poll(path: string): Promise<Page> {
    const response = await fetch(`${server.url}${path}`)
    assert.equal(response.status, 200)
    return (await response.json()) as Page
  }

  test('short poll: a gap field with first_seq, or head_seq when ahead; none when nothing was missed', async () => {
    await prunedTopic('gp')
    const below = await poll('/v1/topics/gp/events?after=2')
    assert.deepEqual(below.gap, { after: 2, first_seq: 8, reason: 'pruned' })
    assert.deepEqual(seqs(below.events), [8, 9, 10])
    assert.equal(below.next, 10)
    const fromZero = await poll('/v1/topics/gp/events?after=0&limit=1')
    assert.deepEqual(fromZero.gap, { after: 0, first_seq: 8, reason: 'pruned' })
    assert.deepEqual(seqs(fromZero.events), [8])
    // Right at the floor, or at the head: nothing missed, no field.
    const atFloor = await poll('/v1/topics/gp/events?after=7')
    assert.equal('gap' in atFloor, false)
    assert.deepEqual(seqs(atFloor.events), [8, 9, 10])
    const atHead = await poll('/v1/topics/gp/events?after=10')
    assert.deepEqual(atHead, { events: [], next: 10 })
    // Past the head: signalled, and `next` goes back to the head.
    const ahead = await poll('/v1/topics/gp/events?after=500')
    assert.deepEqual(ahead, { events: [], next: 10, gap: { after: 500, head_seq: 10, reason: 'ahead' } })
    // A topic never pruned, and one that does not exist, from 0: no gap.
    await publishMany('gp-whole', 2)
    assert.equal('gap' in (await poll('/v1/topics/gp-whole/events?after=0')), false)
    assert.deepEqual(await poll('/v1/topics/gp-none/events?after=0'), { events: [], next: 0 })
    // A topic that does not exist, with a cursor: ahead of its head, 0.
    assert.deepEqual((await poll('/v1/topics/gp-none/events?after=5')).gap, {
      after: 5,
      head_seq: 0,
      reason: 'ahead',
    })
  })

  test('short poll: every retained event pruned after the cursor is a gap with first_seq = head + 1', async () => {
    await fetch(`${server.url}/v1/topics/gp-aged`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retention: { max_age: '1s' } }),
    })
    await publishMany('gp-aged', 4)
    let info = { events: 4 }
    for (let i = 0; i < 100 && info.events !== 0; i++) {
      await sleep(50)
      info = (await (await fetch(`${server.url}/v1/topics/gp-aged`)).json()) as typeof info
    }
    assert.equal(info.events, 0, 'retention pruned every event')
    assert.deepEqual(await poll('/v1/topics/gp-aged/events?after=1'), {
      events: [],
      next: 4,
      gap: { after: 1, first_seq: 5, reason: 'pruned' },
    })
    assert.deepEqual(await poll('/v1/topics/gp-aged/events?after=4'), { events: [], next: 4 })
  })

  test('long poll: a gap is answered at once, with the retained events', async () => {
    await prunedTopic('glp')
    const started = Date.now()
    const below = await poll('/v1/topics/glp/events?after=3&wait=10')
    assert.deepEqual(below.gap, { after: 3, first_seq: 8, reason: 'pruned' })
    assert.deepEqual(seqs(below.events), [8, 9, 10])
    const ahead = await poll('/v1/topics/glp/events?after=99&wait=10')
    assert.deepEqual(ahead, { events: [], next: 10, gap: { after: 99, head_seq: 10, reason: 'ahead' } })
    assert.ok(Date.now() - started < 5000, 'not held for the wait')
    // No gap: held until the next event, which comes without a field.
    const held = poll('/v1/topics/glp/events?after=10&wait=10')
    await sleep(100)
    await publishMany('glp', 1, 11)
    const live = await held
    assert.equal('gap' in live, false)
    assert.deepEqual(seqs(live.events), [11])
  })

  test('SSE: event: gap (no id) with first_seq, then each retained event once, then live', async () => {
    await prunedTopic('gs')
    const stream = await StreamReader.open(`${server.url}/v1/topics/gs/events?after=2`, SSE)
    try {
      await stream.until(() => stream.sseEvents().length === 4)
      const [gap, ...events] = stream.sseEvents()
      assert.deepEqual(gap, {
        id: undefined,
        event: 'gap',
        data: { topic: 'gs', after: 2, first_seq: 8, reason: 'pruned' },
      })
      assert.match(
        stream.text,
        /\nevent: gap\ndata: \{"topic":"gs","after":2,"first_seq":8,"reason":"pruned"\}\n\n/,
      )
      assert.deepEqual(seqs(events.map((e) => e.data)), [8, 9, 10])
      assert.deepEqual(
        events.map((e) => e.id),
        ['8', '9', '10'],
      )
      await publishMany('gs', 1, 11)
      await stream.until(() => stream.sseEvents().length === 5)
      assert.deepEqual(
        seqs(
          stream
            .sseEvents()
            .slice(1)
            .map((e) => e.data),
        ),
        [8, 9, 10, 11],
      )
    } finally {
      stream.close()
    }
  })

  test('SSE with the eventsource client: a "gap" listener, Last-Event-ID resume past it', async () => {
    await prunedTopic('ges')
    const source = new EventSource(`${server.url}/v1/topics/ges/events?after=0`)
    const gaps: unknown[] = []
    const messages: MessageEvent[] = []
    source.addEventListener('gap', (event) => gaps.push(JSON.parse(event.data)))
    source.onmessage = (event) => messages.push(event)
    try {
      for (let i = 0; i < 200 && messages.length < 3; i++) await sleep(10)
      await sleep(200)
      assert.deepEqual(gaps, [{ topic: 'ges', after: 0, first_seq: 8, reason: 'pruned' }])
      assert.deepEqual(
        messages.map((m) => (JSON.parse(m.data) as StoredEventJson).seq),
        [8, 9, 10],
      )
      assert.equal(messages.at(-1)!.lastEventId, '10')
    } finally {
      source.close()
    }
  })

  test('SSE: a cursor ahead of the head is signalled, then the stream goes on from the head', async () => {
    await publishMany('ga', 3)
    const stream = await StreamReader.open(`${server.url}/v1/topics/ga/events?after=500`, SSE)
    try {
      await stream.until(() => stream.sseEvents().length === 1)
      assert.deepEqual(stream.sseEvents()[0], {
        id: undefined,
        event: 'gap',
        data: { topic: 'ga', after: 500, head_seq: 3, reason: 'ahead' },
      })
      await publishMany('ga', 2, 4)
      await stream.until(() => stream.sseEvents().length === 3)
      assert.deepEqual(
        seqs(
          stream
            .sseEvents()
            .slice(1)
            .map((e) => e.data),
        ),
        [4, 5],
      )
    } finally {
      stream.close()
    }
  })

  test('SSE and NDJSON: no signal when nothing was missed', async () => {
    await prunedTopic('gn')
    await publishMany('gn-whole', 3)
    const cases: Array<[string, number[]]> = [
      ['/v1/topics/gn/events?after=7', [8, 9, 10]],
      ['/v1/topics/gn-whole/events?after=0', [1, 2, 3]],
      ['/v1/topics/gn/events', []], // from the head
    ]
    for (const [path, expected] of cases) {
      for (const accept of [SSE, NDJSON]) {
        const stream = await StreamReader.open(`${server.url}${path}`, accept)
        try {
          if (expected.length > 0) {
            await stream.until(() =>
              accept === SSE
                ? stream.sseEvents().length === expected.length
                : stream.ndjsonEvents().length === expected.length,
            )
          }
          await sleep(150)
          assert.doesNotMatch(stream.text, /gap/, `${path} ${accept.accept}`)
          const got = accept === SSE ? stream.sseEvents().map((e) => e.data) : stream.ndjsonEvents()
          assert.deepEqual(seqs(got), expected, path)
        } finally {
          stream.close()
        }
      }
    }
  })

  test('NDJSON: one {"gap":…} line, then each retained event once; ahead too', async () => {
    await prunedTopic('gj')
    const stream = await StreamReader.open(`${server.url}/v1/topics/gj/events?after=1`, NDJSON)
    try {
      await stream.until(() => stream.ndjsonEvents().length === 4)
      const [gap, ...events] = stream.ndjsonEvents() as unknown as Array<Record<string, unknown>>
      assert.deepEqual(gap, { gap: { topic: 'gj', after: 1, first_seq: 8, reason: 'pruned' } })
      assert.ok(events.every((event) => event['specversion'] === '1.0'))
      assert.deepEqual(seqs(events as unknown as StoredEventJson[]), [8, 9, 10])
    } finally {
      stream.close()
    }
    const ahead = await StreamReader.open(`${server.url}/v1/topics/gj/events?after=11`, NDJSON)
    try {
      await ahead.until(() => ahead.ndjsonEvents().length === 1)
      assert.deepEqual(ahead.ndjsonEvents()[0], {
        gap: { topic: 'gj', after: 11, head_seq: 10, reason: 'ahead' },
      })
      await publishMany('gj', 1, 11)
      await ahead.until(() => ahead.ndjsonEvents().length === 2)
      assert.equal(ahead.ndjsonEvents()[1]!.seq, 11)
    } finally {
      ahead.close()
    }
  })

  test('multi-topic stream: a signal per topic, and the cursor moves past the gap', async () => {
    await prunedTopic('gm-a')
    await prunedTopic('gm-b')
    await publishMany('gm-c', 2)
    const cursor = Buffer.from(JSON.stringify({ 'gm-a': 0, 'gm-b': 20, 'gm-c': 0 })).toString('base64url')
    const stream = await StreamReader.open(
      `${server.url}/v1/stream?topic=gm-a&topic=gm-b&topic=gm-c&last_event_id=${cursor}`,
      SSE,
    )
    try {
      await stream.until(() => stream.sseEvents().length === 7)
      const frames = stream.sseEvents()
      const gaps = frames.filter((frame) => frame.event === 'gap').map((frame) => frame.data)
      assert.deepEqual(
        gaps.sort((x, y) => String(x.topic).localeCompare(String(y.topic))),
        [
          { topic: 'gm-a', after: 0, first_seq: 8, reason: 'pruned' },
          { topic: 'gm-b', after: 20, head_seq: 10, reason: 'ahead' },
        ],
      )
      const events = frames.filter((frame) => frame.event === undefined)
      assert.deepEqual(
        events.filter((e) => e.data.topic === 'gm-a').map((e) => e.data.seq),
        [8, 9, 10],
      )
      assert.deepEqual(
        events.filter((e) => e.data.topic === 'gm-c').map((e) => e.data.seq),
        [1, 2],
      )
      // The cursor of the next frame holds every topic past its gap: resuming with it signals nothing.
      await publishMany('gm-c', 1, 3)
      await stream.until(() => stream.sseEvents().length === 8)
      const last = stream.sseEvents().at(-1)!
      assert.equal(last.data.seq, 3)
      const token = JSON.parse(Buffer.from(last.id!, 'base64url').toString()) as Record<string, number>
      assert.deepEqual(token, { 'gm-a': 10, 'gm-b': 10, 'gm-c': 3 })
    } finally {
      stream.close()
    }
  })

  test('WebSocket: {"op":"gap"} after subscribed and before the backlog; ahead; none at the floor', async () => {
    await prunedTopic('gw')
    const client = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
    try {
      client.send({ op: 'subscribe', topic: 'gw', after: 4, ref: 1 })
      await client.until(() => client.events('gw').length === 3)
      const ops = client.messages.map((m) => m['op'])
      assert.deepEqual(ops, ['subscribed', 'gap', 'event', 'event', 'event'])
      assert.deepEqual(client.messages[1], {
        op: 'gap',
        topic: 'gw',
        after: 4,
        first_seq: 8,
        reason: 'pruned',
      })
      assert.deepEqual(seqs(client.events('gw')), [8, 9, 10])
      // Subscribing again from the floor: no gap.
      client.messages.length = 0
      client.send({ op: 'subscribe', topic: 'gw', after: 7, ref: 2 })
      await client.until(() => client.events('gw').length === 3)
      await sleep(100)
      assert.deepEqual(
        client.messages.map((m) => m['op']),
        ['subscribed', 'event', 'event', 'event'],
      )
      // Ahead of the head: signalled, then live from the head.
      client.messages.length = 0
      client.send({ op: 'subscribe', topic: 'gw', after: 500, ref: 3 })
      await client.until(() => client.messages.length === 2)
      assert.deepEqual(client.messages[1], {
        op: 'gap',
        topic: 'gw',
        after: 500,
        head_seq: 10,
        reason: 'ahead',
      })
      await publishMany('gw', 2, 11)
      await client.until(() => client.events('gw').length === 2)
      assert.deepEqual(seqs(client.events('gw')), range(11, 12))
    } finally {
      await client.close()
    }
  })

  for (const via of ['sse', 'ndjson', 'ws', 'poll']) {
    test(`herald tail --via ${via}: says so on stderr, prints only events, and follows on`, async () => {
      const topic = `gt-${via}`
      await prunedTopic(topic)
      const below = tail([topic, '--via', via, '--after', '2'])
      try {
        await below.until(() => below.lines.length === 3 && below.errors.length === 1)
        assert.deepEqual(seqs(below.lines), [8, 9, 10])
        assert.match(below.errors[0]!, /events 3 to 7 are gone \(retention\); following from 8/)
      } finally {
        below.stop()
      }
      const ahead = tail([topic, '--via', via, '--after', '500'])
      try {
        await ahead.until(() => ahead.errors.length === 1)
        assert.match(ahead.errors[0]!, /seq 500 is past the topic's head \(10\)/)
        await sleep(200)
        await publishMany(topic, 1, 11)
        await ahead.until(() => ahead.lines.length === 1)
        assert.deepEqual(seqs(ahead.lines), [11])
        assert.equal(ahead.errors.length, 1, 'told once')
      } finally {
        ahead.stop()
      }
    })
  }

  function tail(args: string[]) {
    const child = spawn(process.execPath, [BIN, 'tail', ...args, '--url', server.url])
    const lines: StoredEventJson[] = []
    const errors: string[] = []
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line)))
    createInterface({ input: child.stderr }).on('line', (line) => errors.push(line))
    return {
      lines,
      errors,
      stop: () => child.kill('SIGTERM'),
      async until(check: () => boolean) {
        for (let i = 0; i < 750 && !check(); i++) await sleep(20)
        assert.ok(check(), `stdout: ${JSON.stringify(lines)} stderr: ${errors.join('\n')}`)
      },
    }
  }
})
