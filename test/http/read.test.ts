import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { LocalBus } from '../../src/bus/local.ts'
import {
  problemOf,
  publish,
  type StoredEventJson,
  sleep,
  startTestServer,
  type TestServer,
} from '../helpers.ts'

interface Page {
  events: StoredEventJson[]
  next: number
}

async function page(url: string, path: string, headers: Record<string, string> = {}): Promise<Page> {
  const response = await fetch(`${url}${path}`, { headers })
  assert.equal(response.status, 200, await response.clone().text())
  return (await response.json()) as Page
}

describe('read: short polling', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
    await publish(
      server.url,
      'feed',
      Array.from({ length: 250 }, (_, i) => ({ type: 'tick', data: i })),
    )
  })
  after(() => server.close())

  test('after and limit page through the topic; next is the last seq returned', async () => {
    const first = await page(server.url, '/v1/topics/feed/events')
    assert.equal(first.events.length, 100, 'the default limit is 100')
    assert.equal(first.events[0]!.seq, 1)
    assert.equal(first.next, 100)
    const second = await page(server.url, '/v1/topics/feed/events?after=100&limit=120')
    assert.deepEqual([second.events[0]!.seq, second.events.at(-1)!.seq, second.next], [101, 220, 220])
    const last = await page(server.url, '/v1/topics/feed/events?after=220&limit=1000')
    assert.equal(last.events.length, 30)
    const beyond = await page(server.url, '/v1/topics/feed/events?after=250')
    assert.deepEqual(beyond, { events: [], next: 250 }, 'no events: next is after')
  })

  test('an unknown topic is an empty page, not an error', async () => {
    assert.deepEqual(await page(server.url, '/v1/topics/never/published/events?after=0'), {
      events: [],
      next: 0,
    })
    // A cursor past its head (0) is signalled as one past any topic's head is (docs/api.md, Gaps).
    assert.deepEqual(await page(server.url, '/v1/topics/never/published/events?after=3'), {
      events: [],
      next: 0,
      gap: { after: 3, head_seq: 0, reason: 'ahead' },
    })
  })

  test('invalid after, limit and wait are 400 naming the parameter', async () => {
    for (const [query, field] of [
      ['after=-1', 'after'],
      ['after=abc', 'after'],
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['wait=61', 'wait'],
      ['wait=soon', 'wait'],
    ]) {
      const problem = await problemOf(await fetch(`${server.url}/v1/topics/feed/events?${query}`), 400)
      assert.equal(problem.field, field, query)
    }
  })

  test('topic metadata with WebSub discovery links, and the topic list', async () => {
    const response = await fetch(`${server.url}/v1/topics/feed`)
    assert.equal(response.status, 200)
    const info = (await response.json()) as Record<string, unknown>
    assert.equal(info['topic'], 'feed')
    assert.equal(info['head_seq'], 250)
    assert.equal(info['events'], 250)
    const link = response.headers.get('link')!
    assert.match(link, /<http:\/\/127\.0\.0\.1:\d+\/websub>; rel="hub"/)
    assert.match(link, /<http:\/\/127\.0\.0\.1:\d+\/v1\/topics\/feed>; rel="self"/)
    const unknown = (await (await fetch(`${server.url}/v1/topics/nothing-yet`)).json()) as Record<
      string,
      unknown
    >
    assert.deepEqual([unknown['head_seq'], unknown['events']], [0, 0])
    const list = (await (await fetch(`${server.url}/v1/topics`)).json()) as {
      topics: Array<{ topic: string }>
    }
    assert.deepEqual(
      list.topics.map((t) => t.topic),
      ['feed'],
    )
  })

  test('PUT configures a topic retention; bad retention is 400', async () => {
    const response = await fetch(`${server.url}/v1/topics/configured`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retention: { max_age: '2h', max_events: 50 } }),
    })
    assert.equal(response.status, 200)
    const info = (await response.json()) as { retention: unknown }
    assert.deepEqual(info.retention, { max_age_ms: 7_200_000, max_events: 50 })
    const bad = await fetch(`${server.url}/v1/topics/configured`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retention: { max_events: -1 } }),
    })
    assert.equal((await problemOf(bad, 400)).field, 'retention.max_events')
  })

  test("herald.* topics' settings are Herald's: PUT is 403 and changes nothing", async () => {
    for (const topic of ['herald.system', 'herald.websub/abc']) {
      const response = await fetch(`${server.url}/v1/topics/${topic}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ retention: { max_events: 1 } }),
      })
      const problem = await problemOf(response, 403)
      assert.equal(problem.field, 'topic', topic)
      const info = (await (await fetch(`${server.url}/v1/topics/${topic}`)).json()) as { retention: unknown }
      assert.deepEqual(info.retention, { max_age_ms: null, max_events: null }, topic)
    }
  })

  test('retention.max_age is at most 100 years (36500d); longer is 400 naming it, and nothing changes', async () => {
    const put = (maxAge: unknown) =>
      fetch(`${server.url}/v1/topics/aged`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ retention: { max_age: maxAge } }),
      })
    const longest = await put('36500d')
    assert.equal(longest.status, 200)
    const info = (await longest.json()) as { retention: { max_age_ms: number } }
    assert.equal(info.retention.max_age_ms, 36_500 * 86_400_000)
    for (const maxAge of ['99999999999999d', '36501d', `${'9'.repeat(400)}ms`, `1${' '.repeat(100_000)}s`]) {
      const problem = await problemOf(await put(maxAge), 400)
      assert.equal(problem.field, 'retention.max_age', maxAge.slice(0, 20))
      assert.ok(problem.detail.length < 300, 'the detail does not echo a long value whole')
    }
    assert.match((await problemOf(await put('99999999999999d'), 400)).detail, /36500d/)
    const after = (await (await fetch(`${server.url}/v1/topics/aged`)).json()) as { retention: unknown }
    assert.deepEqual(after.retention, { max_age_ms: 36_500 * 86_400_000, max_events: null })
  })
})

describe('read: long polling', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  test('a held request is answered by the next publish, long before its wait ends', async () => {
    const started = Date.now()
    const held = page(server.url, '/v1/topics/lp/events?after=0&wait=30')
    await sleep(200)
    assert.equal((server.herald.log.bus as LocalBus).size, 1, 'the request is held')
    await publish(server.url, 'lp', { type: 'wake', data: 1 })
    const result = await held
    assert.deepEqual(
      result.events.map((e) => [e.seq, e.type]),
      [[1, 'wake']],
    )
    assert.equal(result.next, 1)
    // Woken by the publish, not by the 30 s timeout.
    assert.ok(Date.now() - started < 10_000)
  })

  test('Prefer: wait= holds the request too', async () => {
    const held = page(server.url, '/v1/topics/lp/events?after=1', { prefer: 'wait=20' })
    await sleep(100)
    await publish(server.url, 'lp', { type: 'second' })
    assert.deepEqual(
      (await held).events.map((e) => e.seq),
      [2],
    )
  })

  test('with events already after the cursor, it answers at once', async () => {
    const result = await page(server.url, '/v1/topics/lp/events?after=0&wait=30')
    assert.equal(result.events.length, 2)
  })

  test('nothing arrives: answered empty when the wait ends, with next = after', async () => {
    const started = Date.now()
    const result = await page(server.url, '/v1/topics/quiet/events?after=0&wait=1')
    const elapsed = Date.now() - started
    assert.deepEqual(result, { events: [], next: 0 })
    assert.ok(elapsed >= 950, `held for the wait (${elapsed} ms)`)
  })

  test('a client that leaves releases its hold', async () => {
    const controller = new AbortController()
    const held = fetch(`${server.url}/v1/topics/gone/events?wait=30`, { signal: controller.signal })
    await sleep(100)
    const bus = server.herald.log.bus as LocalBus
    assert.equal(bus.size, 1)
    controller.abort()
    await assert.rejects(held)
    for (let i = 0; i < 50 && bus.size > 0; i++) await sleep(20)
    assert.equal(bus.size, 0)
  })

  test('many held requests on one topic are all answered by one publish', async () => {
    const held = Array.from({ length: 50 }, () => page(server.url, '/v1/topics/crowd/events?wait=30'))
    await sleep(200)
    await publish(server.url, 'crowd', { type: 'all' })
    const pages = await Promise.all(held)
    assert.ok(pages.every((p) => p.events.length === 1 && p.events[0]!.type === 'all'))
  })
})

test('retention runs in the background and prunes the oldest events of a topic', async () => {
  const server = await startTestServer({ pruneIntervalMs: 100 })
  try {
    await fetch(`${server.url}/v1/topics/short`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ retention: { max_events: 2 } }),
    })
    await publish(server.url, 'short', [
      { type: 'a' },
      { type: 'b' },
      { type: 'c' },
      { type: 'd' },
      { type: 'e' },
    ])
    let info = { first_seq: 0, events: 0 }
    for (let i = 0; i < 50 && info.events !== 2; i++) {
      await sleep(50)
      info = (await (await fetch(`${server.url}/v1/topics/short`)).json()) as typeof info
    }
    assert.deepEqual([info.first_seq, info.events], [4, 2])
    const read = await page(server.url, '/v1/topics/short/events?after=0')
    assert.deepEqual(
      read.events.map((e) => e.type),
      ['d', 'e'],
    )
    await problemOf(await fetch(`${server.url}/v1/topics/short/events/1`), 404)
  } finally {
    await server.close()
  }
})
