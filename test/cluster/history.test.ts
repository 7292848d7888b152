import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type EventRef, History } from './history.ts'

/** The checker itself: it must catch each kind of loss, duplicate and disorder it claims to. */

function store(topics: Record<string, number>): (topic: string) => Promise<EventRef[]> {
  return async (topic) =>
    Array.from({ length: topics[topic] ?? 0 }, (_, i) => ({ topic, seq: i + 1, id: `${topic}-${i + 1}` }))
}

const ref = (topic: string, seq: number, id = `${topic}-${seq}`): EventRef => ({ topic, seq, id })

function acknowledged(history: History, topic: string, count: number): void {
  for (let seq = 1; seq <= count; seq++) history.acknowledge(ref(topic, seq))
}

test('a clean history passes, and its report counts what was seen', async () => {
  const history = new History()
  acknowledged(history, 'a', 5)
  const client = history.client('c1', { a: 2 })
  client.connected('n1')
  client.receive(ref('a', 3))
  client.connected('n2')
  client.receive(ref('a', 4))
  client.receive(ref('a', 5))
  const hook = history.hook('h', ['a'], { ordered: true })
  for (const seq of [1, 2, 3, 4, 5]) hook.receive(ref('a', seq))
  const report = await history.check({ read: store({ a: 5 }), complete: true, strictStore: true })
  assert.deepEqual(report.problems, [])
  assert.equal(report.acknowledged, 5)
  assert.equal(report.received, 3)
  assert.equal(report.reconnections, 1)
  assert.deepEqual(report.hooks, [{ name: 'h', received: 5, duplicates: 0, restarts: 0 }])
  assert.equal(client.cursor('a'), 5)
})

test('the store: a missing acknowledged event, another id at its seq, an event stored twice, a gap', async () => {
  const history = new History()
  acknowledged(history, 'a', 4)
  const report = await history.evaluate({
    read: async () => [ref('a', 1), ref('a', 2, 'other'), ref('a', 4), ref('a', 5, 'a-1')],
  })
  assert.deepEqual(report.problems, [
    'store a: seq 4 at position 3 (a gap or a repeat)',
    'store a: event a-1 stored 2 times',
    'store a: seq 2 is other, acknowledged as a-2',
    'store a: acknowledged seq 3 (a-3) is missing',
  ])
  // An event stored that no publish acknowledged: counted, a problem only when asked.
  const strict = new History()
  acknowledged(strict, 'a', 1)
  const loose = await strict.evaluate({ read: store({ a: 2 }) })
  assert.equal(loose.unacknowledged, 1)
  assert.deepEqual(loose.problems, [])
  const tight = await strict.evaluate({ read: store({ a: 2 }), strictStore: true })
  assert.match(tight.problems[0]!, /1 stored events were never acknowledged/)
})

test('two acknowledgements of one seq with different ids are a problem', async () => {
  const history = new History()
  history.acknowledge(ref('a', 1))
  history.acknowledge(ref('a', 1, 'else'))
  const report = await history.evaluate({ read: store({ a: 1 }) })
  assert.match(report.problems[0]!, /seq 1 acknowledged as a-1 and as else/)
})

test('a client: a gap, a duplicate, a start past its cursor, a wrong event, falling short of the head', async () => {
  const cases: Array<[number, EventRef[], RegExp]> = [
    [0, [ref('a', 1), ref('a', 3)], /got seq 3 where 2 was due \(a gap/],
    [0, [ref('a', 1), ref('a', 2), ref('a', 3), ref('a', 3)], /got seq 3 where 4 was due \(a duplicate/],
    [1, [ref('a', 3)], /got seq 3 where 2 was due/],
    [0, [ref('a', 1, 'forged'), ref('a', 2), ref('a', 3)], /seq 1 was forged, the store has a-1/],
    [0, [ref('a', 1), ref('a', 2)], /reached 2 of 3/],
  ]
  for (const [from, events, expected] of cases) {
    const history = new History()
    acknowledged(history, 'a', 3)
    const client = history.client('c', { a: from })
    for (const event of events) client.receive(event)
    const report = await history.evaluate({ read: store({ a: 3 }), complete: true })
    assert.equal(report.problems.length, 1, JSON.stringify(report.problems))
    assert.match(report.problems[0]!, expected)
  }
})

test('a multi-topic client is checked per topic', async () => {
  const history = new History()
  acknowledged(history, 'a', 2)
  acknowledged(history, 'b', 2)
  const client = history.client('m', { a: 0, b: 1 })
  client.receive(ref('b', 2))
  client.receive(ref('a', 1))
  client.receive(ref('a', 2))
  assert.deepEqual(await history.check({ read: store({ a: 2, b: 2 }), complete: true }), {
    topics: 2,
    acknowledged: 4,
    unacknowledged: 0,
    clients: 1,
    received: 3,
    reconnections: 0,
    hooks: [],
    problems: [],
  })
  assert.throws(() => client.receive(ref('c', 1)), /not its topic/)
})

test('an ordered hook: out of order, missing, resent (allowed only after a lost lease)', async () => {
  const run = async (seqs: number[], allowed = false) => {
    const history = new History()
    acknowledged(history, 'a', 4)
    const hook = history.hook('h', ['a'], { ordered: true })
    for (const seq of seqs) hook.receive(ref('a', seq))
    return history.evaluate({ read: store({ a: 4 }), resendsAllowed: allowed ? ['h'] : [] })
  }
  assert.match((await run([1, 3, 2, 4])).problems[0]!, /seq 3 arrived before 2 \(out of order\)/)
  assert.match((await run([1, 2, 3])).problems[0]!, /1 events never delivered \(first: seq 4\)/)
  // A run resent from 2 after a lease was lost: 2 and 3 twice, then on.
  const resent = [1, 2, 3, 2, 3, 4]
  assert.match((await run(resent)).problems[0]!, /2 deliveries received twice, and no lease was lost/)
  const report = await run(resent, true)
  assert.deepEqual(report.problems, [])
  assert.deepEqual(report.hooks, [{ name: 'h', received: 6, duplicates: 2, restarts: 1 }])
  // A resend that skips ahead past what was delivered is still out of order.
  assert.match((await run([1, 2, 1, 4, 3], true)).problems[0]!, /seq 4 arrived before 3/)
})

test('an unordered hook: any order, every event', async () => {
  const history = new History()
  acknowledged(history, 'a', 3)
  const hook = history.hook('u', ['a'], { ordered: false })
  for (const seq of [3, 1, 2]) hook.receive(ref('a', seq))
  assert.deepEqual((await history.check({ read: store({ a: 3 }) })).problems, [])
})

test('the longest pause of a hook target per topic, from a given time', () => {
  const history = new History()
  const hook = history.hook('h', ['a', 'b'], { ordered: true })
  hook.receive(ref('a', 1), 100)
  hook.receive(ref('b', 1), 150)
  hook.receive(ref('a', 2), 1_000)
  hook.receive(ref('b', 2), 1_100)
  hook.receive(ref('a', 3), 1_200)
  assert.equal(hook.longestPause('a', 0), 900)
  assert.equal(hook.longestPause('a', 900), 200)
  assert.equal(hook.longestPause('b', 0), 950)
  assert.equal(hook.longestPause('c', 0), 0)
})
