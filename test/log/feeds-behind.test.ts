import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { test } from 'node:test'
import { LocalBus } from '../../src/bus/local.ts'
import { prepareEvent, type StoredEvent } from '../../src/core/event.ts'
import { Feeds } from '../../src/log/feeds.ts'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import { sleep, tempDir, until } from '../helpers.ts'

/**
 * A sink that is behind (an HTTP/2 stream waiting its turn on a shared connection) is handed no
 * live batch: its subscription leaves the live feed and, once the sink has drained, reads from its cursor.
 */
test('a sink behind at a live batch gets it, and what came meanwhile, from the store once drained', async () => {
  const dataDir = await tempDir('herald-feeds-')
  const store = new SqliteStore({ dataDir })
  const bus = new LocalBus()
  const append = async (count: number) => {
    const now = new Date()
    const events = Array.from({ length: count }, () => prepareEvent('t', { type: 'behind.test' }, now))
    const { head } = await store.append('t', events, { now: now.getTime() })
    bus.publish('t', head)
    return head
  }
  try {
    await append(5)
    let refusing = false
    let refused = 0
    let drain: () => void = () => {}
    const behind: number[] = []
    const steady: number[] = []
    const feeds = new Feeds(store, bus)
    const slow = feeds.subscribe('t', 0, {
      behind() {
        if (refusing) refused++
        return refusing
      },
      push(events: StoredEvent[]) {
        for (const event of events) behind.push(event.seq)
      },
      drained: () => (refusing ? new Promise<void>((resolve) => (drain = resolve)) : Promise.resolve()),
    })
    const other = feeds.subscribe('t', 0, { push: (events) => void steady.push(...events.map((e) => e.seq)) })
    await until('both caught up', () => (behind.length === 5 && steady.length === 5) || undefined)
    refusing = true
    await append(3) // 6–8: refused, live
    await until(
      'the live batch refused by one, taken by the other',
      () => (refused === 1 && steady.length === 8) || undefined,
    )
    await append(2) // 9–10: the subscription is out of the live feed; no second refusal
    await until('9–10 live to the other', () => steady.length === 10 || undefined)
    await sleep(50)
    assert.equal(refused, 1, 'out of the live feed after its refusal: it is not asked again')
    assert.deepEqual(behind, [1, 2, 3, 4, 5])
    refusing = false
    drain()
    await until('6–10 read from the store once drained', () => behind.length === 10 || undefined)
    await append(1) // 11: live again
    await until('11 live to both', () => (behind.length === 11 && steady.length === 11) || undefined)
    const all = Array.from({ length: 11 }, (_, i) => i + 1)
    assert.deepEqual(behind, all, 'every event once, in order')
    assert.deepEqual(steady, all, 'the other subscription was not held up')
    slow.close()
    other.close()
  } finally {
    await store.close()
    await rm(dataDir, { recursive: true, force: true })
  }
})
