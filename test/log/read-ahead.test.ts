import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { LocalBus } from '../../src/bus/local.ts'
import { parseFilter } from '../../src/core/filter.ts'
import { ReadAhead } from '../../src/log/read-ahead.ts'
import { type Page, TopicLog } from '../../src/log/topic-log.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import type { EventStore } from '../../src/store/store.ts'
import { MemoryStore } from './memory-store.ts'

/** Short polls paging through a backlog: the page after a full one is read ahead (src/log/read-ahead.ts). */

const turn = () => new Promise((resolve) => setImmediate(resolve))
const seqs = (page: Page) => page.events.map((event) => event.seq)

function logOf(store: MemoryStore): TopicLog {
  return new TopicLog(store as unknown as EventStore, new LocalBus(), createMetrics())
}

describe('polls read ahead', () => {
  test('after a full page, the next is read once the answer is out, and the poll for it is answered from it', async () => {
    const store = new MemoryStore(10)
    const log = logOf(store)
    const pages: number[][] = []
    let after = 0
    while (after < 10) {
      const page = await log.readPage('t', after, 3)
      pages.push(seqs(page))
      after = page.next
      // Read ahead in a later turn, not before the answer:
      assert.equal(store.reads.at(-1), page.events.length === 3 ? page.events[0]!.seq - 1 : 9)
      await turn()
    }
    assert.deepEqual(pages, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]])
    // Each page read once: the first by its poll, the others ahead; none after the short last page.
    assert.deepEqual(store.reads, [0, 3, 6, 9])
  })

  test('a poll that comes before the read ahead ran waits for it rather than reading again', async () => {
    const store = new MemoryStore(10)
    const log = logOf(store)
    const first = await log.readPage('t', 0, 5)
    const second = await log.readPage('t', first.next, 5)
    assert.deepEqual(seqs(second), [6, 7, 8, 9, 10])
    assert.deepEqual(store.reads, [0, 5])
  })

  test('a page read ahead is served within its age (what a read returned then), and not past it', async () => {
    const ahead = new ReadAhead({ maxAgeMs: 20 })
    const store = new MemoryStore(10)
    let reads = 0
    const read = async (): Promise<Page> => {
      reads++
      const events = await store.read('t', 3, 3)
      return { events, next: events.at(-1)!.seq, gap: undefined }
    }
    ahead.schedule('t', 3, 3, 100, read)
    await turn()
    assert.equal(reads, 1)
    await new Promise((resolve) => setTimeout(resolve, 60))
    assert.equal(ahead.take('t', 3, 3), undefined, 'expired')
    // Through TopicLog: retention removed 4 to 6 after the page was read ahead; the poll is told.
    const log = logOf(store)
    await log.readPage('t', 0, 3)
    await turn()
    store.events = store.events.filter((event) => event.seq > 6)
    const next = await log.readPage('t', 3, 3)
    assert.deepEqual(seqs(next), [4, 5, 6], 'within the age: what a read returned just before')
  })

  test('a failed read ahead is read again by the poll; filtered polls and pages after a gap are not read ahead', async () => {
    const store = new MemoryStore(10)
    const log = logOf(store)
    await log.readPage('t', 0, 3)
    store.failNext = true
    await turn()
    assert.deepEqual(seqs(await log.readPage('t', 3, 3)), [4, 5, 6])
    assert.deepEqual(store.reads, [0, 3, 3])

    const filtered = new MemoryStore(10)
    const filteredLog = logOf(filtered)
    const filter = parseFilter({ exact: { type: 'tick' } })
    await filteredLog.readPage('t', 0, 3, filter)
    await turn()
    assert.deepEqual(filtered.reads, [0])

    const pruned = new MemoryStore(10)
    pruned.events = pruned.events.filter((event) => event.seq > 4)
    const prunedLog = logOf(pruned)
    const page = await prunedLog.readPage('t', 0, 3)
    assert.equal(page.gap?.reason, 'pruned')
    await turn()
    assert.deepEqual(pruned.reads, [0])
  })

  test('pages read ahead stay within the byte budget', async () => {
    const ahead = new ReadAhead({ maxBytes: 100 })
    const page = (bytes: number) => async (): Promise<Page> => ({
      events: [{ topic: 't', seq: 1, json: 'x'.repeat(bytes) }],
      next: 1,
      gap: undefined,
    })
    ahead.schedule('t', 0, 1, 60, page(60))
    ahead.schedule('t', 1, 1, 60, page(60)) // 120 > 100: not read
    ahead.schedule('t', 2, 1, 40, page(500)) // estimated within, larger when read: dropped
    await turn()
    await turn()
    assert.equal((await ahead.take('t', 0, 1))?.events[0]?.json.length, 60)
    assert.equal(ahead.take('t', 1, 1), undefined)
    assert.equal(ahead.take('t', 2, 1), undefined)
    // Taking a page frees its bytes.
    ahead.schedule('t', 3, 1, 100, page(100))
    await turn()
    assert.equal((await ahead.take('t', 3, 1))?.events[0]?.json.length, 100)
  })
})
