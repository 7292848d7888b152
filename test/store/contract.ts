import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { HeraldError } from '../../src/core/errors.ts'
import { type EventInput, prepareEvent } from '../../src/core/event.ts'
import type { Store } from '../../src/store/store.ts'

export interface StoreHarness {
  store: Store
  /** Closes the store and opens it again on the same data (a restart). */
  reopen(): Promise<Store>
  cleanup(): Promise<void>
}

const NO_RETENTION = { maxAgeMs: null, maxEvents: null }
const DAY = 86_400_000

/** A stored event's id: it is in its JSON (StoredEvent has no id of its own). */
function idOf(event: { json: string }): string {
  return (JSON.parse(event.json) as { id: string }).id
}

function events(topic: string, ...inputs: EventInput[]) {
  const now = new Date()
  return inputs.map((input) => prepareEvent(topic, input, now))
}

/** A test on a fresh store of the backend, cleaned up after it whatever happens. */
export function storeTest(open: () => Promise<StoreHarness>) {
  return (title: string, body: (h: StoreHarness) => Promise<void>) =>
    test(title, async () => {
      const harness = await open()
      try {
        await body(harness)
      } finally {
        await harness.cleanup()
      }
    })
}

/** The behaviour every Store backend must have; each backend's test file runs this suite. */
export function storeContract(
  name: string,
  open: () => Promise<StoreHarness>,
  options: { skip?: string | false } = {},
): void {
  describe(`Store contract: ${name}`, { skip: options.skip ?? false }, () => {
    const withStore = storeTest(open)

    withStore('assigns seq 1, 2, 3… per topic, independently for each topic', async ({ store }) => {
      const a1 = await store.append('a', events('a', { type: 't' }), { now: Date.now() })
      const a2 = await store.append('a', events('a', { type: 't' }, { type: 't' }), { now: Date.now() })
      const b1 = await store.append('b', events('b', { type: 't' }), { now: Date.now() })
      assert.deepEqual(
        [...a1.events, ...a2.events].map((e) => e.seq),
        [1, 2, 3],
      )
      assert.equal(a2.head, 3)
      assert.equal(a2.stored, 2)
      assert.equal(b1.events[0]!.seq, 1)
      const parsed = JSON.parse(a2.events[1]!.json)
      assert.equal(parsed.topic, 'a')
      assert.equal(parsed.seq, 3)
    })

    withStore(
      'keeps seq gapless under many concurrent appends, batches staying contiguous',
      async ({ store }) => {
        const appends = []
        for (let i = 0; i < 200; i++) {
          const size = (i % 3) + 1
          const inputs = Array.from({ length: size }, () => ({ type: `t${i}` }))
          appends.push(store.append('busy', events('busy', ...inputs), { now: Date.now() }))
        }
        const results = await Promise.all(appends)
        const seqs = results.flatMap((r) => r.events.map((e) => e.seq)).sort((x, y) => x - y)
        assert.deepEqual(
          seqs,
          Array.from({ length: seqs.length }, (_, i) => i + 1),
        )
        for (const result of results) {
          const own = result.events.map((e) => e.seq)
          for (let i = 1; i < own.length; i++) assert.equal(own[i], own[i - 1]! + 1, 'a batch is contiguous')
        }
        const read = await store.read('busy', 0, 1000)
        assert.equal(read.length, seqs.length)
        assert.equal((await store.topic('busy'))!.head_seq, seqs.length)
      },
    )

    withStore('an idempotency key returns the original events and stores nothing new', async ({ store }) => {
      const first = await store.append('k', events('k', { type: 't' }), {
        now: Date.now(),
        idempotencyKey: 'abc',
        requestHash: 'h1',
      })
      const again = await store.append('k', events('k', { type: 't' }), {
        now: Date.now(),
        idempotencyKey: 'abc',
        requestHash: 'h1',
      })
      assert.equal(again.stored, 0)
      assert.deepEqual(again.events, first.events)
      assert.equal((await store.read('k', 0, 10)).length, 1)
      await assert.rejects(
        store.append('k', events('k', { type: 'other' }), {
          now: Date.now(),
          idempotencyKey: 'abc',
          requestHash: 'h2',
        }),
        (error: unknown) => error instanceof HeraldError && error.code === 'idempotency-key-reused',
      )
      // Keys are per topic.
      const elsewhere = await store.append('k2', events('k2', { type: 't' }), {
        now: Date.now(),
        idempotencyKey: 'abc',
        requestHash: 'h2',
      })
      assert.equal(elsewhere.stored, 1)
    })

    withStore(
      'a client id already stored returns the stored event, also inside one batch',
      async ({ store }) => {
        const first = await store.append('ids', events('ids', { type: 't', id: 'e1' }), { now: Date.now() })
        const batch = await store.append(
          'ids',
          events('ids', { type: 't', id: 'e1' }, { type: 't', id: 'e2' }, { type: 't', id: 'e2' }),
          { now: Date.now() },
        )
        assert.equal(batch.stored, 1)
        assert.deepEqual(
          batch.events.map((e) => [idOf(e), e.seq]),
          [
            ['e1', 1],
            ['e2', 2],
            ['e2', 2],
          ],
        )
        assert.equal(batch.events[0]!.json, first.events[0]!.json)
        assert.equal((await store.topic('ids'))!.head_seq, 2)
      },
    )

    withStore(
      'a client id is a repeat only with the same source (CloudEvents: source + id), also inside one batch',
      async ({ store }) => {
        const now = Date.now()
        const first = await store.append('src', events('src', { type: 't', id: 'e1', source: 'urn:a' }), {
          now,
        })
        const others = await store.append(
          'src',
          events('src', { type: 't', id: 'e1', source: 'urn:b' }, { type: 't', id: 'e1' }),
          { now },
        )
        assert.equal(others.stored, 2, 'the same id from other sources is other events')
        assert.deepEqual(
          others.events.map((e) => [JSON.parse(e.json).source, e.seq]),
          [
            ['urn:b', 2],
            ['/v1/topics/src', 3],
          ],
        )
        const repeats = await store.append(
          'src',
          events(
            'src',
            { type: 't', id: 'e1', source: 'urn:b' },
            { type: 't', id: 'e1', source: 'urn:a' },
            { type: 't', id: 'e1', source: '/v1/topics/src' },
          ),
          { now },
        )
        assert.equal(repeats.stored, 0)
        assert.deepEqual(
          repeats.events.map((e) => e.json),
          [others.events[0]!.json, first.events[0]!.json, others.events[1]!.json],
        )
        const batch = await store.append(
          'src2',
          events(
            'src2',
            { type: 't', id: 'x', source: 's1' },
            { type: 't', id: 'x', source: 's2' },
            { type: 't', id: 'x', source: 's1' },
          ),
          { now },
        )
        assert.equal(batch.stored, 2)
        assert.deepEqual(
          batch.events.map((e) => e.seq),
          [1, 2, 1],
        )
        const generated = await store.append('src2', events('src2', { type: 't' }, { type: 't' }), { now })
        assert.equal(generated.stored, 2, 'events without a client id are never repeats')
        assert.equal((await store.topic('src'))!.head_seq, 3)
      },
    )

    withStore(
      'ids and data holding control characters (U+001E among them) are stored and read back as sent',
      async ({ store }) => {
        const now = Date.now()
        const odd = ['a\x1eb', 'line\nbreak', 'quote" and \\ backslash', '\x1e']
        // Appended together, so that they share a group commit with plain events.
        const results = await Promise.all([
          store.append('odd', events('odd', ...odd.map((id) => ({ type: 't', id, data: { id } }))), { now }),
          store.append('odd', events('odd', { type: 't', data: { text: 'x\x1ey\nz' } }), { now }),
          store.append('plain', events('plain', { type: 't' }, { type: 't' }), { now }),
        ])
        assert.deepEqual(
          results.map((result) => result.stored),
          [4, 1, 2],
        )
        const read = await store.read('odd', 0, 10)
        assert.equal(read.length, 5)
        const sent = [...results[0]!.events, ...results[1]!.events]
        for (const event of read) {
          const match = sent.find((each) => each.seq === event.seq)!
          assert.equal(event.json, match.json)
          assert.equal(idOf(event), idOf(match))
        }
        assert.deepEqual(
          results[0]!.events.map((event) => [idOf(event), JSON.parse(event.json).data.id]),
          odd.map((id) => [id, id]),
        )
        // A repeat of a client id holding U+001E is found.
        const repeat = await store.append('odd', events('odd', { type: 't', id: 'a\x1eb' }), { now })
        assert.equal(repeat.stored, 0)
        assert.equal((await store.read('plain', 0, 10)).length, 2)
      },
    )

    withStore('a failing append fails alone; the others committed with it are kept', async ({ store }) => {
      await store.append('mix', events('mix', { type: 't' }), {
        now: Date.now(),
        idempotencyKey: 'k',
        requestHash: 'x',
      })
      const results = await Promise.allSettled([
        store.append('mix', events('mix', { type: 'ok1' }), { now: Date.now() }),
        store.append('mix', events('mix', { type: 'bad' }), {
          now: Date.now(),
          idempotencyKey: 'k',
          requestHash: 'y',
        }),
        store.append('mix', events('mix', { type: 'ok2' }), { now: Date.now() }),
      ])
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'rejected', 'fulfilled'],
      )
      const read = await store.read('mix', 0, 10)
      assert.deepEqual(
        read.map((e) => [e.seq, JSON.parse(e.json).type]),
        [
          [1, 't'],
          [2, 'ok1'],
          [3, 'ok2'],
        ],
      )
    })

    withStore('reads after a seq, up to a limit; an unknown topic reads as empty', async ({ store }) => {
      const inputs = Array.from({ length: 10 }, (_, i) => ({ type: `t${i}` }))
      await store.append('r', events('r', ...inputs), { now: Date.now() })
      assert.deepEqual(
        (await store.read('r', 3, 4)).map((e) => e.seq),
        [4, 5, 6, 7],
      )
      assert.deepEqual(await store.read('r', 10, 5), [])
      assert.deepEqual(await store.read('nobody', 0, 5), [])
      assert.equal(await store.topic('nobody'), undefined)
    })

    withStore(
      'a read stops at its byte budget, after the event that reaches it, never before the first',
      async ({ store }) => {
        const inputs = Array.from({ length: 6 }, (_, i) => ({ type: `big${i}`, data: 'x'.repeat(1000) }))
        await store.append('bytes', events('bytes', ...inputs), { now: Date.now() })
        const size = (await store.read('bytes', 0, 1))[0]!.json.length
        assert.deepEqual(
          (await store.read('bytes', 0, 100, size * 2 + 1)).map((e) => e.seq),
          [1, 2, 3],
        )
        assert.deepEqual(
          (await store.read('bytes', 0, 100, size * 2)).map((e) => e.seq),
          [1, 2],
        )
        assert.deepEqual(
          (await store.read('bytes', 4, 100, 1)).map((e) => e.seq),
          [5],
        )
        assert.equal((await store.read('bytes', 0, 100)).length, 6, 'the default budget holds them all')
      },
    )

    withStore('reads the heads of many topics at once, leaving out unknown ones', async ({ store }) => {
      await store.append('h1', events('h1', { type: 't' }, { type: 't' }), { now: Date.now() })
      await store.append('h2', events('h2', { type: 't' }), { now: Date.now() })
      const heads = await store.heads(['h1', 'h2', 'unknown'])
      assert.deepEqual([...heads].sort(), [
        ['h1', 2],
        ['h2', 1],
      ])
      assert.equal((await store.heads([])).size, 0)
    })

    withStore('lists topics by name, paged', async ({ store }) => {
      for (const topic of ['c', 'a', 'b/x'])
        await store.append(topic, events(topic, { type: 't' }), { now: Date.now() })
      const page1 = await store.topics({ limit: 2 })
      assert.deepEqual(
        page1.map((t) => t.topic),
        ['a', 'b/x'],
      )
      const page2 = await store.topics({ after: 'b/x', limit: 2 })
      assert.deepEqual(
        page2.map((t) => t.topic),
        ['c'],
      )
      assert.equal(page2[0]!.head_seq, 1)
      assert.equal(page2[0]!.events, 1)
    })

    withStore('retention by count keeps the newest events, contiguous, head unchanged', async ({ store }) => {
      const inputs = Array.from({ length: 30 }, (_, i) => ({ type: `t${i}` }))
      await store.append('ret', events('ret', ...inputs), { now: Date.now() })
      await store.configureTopic('ret', { maxAgeMs: null, maxEvents: 10 }, 'any')
      const result = await store.prune(Date.now(), NO_RETENTION, DAY)
      assert.equal(result.events, 20)
      const info = (await store.topic('ret'))!
      assert.deepEqual([info.first_seq, info.head_seq, info.events], [21, 30, 10])
      assert.deepEqual(
        (await store.read('ret', 0, 100)).map((e) => e.seq),
        Array.from({ length: 10 }, (_, i) => i + 21),
      )
      const next = await store.append('ret', events('ret', { type: 'later' }), { now: Date.now() })
      assert.equal(next.events[0]!.seq, 31, 'seq is never reused after pruning')
    })

    withStore('retention by age removes what is older, using the server default', async ({ store }) => {
      const t0 = Date.now()
      await store.append('age', events('age', { type: 'old' }, { type: 'old' }), { now: t0 - 10_000 })
      await store.append('age', events('age', { type: 'new' }), { now: t0 })
      await store.append('kept', events('kept', { type: 'old' }), { now: t0 - 10_000 })
      await store.configureTopic('kept', { maxAgeMs: 60_000, maxEvents: null }, 'any')
      const result = await store.prune(t0, { maxAgeMs: 5_000, maxEvents: null }, DAY)
      assert.equal(result.events, 2)
      assert.deepEqual(
        (await store.read('age', 0, 10)).map((e) => JSON.parse(e.json).type),
        ['new'],
      )
      assert.equal((await store.read('kept', 0, 10)).length, 1, 'the topic setting overrides the default')
    })

    withStore('idempotency keys expire after their time to live', async ({ store }) => {
      const t0 = Date.now()
      await store.append('ttl', events('ttl', { type: 't' }), {
        now: t0 - 2 * DAY,
        idempotencyKey: 'old',
        requestHash: 'h',
      })
      const result = await store.prune(t0, NO_RETENTION, DAY)
      assert.equal(result.idempotencyKeys, 1)
      const again = await store.append('ttl', events('ttl', { type: 't' }), {
        now: t0,
        idempotencyKey: 'old',
        requestHash: 'h',
      })
      assert.equal(again.stored, 1)
    })

    withStore('what was appended is there after a restart', async (harness) => {
      await harness.store.append('p', events('p', { type: 't', data: { n: 1 } }), { now: Date.now() })
      const reopened = await harness.reopen()
      const read = await reopened.read('p', 0, 10)
      assert.equal(read.length, 1)
      assert.deepEqual(JSON.parse(read[0]!.json).data, { n: 1 })
      const next = await reopened.append('p', events('p', { type: 't' }), { now: Date.now() })
      assert.equal(next.events[0]!.seq, 2)
    })

    withStore(
      'API keys: created, read with their digest, listed without it, deleted; kept across a restart',
      async (harness) => {
        const { store } = harness
        const key = (id: string, expires: number | null) => ({
          id,
          name: `key ${id}`,
          secret_hash: Buffer.alloc(32, id),
          scopes: [{ actions: ['publish'], topics: ['orders/*', 'billing/**'] }],
          expires_at: expires,
          rate_limit: id === 'k2' ? { points: 10, seconds: 60 } : null,
          created_at: 1_800_000_000_000,
          created_by: 'root',
        })
        await store.createKey(key('k2', 1_900_000_000_000))
        await store.createKey(key('k1', null))
        await assert.rejects(store.createKey(key('k1', null)), 'an id is unique')
        assert.deepEqual(await store.key('k2'), key('k2', 1_900_000_000_000))
        assert.equal(await store.key('nope'), undefined)
        const listed = await store.keys({ limit: 10 })
        assert.deepEqual(
          listed.map((k) => k.id),
          ['k1', 'k2'],
        )
        assert.ok(
          listed.every((k) => !('secret_hash' in k)),
          'a listing never carries a digest',
        )
        assert.deepEqual(
          (await store.keys({ after: 'k1', limit: 10 })).map((k) => k.id),
          ['k2'],
        )
        assert.deepEqual((await store.keysById(['k2', 'gone', 'k1'])).map((k) => k.id).sort(), ['k1', 'k2'])
        assert.equal(await store.deleteKey('k1'), true)
        assert.equal(await store.deleteKey('k1'), false)
        const reopened = await harness.reopen()
        assert.deepEqual(await reopened.keysById(['k1', 'k2']), [key('k2', 1_900_000_000_000)])
      },
    )
  })
}
