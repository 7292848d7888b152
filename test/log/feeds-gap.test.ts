import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LocalBus } from '../../src/bus/local.ts'
import type { StoredEvent } from '../../src/core/event.ts'
import { Feeds, type Gap } from '../../src/log/feeds.ts'
import type { EventStore } from '../../src/store/store.ts'
import { MemoryStore } from './memory-store.ts'

/** Retention racing a subscription: events pruned between its pages, and before the Feed reads them. */

function collect() {
  const seen: Array<number | Gap> = []
  return {
    seen,
    sink: {
      push: (events: StoredEvent[]) => {
        for (const event of events) seen.push(event.seq)
      },
      gap: (gap: Gap) => seen.push(gap),
    },
  }
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5))
  assert.ok(check())
}

test('a page of catch-up that starts past the cursor (pruned between pages) is a gap', async () => {
  const store = new MemoryStore()
  store.append(10)
  let pages = 0
  store.beforeRead = () => {
    if (++pages === 2) store.pruneTo(7) // after the first page (1, 2), 3 to 6 go
  }
  const { seen, sink } = collect()
  const subscription = new Feeds(store as unknown as EventStore, new LocalBus()).subscribe('t', 0, sink, 2)
  await until(() => seen.at(-1) === 10)
  subscription.close()
  assert.deepEqual(seen, [1, 2, { topic: 't', after: 2, first_seq: 7, reason: 'pruned' }, 7, 8, 9, 10])
})

test('live: events pruned before the Feed read them are a gap, then delivery goes on', async () => {
  const store = new MemoryStore()
  store.append(2)
  const bus = new LocalBus()
  const { seen, sink } = collect()
  const subscription = new Feeds(store as unknown as EventStore, bus).subscribe('t', 2, sink)
  await new Promise((resolve) => setTimeout(resolve, 20)) // caught up and live
  store.append(5) // 3 to 7
  store.pruneTo(6) // retention ran before the Feed read them
  bus.publish('t', store.head())
  await until(() => seen.at(-1) === 7)
  store.append(1)
  bus.publish('t', store.head())
  await until(() => seen.at(-1) === 8)
  subscription.close()
  assert.deepEqual(seen, [{ topic: 't', after: 2, first_seq: 6, reason: 'pruned' }, 6, 7, 8])
})

test('no gap for a cursor at the head, at the floor, or at 0 on a topic never pruned', async () => {
  const store = new MemoryStore()
  store.append(3)
  for (const [after, expected] of [
    [3, []],
    [0, [1, 2, 3]],
  ] as const) {
    const { seen, sink } = collect()
    const subscription = new Feeds(store as unknown as EventStore, new LocalBus()).subscribe('t', after, sink)
    await new Promise((resolve) => setTimeout(resolve, 30))
    subscription.close()
    assert.deepEqual(seen, expected)
  }
  store.pruneTo(3)
  const { seen, sink } = collect()
  const subscription = new Feeds(store as unknown as EventStore, new LocalBus()).subscribe('t', 2, sink)
  await new Promise((resolve) => setTimeout(resolve, 30))
  subscription.close()
  assert.deepEqual(seen, [3])
})
