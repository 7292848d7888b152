import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { type EventInput, prepareEvent } from '../../src/core/event.ts'
import type { AttemptResult, ClaimedRun, ClaimRequest, HookRecord, Store } from '../../src/store/store.ts'
import { type StoreHarness, storeTest } from './contract.ts'

const T0 = Date.parse('2026-11-23T08:00:00Z')
const LEASE = 10_000
const OK: AttemptResult = { at: T0, duration_ms: 1, status: 200, error: null, response: 'ok' }
const FAIL: AttemptResult = { at: T0, duration_ms: 1, status: 500, error: null, response: 'no' }

function hook(id: string, fields: Partial<HookRecord> = {}): HookRecord {
  return {
    id,
    kind: 'webhook',
    target_url: `http://receiver.test/${id}`,
    topic: 'orders',
    topic_url: null,
    lease_seconds: null,
    expires_at: null,
    event: null,
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    previous_secret: null,
    previous_secret_until: null,
    ordered: true,
    max_in_flight: 10,
    rate_limit: null,
    state: 'active',
    disabled_reason: null,
    failing_since: null,
    description: null,
    filter: null,
    created_at: T0,
    updated_at: T0,
    ...fields,
  }
}

async function append(store: Store, topic: string, now: number, ...inputs: EventInput[]) {
  const events = inputs.map((input) => prepareEvent(topic, input, new Date(now)))
  return store.append(topic, events, { now })
}

function claim(store: Store, now: number, fields: Partial<ClaimRequest> = {}) {
  return store.claimDeliveries({
    owner: 'A',
    now,
    leaseMs: LEASE,
    runLength: 32,
    limit: 100,
    ...fields,
  })
}

/** A settlement: `lease` is the token of the claim whose runs it settles. */
const settle = (
  store: Store,
  now: number,
  fields: Partial<Parameters<Store['settleDeliveries']>[0]> & { lease: string },
) =>
  store.settleDeliveries({
    now,
    outcomes: [],
    released: [],
    advanced: [],
    disableAfterMs: 86_400_000,
    ...fields,
  })

/** The webhook delivery queue every Store backend must keep (see HookStore and QueueStore in src/store/store.ts). */
export function deliveryContract(
  name: string,
  open: () => Promise<StoreHarness>,
  options: { skip?: string | false } = {},
): void {
  describe(`Delivery queue contract: ${name}`, { skip: options.skip ?? false }, () => {
    const withStore = storeTest(open)

    withStore(
      'an append creates one delivery per matching hook, in the same transaction',
      async ({ store }) => {
        await store.createHook(hook('h-topic'))
        await store.createHook(hook('h-pattern', { topic: null, event: 'order.*' }))
        await store.createHook(hook('h-other', { topic: 'invoices' }))
        await store.createHook(hook('h-paused', { state: 'paused' }))
        await store.createHook(hook('h-disabled', { state: 'disabled' }))
        const result = await append(
          store,
          'orders',
          T0,
          { type: 'order.created' },
          { type: 'refund.created' },
        )
        // h-topic: 2, h-pattern: 1 (order.* only), h-paused: 2 (paused hooks queue), others none.
        assert.equal(result.deliveries, 5)
        const repeat = await store.append('orders', [], { now: T0 })
        assert.equal(repeat.deliveries, 0)
        assert.deepEqual(await store.deliveryCounts(), { pending: 5, delivered: 0, failed: 0 })
      },
    )

    withStore(
      "a hook's filter is stored, changed and cleared, and only the events it matches get deliveries",
      async ({ store }) => {
        const gold = '{"exact":{"data.tier":"gold"}}'
        await store.createHook(hook('h-gold', { filter: gold }))
        await store.createHook(
          hook('h-pattern', { topic: null, event: 'order.*', filter: '{"prefix":{"subject":"eu"}}' }),
        )
        await store.createHook(hook('h-all'))
        assert.equal((await store.hook('h-gold'))!.filter, gold)
        const result = await append(
          store,
          'orders',
          T0,
          { type: 'order.created', subject: 'eu-1', data: { tier: 'gold' } },
          { type: 'order.created', subject: 'us-1', data: { tier: 'silver' } },
          { type: 'refund.created', subject: 'eu-2', data: { tier: 'gold' } },
        )
        // h-gold: 1 and 3; h-pattern: 1 (order.* and subject eu…); h-all: 3.
        assert.equal(result.deliveries, 6)
        const updated = await store.updateHook('h-gold', { filter: null }, T0 + 1)
        assert.equal(updated!.filter, null)
        await store.updateHook('h-all', { filter: '{"not":{"exact":{"type":"order.created"}}}' }, T0 + 1)
        const more = await append(store, 'orders', T0 + 2, { type: 'order.created', data: { tier: 'x' } })
        // h-gold (no filter now): 1; h-pattern: no subject, no delivery; h-all: not order.created.
        assert.equal(more.deliveries, 1)
        // A replay applies the filter too: of seqs 1-4, h-all's filter takes refund.created (3) only,
        // still pending from the append: nothing is queued (without the filter, 4 would be).
        assert.deepEqual(
          await store.replay('h-all', { topic: 'orders', afterSeq: 0, limit: 100, now: T0 + 3 }),
          { queued: 0 },
        )
        await store.updateHook('h-all', { filter: '{"exact":{"data.tier":"x"}}' }, T0 + 3)
        assert.deepEqual(
          await store.replay('h-all', { topic: 'orders', afterSeq: 0, limit: 100, now: T0 + 4 }),
          { queued: 1 },
        )
      },
    )

    withStore(
      'an ordered queue is claimed as one run, in seq order, leased to one owner',
      async ({ store }) => {
        await store.createHook(hook('h'))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const runs = await claim(store, T0)
        assert.equal(runs.length, 1)
        assert.deepEqual(
          runs[0]!.deliveries.map((d) => [d.seq, d.attempts, JSON.parse(d.body!).type]),
          [
            [1, 0, 'a'],
            [2, 0, 'b'],
            [3, 0, 'c'],
          ],
        )
        assert.deepEqual(await claim(store, T0 + 1, { owner: 'B' }), [], 'leased: nobody else gets it')
        // The owner died: after the lease, once the leader's recovery has released it, another
        // dispatcher gets the whole queue again, from its head. A claim alone does not look.
        assert.deepEqual(await claim(store, T0 + LEASE + 1, { owner: 'B' }), [], 'not recovered yet')
        assert.deepEqual(
          await store.recoverDeliveries(T0 + LEASE),
          { released: 0, stalled: 0 },
          'not run out',
        )
        assert.deepEqual(await store.recoverDeliveries(T0 + LEASE + 1), { released: 3, stalled: 0 })
        const again = await claim(store, T0 + LEASE + 1, { owner: 'B' })
        assert.deepEqual(
          again[0]!.deliveries.map((d) => d.seq),
          [1, 2, 3],
        )
      },
    )

    withStore('settling: delivered, then a retry holds the queue until it is due', async ({ store }) => {
      await store.createHook(hook('h'))
      await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
      const [run] = await claim(store, T0)
      const [d1, d2, d3] = run!.deliveries
      await settle(store, T0 + 1, {
        lease: run!.lease,
        outcomes: [
          { id: d1!.id, hookId: 'h', attempt: OK, result: 'delivered' },
          { id: d2!.id, hookId: 'h', attempt: FAIL, result: 'retry', dueAt: T0 + 5_000 },
        ],
        released: [d3!.id],
        advanced: [{ hookId: 'h', topic: 'orders' }],
      })
      assert.deepEqual(await claim(store, T0 + 2), [], 'seq 3 waits behind the retry of seq 2')
      assert.equal(await store.nextDueAt(), T0 + 5_000)
      const [retry] = await claim(store, T0 + 5_000)
      assert.deepEqual(
        retry!.deliveries.map((d) => [d.seq, d.attempts]),
        [
          [2, 1],
          [3, 0],
        ],
      )
      const attempts = await store.attempts('h', { limit: 10 })
      assert.deepEqual(
        attempts.map((a) => [a.seq, a.attempt, a.status]),
        [
          [2, 1, 500],
          [1, 1, 200],
        ],
      )
      assert.equal((await store.hook('h'))!.failing_since, T0 + 1)
    })

    withStore('a run that ends makes the next delivery of its queue due', async ({ store }) => {
      await store.createHook(hook('h'))
      await append(store, 'orders', T0, { type: 'a' })
      const [run] = await claim(store, T0)
      // Published while the run is out: it must wait for it.
      await append(store, 'orders', T0 + 1, { type: 'b' })
      assert.deepEqual(await claim(store, T0 + 1), [])
      await settle(store, T0 + 2, {
        lease: run!.lease,
        outcomes: [{ id: run!.deliveries[0]!.id, hookId: 'h', attempt: OK, result: 'delivered' }],
        advanced: [{ hookId: 'h', topic: 'orders' }],
      })
      const [next] = await claim(store, T0 + 3)
      assert.deepEqual(
        next!.deliveries.map((d) => d.seq),
        [2],
      )
    })

    withStore(
      'unordered hooks: every delivery is due at once, up to the limit of runs asked for',
      async ({ store }) => {
        await store.createHook(hook('u', { ordered: false }))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const runs = await claim(store, T0, { limit: 2 })
        assert.deepEqual(
          runs.map((r) => r.deliveries.length),
          [1, 1],
        )
        assert.equal((await claim(store, T0, { owner: 'B' })).length, 1)
      },
    )

    withStore(
      'max_in_flight holds across owners: two owners get at most that many runs of a hook until one settles',
      async ({ store }) => {
        await store.createHook(hook('u', { ordered: false, max_in_flight: 2 }))
        await store.createHook(hook('o', { topic: null, event: 'o.*', max_in_flight: 2 }))
        await append(store, 'orders', T0, ...Array.from({ length: 5 }, () => ({ type: 'u' })))
        for (const topic of ['x', 'y', 'z']) await append(store, topic, T0, { type: 'o.a' }, { type: 'o.b' })
        const runsOf = (runs: ClaimedRun[], id: string) => runs.filter((r) => r.hook.id === id)
        const a = await claim(store, T0)
        const b = await claim(store, T0 + 1, { owner: 'B' })
        assert.equal(runsOf(a, 'u').length + runsOf(b, 'u').length, 2, 'unordered: one run per delivery')
        assert.equal(runsOf(a, 'o').length + runsOf(b, 'o').length, 2, 'ordered: one run per queue')
        assert.deepEqual(
          runsOf(a, 'o').map((r) => r.deliveries.length),
          [2, 2],
          'a run of two deliveries counts once',
        )
        assert.deepEqual(await claim(store, T0 + 2, { owner: 'B' }), [], 'full, for A as for B')
        assert.deepEqual(await claim(store, T0 + 2), [])
        // An extension continues a run: it is not another one.
        const [run] = runsOf(a, 'o')
        const extended = await store.extendRun({
          owner: 'A',
          lease: run!.lease,
          now: T0 + 3,
          leaseMs: LEASE,
          hookId: 'o',
          topic: run!.deliveries[0]!.topic,
          afterSeq: 2,
          runLength: 10,
        })
        assert.deepEqual(extended?.deliveries, [])
        // One run of each settles: B gets one more of each, and no more.
        const [u] = runsOf(a, 'u')
        await settle(store, T0 + 4, {
          lease: u!.lease,
          outcomes: [
            { id: u!.deliveries[0]!.id, hookId: 'u', attempt: OK, result: 'delivered' },
            ...run!.deliveries.map((d) => ({
              id: d.id,
              hookId: 'o',
              attempt: OK,
              result: 'delivered' as const,
            })),
          ],
          advanced: [{ hookId: 'o', topic: run!.deliveries[0]!.topic }],
        })
        const more = await claim(store, T0 + 5, { owner: 'B' })
        assert.deepEqual(more.map((r) => r.hook.id).sort(), ['o', 'u'])
        assert.deepEqual(await claim(store, T0 + 6), [])
        // Leases that ran out hold nothing (once recovered): the hooks' runs are claimed again.
        await store.recoverDeliveries(T0 + LEASE + 10)
        const later = await claim(store, T0 + LEASE + 10, { owner: 'C' })
        assert.equal(runsOf(later, 'u').length, 2)
        assert.equal(runsOf(later, 'o').length, 2)
      },
    )

    withStore(
      "a rate limit cuts runs to its bucket's whole tokens, one bucket per hook for every owner",
      async ({ store }) => {
        await store.createHook(hook('o', { rate_limit: 2.7 }))
        await store.createHook(hook('u', { ordered: false, rate_limit: 3 }))
        await store.createHook(hook('free', { topic: 'x' }))
        await append(store, 'orders', T0, ...Array.from({ length: 6 }, () => ({ type: 'a' })))
        await append(store, 'x', T0, { type: 'a' }, { type: 'b' })
        const sizes = (runs: ClaimedRun[], id: string) =>
          runs.filter((r) => r.hook.id === id).map((r) => r.deliveries.length)
        // A bucket starts full: one second's worth.
        const runs = await claim(store, T0)
        assert.deepEqual(
          sizes(runs, 'o'),
          [2],
          'an ordered run holds what the bucket allows, whole tokens only',
        )
        assert.deepEqual(sizes(runs, 'u'), [1, 1, 1], 'unordered: one run per token')
        assert.deepEqual(sizes(runs, 'free'), [2])
        // No whole token left: nothing more of u, for this owner or another.
        assert.deepEqual(await claim(store, T0 + 1, { owner: 'B' }), [])
        assert.deepEqual(await claim(store, T0 + 300), [], '0.9 tokens')
        // Refilled at 3/s: a whole token a third of a second later.
        assert.deepEqual(sizes(await claim(store, T0 + 334, { owner: 'B' }), 'u'), [1])
        // Long after (the leases ran out and were recovered): the buckets are full again, no fuller.
        await store.recoverDeliveries(T0 + LEASE + 1)
        const rest = await claim(store, T0 + LEASE + 1, { owner: 'C' })
        assert.deepEqual(sizes(rest, 'u'), [1, 1, 1], 'the unordered hook: 5 to send, 3 tokens')
        assert.deepEqual(sizes(rest, 'o'), [2])
      },
    )

    withStore(
      'a rate limit is one budget whoever claims: two owners claiming in a loop get the rate, not twice it',
      async ({ store }) => {
        await store.createHook(hook('r', { ordered: false, rate_limit: 10, max_in_flight: 1000 }))
        await append(store, 'orders', store.now(), ...Array.from({ length: 100 }, () => ({ type: 'a' })))
        let taken = 0
        const started = performance.now()
        const claimer = async (owner: string) => {
          while (performance.now() - started < 1_500) {
            for (const run of await claim(store, store.now(), { owner })) taken += run.deliveries.length
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
        }
        await Promise.all([claimer('A'), claimer('B')])
        const seconds = (performance.now() - started) / 1000
        // A full bucket (10) and 10 a second after it; a bucket per owner would allow twice that.
        assert.ok(taken <= 10 + seconds * 10 + 1, `${taken} deliveries in ${seconds.toFixed(2)} s at 10/s`)
        assert.ok(
          taken >= 10 + (seconds - 0.3) * 10,
          `${taken} deliveries in ${seconds.toFixed(2)} s at 10/s`,
        )
      },
    )

    withStore(
      '410 deletes the hook and its queue; failures past disableAfter disable it',
      async ({ store }) => {
        await store.createHook(hook('gone'))
        await store.createHook(hook('flaky', { topic: 'x' }))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' })
        await append(store, 'x', T0, { type: 'a' })
        const runs = await claim(store, T0)
        const gone = runs.find((r) => r.hook.id === 'gone')!
        const flaky = runs.find((r) => r.hook.id === 'flaky')!
        const result = await settle(store, T0 + 1, {
          lease: gone.lease,
          outcomes: [
            { id: gone.deliveries[0]!.id, hookId: 'gone', attempt: FAIL, result: 'gone' },
            { id: flaky.deliveries[0]!.id, hookId: 'flaky', attempt: FAIL, result: 'retry', dueAt: T0 + 10 },
          ],
          released: [gone.deliveries[1]!.id],
        })
        assert.deepEqual(
          result.removed.map((h) => h.id),
          ['gone'],
        )
        assert.equal(await store.hook('gone'), undefined)
        assert.deepEqual(await store.deliveryCounts(), { pending: 1, delivered: 0, failed: 0 })
        const [again] = await claim(store, T0 + 10)
        const later = await settle(store, T0 + 2_000, {
          lease: again!.lease,
          outcomes: [{ id: again!.deliveries[0]!.id, hookId: 'flaky', attempt: FAIL, result: 'failed' }],
          disableAfterMs: 1_000,
        })
        assert.deepEqual(
          later.disabled.map((h) => [h.id, h.state]),
          [['flaky', 'disabled']],
        )
        assert.equal(
          (await append(store, 'x', T0, { type: 'a' })).deliveries,
          0,
          'a disabled hook queues nothing',
        )
      },
    )

    withStore('retry and replay queue deliveries again; everything survives a restart', async (harness) => {
      let store = harness.store
      await store.createHook(hook('h', { ordered: false }))
      await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
      const runs = await claim(store, T0)
      await settle(store, T0 + 1, {
        lease: runs[0]!.lease,
        outcomes: runs.map((r) => ({
          id: r.deliveries[0]!.id,
          hookId: 'h',
          attempt: OK,
          result: 'delivered' as const,
        })),
      })
      assert.deepEqual(await store.deliveryCounts(), { pending: 0, delivered: 3, failed: 0 })
      store = await harness.reopen()
      const retried = await store.retryDelivery('h', runs[0]!.deliveries[0]!.id, T0 + 2)
      assert.equal(retried!.state, 'pending')
      assert.equal(await store.retryDelivery('h', 999_999, T0), undefined)
      assert.deepEqual(await store.replay('h', { topic: 'orders', afterSeq: 1, limit: 100, now: T0 + 2 }), {
        queued: 2,
      })
      const due = await claim(store, T0 + 3)
      assert.deepEqual(due.map((r) => r.deliveries[0]!.seq).sort(), [1, 2, 3])
      assert.deepEqual(await store.replay('h', { topic: 'nope', afterSeq: 0, limit: 100, now: T0 }), {
        queued: 0,
      })
    })

    withStore(
      'deliveries across hooks: newest first, narrowed by state, hook, topic, time; paged',
      async ({ store }) => {
        await store.createHook(hook('h1', { ordered: false }))
        await store.createHook(hook('h2', { ordered: false, topic: null, event: '*' }))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' })
        await append(store, 'invoices', T0, { type: 'c' })
        // h1: orders 1, 2; h2: orders 1, 2 and invoices 1. Fail h2's first orders delivery at T0 + 5.
        const runs = await claim(store, T0)
        const h2First = runs.find(
          (r) => r.hook.id === 'h2' && r.deliveries.some((d) => d.seq === 1 && d.topic === 'orders'),
        )!
        await settle(store, T0 + 5, {
          lease: h2First.lease,
          outcomes: [
            {
              id: h2First.deliveries.find((d) => d.seq === 1 && d.topic === 'orders')!.id,
              hookId: 'h2',
              attempt: FAIL,
              result: 'failed' as const,
            },
          ],
        })
        const all = await store.listDeliveries({ limit: 100 })
        assert.equal(all.length, 5)
        assert.deepEqual(
          all.map((d) => d.id),
          [...all.map((d) => d.id)].sort((a, b) => b - a),
          'newest first',
        )
        const failed = await store.listDeliveries({ state: 'failed', limit: 100 })
        assert.deepEqual(
          failed.map((d) => [d.hook_id, d.topic, d.seq, d.state]),
          [['h2', 'orders', 1, 'failed']],
        )
        assert.equal((await store.listDeliveries({ hookId: 'h1', limit: 100 })).length, 2)
        assert.equal((await store.listDeliveries({ topic: 'invoices', limit: 100 })).length, 1)
        assert.equal((await store.listDeliveries({ since: T0 + 5, limit: 100 })).length, 1, 'changed since')
        assert.equal((await store.listDeliveries({ until: T0 + 5, limit: 100 })).length, 4, 'changed before')
        const page = await store.listDeliveries({ limit: 2 })
        const rest = await store.listDeliveries({ beforeId: page.at(-1)!.id, limit: 100 })
        assert.deepEqual(
          [...page, ...rest].map((d) => d.id),
          all.map((d) => d.id),
        )
        assert.deepEqual(await store.listDeliveries({ hookId: 'nope', limit: 10 }), [])
      },
    )

    withStore(
      'ordered: a retry or a replay never runs beside the queue; replay counts what it queued',
      async ({ store }) => {
        await store.createHook(hook('h'))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const [run] = await claim(store, T0)
        const [d1, d2, d3] = run!.deliveries
        await settle(store, T0 + 1, {
          lease: run!.lease,
          outcomes: [
            { id: d1!.id, hookId: 'h', attempt: OK, result: 'delivered' },
            { id: d2!.id, hookId: 'h', attempt: FAIL, result: 'retry', dueAt: T0 + 5_000 },
          ],
          released: [d3!.id],
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        // Seq 2 waits for its retry: re-queuing seq 1 must not start a second run of this queue.
        const retried = await store.retryDelivery('h', d1!.id, T0 + 2)
        assert.deepEqual([retried!.state, retried!.due_at], ['pending', null])
        const pending = await store.retryDelivery('h', d2!.id, T0 + 2)
        assert.equal(pending!.due_at, T0 + 5_000, 'a pending delivery is left as it is')
        assert.deepEqual(await claim(store, T0 + 3), [])
        assert.deepEqual(await store.replay('h', { topic: 'orders', afterSeq: 0, limit: 100, now: T0 + 3 }), {
          queued: 0,
        })
        const [retryRun] = await claim(store, T0 + 5_000)
        assert.deepEqual(
          retryRun!.deliveries.map((d) => d.seq),
          [2, 3],
        )
        assert.deepEqual(await claim(store, T0 + 5_001, { owner: 'B' }), [], 'one run per queue at a time')
        await settle(store, T0 + 5_002, {
          lease: retryRun!.lease,
          outcomes: retryRun!.deliveries.map((d) => ({
            id: d.id,
            hookId: 'h',
            attempt: OK,
            result: 'delivered' as const,
          })),
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        const [last] = await claim(store, T0 + 5_003)
        assert.deepEqual(
          last!.deliveries.map((d) => d.seq),
          [1],
        )
      },
    )

    withStore('a run in flight is extended with the rest of its queue, once', async ({ store }) => {
      await store.createHook(hook('h'))
      await store.createHook(hook('u', { ordered: false }))
      await append(store, 'orders', T0, ...Array.from({ length: 5 }, () => ({ type: 'a' })))
      const [run] = (await claim(store, T0, { runLength: 2 })).filter((r) => r.hook.id === 'h')
      assert.deepEqual(
        run!.deliveries.map((d) => d.seq),
        [1, 2],
      )
      const extend = (fields: Partial<Parameters<Store['extendRun']>[0]> = {}) =>
        store.extendRun({
          owner: 'A',
          lease: run!.lease,
          now: T0 + 1,
          leaseMs: LEASE,
          hookId: 'h',
          topic: 'orders',
          afterSeq: 2,
          runLength: 2,
          ...fields,
        })
      const more = await extend()
      assert.equal(more!.hook.id, 'h')
      assert.deepEqual(
        more!.deliveries.map((d) => d.seq),
        [3, 4],
      )
      assert.ok(more!.deliveries.every((d) => d.body !== null && d.attempts === 0))
      // Leased: asking again from the same place finds only what no one holds.
      assert.deepEqual(
        (await extend({ owner: 'B' }))!.deliveries.map((d) => d.seq),
        [5],
      )
      assert.deepEqual((await extend({ afterSeq: 5 }))!.deliveries, [], 'nothing follows yet')
      assert.deepEqual(await claim(store, T0 + 2, { owner: 'C' }), [], 'the queue is still one run')
      // Not for an unordered hook, a paused one, an unknown topic or hook.
      assert.equal(await extend({ hookId: 'u' }), undefined)
      assert.equal(await extend({ topic: 'nope' }), undefined)
      assert.equal(await extend({ hookId: 'nope' }), undefined)
      await store.updateHook('h', { state: 'paused' }, T0 + 3)
      assert.equal(await extend({ afterSeq: 0 }), undefined)
    })

    withStore(
      'a stale lease token settles nothing: a run whose lease ran out and was claimed again',
      async ({ store }) => {
        await store.createHook(hook('h'))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const [stale] = await claim(store, T0)
        // A paused past its lease: B claims the queue again, from its head.
        await store.recoverDeliveries(T0 + LEASE + 1)
        const [fresh] = await claim(store, T0 + LEASE + 1, { owner: 'B', runLength: 2 })
        assert.notEqual(fresh!.lease, stale!.lease)
        const [d1, d2, d3] = stale!.deliveries
        const result = await settle(store, T0 + LEASE + 2, {
          lease: stale!.lease,
          outcomes: [
            { id: d1!.id, hookId: 'h', attempt: OK, result: 'delivered' },
            { id: d2!.id, hookId: 'h', attempt: FAIL, result: 'retry', dueAt: T0 + LEASE + 3 },
            { id: d3!.id, hookId: 'h', attempt: FAIL, result: 'gone' },
          ],
          released: [d1!.id, d2!.id],
          carry: d3!.id,
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        assert.deepEqual(result, { failing: [], disabled: [], removed: [] })
        assert.deepEqual(await store.attempts('h', { limit: 10 }), [], 'no attempt logged')
        const h = (await store.hook('h'))!
        assert.deepEqual([h.state, h.failing_since], ['active', null], 'not removed, no failing streak')
        assert.deepEqual(
          [(await store.delivery('h', d1!.id))!.state, (await store.delivery('h', d1!.id))!.attempts],
          ['pending', 0],
        )
        assert.equal((await store.delivery('h', d3!.id))!.due_at, null, 'no carry on a row not held')
        assert.deepEqual(await claim(store, T0 + LEASE + 4, { owner: 'C' }), [], "B's run is still B's")
        // An extension under the stale token claims nothing, not even what no one holds (seq 3).
        const extension = await store.extendRun({
          owner: 'A',
          lease: stale!.lease,
          now: T0 + LEASE + 4,
          leaseMs: LEASE,
          hookId: 'h',
          topic: 'orders',
          afterSeq: 2,
          runLength: 10,
        })
        assert.deepEqual(extension?.deliveries, [])
        const extended = await store.extendRun({
          owner: 'B',
          lease: fresh!.lease,
          now: T0 + LEASE + 4,
          leaseMs: LEASE,
          hookId: 'h',
          topic: 'orders',
          afterSeq: 2,
          runLength: 10,
        })
        assert.deepEqual(
          extended!.deliveries.map((d) => d.seq),
          [3],
        )
        assert.equal(extended!.lease, fresh!.lease, "an extension is leased under the run's token")
        // The holder's own settlement works.
        await settle(store, T0 + LEASE + 5, {
          lease: fresh!.lease,
          outcomes: [...fresh!.deliveries, ...extended!.deliveries].map((d) => ({
            id: d.id,
            hookId: 'h',
            attempt: OK,
            result: 'delivered' as const,
          })),
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        assert.deepEqual(await store.deliveryCounts(), { pending: 0, delivered: 3, failed: 0 })
        assert.deepEqual(
          (await store.attempts('h', { limit: 10 })).map((a) => [a.seq, a.attempt]),
          [
            [3, 1],
            [2, 1],
            [1, 1],
          ],
        )
      },
    )

    // The nodes' side (NodeStore) keeps its own clock (the database's, on PostgreSQL): these tests claim
    // at the real time, well within the lease, so that no lease runs out of itself.

    withStore(
      'a node that joins after a crash makes the leased deliveries claimable at once',
      async (harness) => {
        const now = Date.now()
        await harness.store.joinCluster('node-a')
        await harness.store.createHook(hook('h'))
        await harness.store.createHook(hook('u', { ordered: false }))
        await append(harness.store, 'orders', now, { type: 'a' }, { type: 'b' })
        assert.equal((await claim(harness.store, now, { owner: 'node-a' })).length, 3)
        // node-a is killed: its leases are still in the store, with most of their time to run.
        const store = await harness.reopen()
        assert.deepEqual(await claim(store, now + 1, { owner: 'node-b' }), [], 'still leased')
        await store.joinCluster('node-b')
        const runs = await claim(store, Date.now() + 1_000, { owner: 'node-b' })
        assert.deepEqual(runs.map((r) => [r.hook.id, r.deliveries.map((d) => d.seq)]).sort(), [
          ['h', [1, 2]],
          ['u', [1]],
          ['u', [2]],
        ])
        assert.ok((await store.nodes()).some((node) => node.id === 'node-b'))
      },
    )

    withStore(
      'a node that leaves releases its leases: its ordered queue moves on at once',
      async ({ store }) => {
        const now = Date.now()
        await store.joinCluster('node-a')
        await store.joinCluster('node-b')
        await store.createHook(hook('h'))
        await store.createHook(hook('x', { topic: 'x' }))
        await append(store, 'orders', now, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const [run] = await claim(store, now, { owner: 'node-a' })
        await append(store, 'x', now, { type: 'a' })
        const [other] = await claim(store, now, { owner: 'node-b' })
        // Seq 1 settled without a carry (as a crash between two commits could leave it): seq 2 and 3
        // are leased with nothing of the queue due.
        await settle(store, now + 1, {
          lease: run!.lease,
          outcomes: [{ id: run!.deliveries[0]!.id, hookId: 'h', attempt: OK, result: 'delivered' }],
        })
        await store.leaveCluster('node-a')
        assert.deepEqual(
          (await store.nodes()).map((node) => node.id),
          ['node-b'],
        )
        const runs = await claim(store, Date.now() + 1_000, { owner: 'node-c' })
        assert.deepEqual(
          runs.map((r) => [r.hook.id, r.deliveries.map((d) => d.seq)]),
          [['h', [2, 3]]],
          "the queue's head is due again; node-b's run is still node-b's",
        )
        assert.equal(other!.hook.id, 'x')
      },
    )

    withStore(
      "a heartbeat rescues the leases of a node whose heartbeat is stale; that node's settlement then changes nothing",
      async ({ store }) => {
        const now = Date.now()
        assert.equal(await store.heartbeat('node-a', 10_000), 0)
        await store.createHook(hook('h'))
        await append(store, 'orders', now, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const [stale] = await claim(store, now, { owner: 'node-a' })
        assert.deepEqual(
          (await store.nodes()).map((node) => node.id),
          ['node-a'],
        )
        assert.equal(await store.heartbeat('node-b', 10_000), 0, 'node-a is not stale yet')
        await new Promise((resolve) => setTimeout(resolve, 50))
        // node-a is paused (SIGSTOP) past the threshold: node-b's heartbeat finds it stale.
        assert.equal(await store.heartbeat('node-b', 20), 3)
        assert.deepEqual(
          (await store.nodes()).map((node) => node.id),
          ['node-b'],
        )
        const [fresh] = await claim(store, Date.now() + 1_000, { owner: 'node-b' })
        assert.deepEqual(
          fresh!.deliveries.map((d) => d.seq),
          [1, 2, 3],
        )
        // node-a wakes up and settles what it sent: nothing of it applies.
        const outcomes = (run: typeof stale) =>
          run!.deliveries.map((d) => ({ id: d.id, hookId: 'h', attempt: OK, result: 'delivered' as const }))
        await settle(store, Date.now(), {
          lease: stale!.lease,
          outcomes: outcomes(stale),
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        assert.deepEqual(await store.attempts('h', { limit: 10 }), [])
        assert.deepEqual(await store.deliveryCounts(), { pending: 3, delivered: 0, failed: 0 })
        await settle(store, Date.now(), {
          lease: fresh!.lease,
          outcomes: outcomes(fresh),
          advanced: [{ hookId: 'h', topic: 'orders' }],
        })
        assert.equal((await store.attempts('h', { limit: 10 })).length, 3)
        assert.deepEqual(await store.deliveryCounts(), { pending: 0, delivered: 3, failed: 0 })
      },
    )

    withStore('a run in flight keeps its queue busy after settling part of it (carry)', async ({ store }) => {
      await store.createHook(hook('h'))
      await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
      const [run] = await claim(store, T0)
      const [d1, d2, d3] = run!.deliveries
      await settle(store, T0 + 1, {
        lease: run!.lease,
        outcomes: [{ id: d1!.id, hookId: 'h', attempt: OK, result: 'delivered' }],
        carry: d2!.id,
      })
      // A replay while the run is out: seq 1 is queued again, but must wait for the run.
      assert.deepEqual(await store.replay('h', { topic: 'orders', afterSeq: 0, limit: 10, now: T0 + 2 }), {
        queued: 1,
      })
      assert.deepEqual(await claim(store, T0 + 3, { owner: 'B' }), [])
      await settle(store, T0 + 4, {
        lease: run!.lease,
        outcomes: [d2!, d3!].map((d) => ({
          id: d.id,
          hookId: 'h',
          attempt: OK,
          result: 'delivered' as const,
        })),
        advanced: [{ hookId: 'h', topic: 'orders' }],
      })
      const [next] = await claim(store, T0 + 5, { owner: 'B' })
      assert.deepEqual(
        next!.deliveries.map((d) => d.seq),
        [1],
      )
    })

    withStore('a queue left with nothing due or leased is found and made due again', async ({ store }) => {
      await store.createHook(hook('h'))
      await append(store, 'orders', T0, { type: 'a' }, { type: 'b' })
      const [run] = await claim(store, T0)
      await append(store, 'orders', T0 + 1, { type: 'c' }) // queued behind the run: due_at NULL
      // The run's outcomes settled without the advance that should come with them (as a crash
      // between two commits could leave it): seq 3 has nothing in front of it and is not due.
      await settle(store, T0 + 2, {
        lease: run!.lease,
        outcomes: run!.deliveries.map((d) => ({
          id: d.id,
          hookId: 'h',
          attempt: OK,
          result: 'delivered' as const,
        })),
      })
      assert.deepEqual(await claim(store, T0 + 3), [])
      assert.deepEqual(await claim(store, T0 + 60_000), [], 'a claim does not look for it')
      // The leader's periodic recovery finds the stalled queue.
      assert.deepEqual(await store.recoverDeliveries(T0 + 60_000), { released: 0, stalled: 1 })
      const later = await claim(store, T0 + 60_000)
      assert.deepEqual(
        later[0]?.deliveries.map((d) => d.seq),
        [3],
      )
    })

    withStore(
      'a failure followed by a success in one settlement leaves the hook not failing',
      async ({ store }) => {
        await store.createHook(hook('u', { ordered: false }))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' })
        const runs = await claim(store, T0)
        const result = await settle(store, T0 + 1, {
          lease: runs[0]!.lease,
          outcomes: [
            { id: runs[0]!.deliveries[0]!.id, hookId: 'u', attempt: FAIL, result: 'retry', dueAt: T0 + 100 },
            { id: runs[1]!.deliveries[0]!.id, hookId: 'u', attempt: OK, result: 'delivered' },
          ],
        })
        assert.deepEqual(result.failing, [])
        assert.equal((await store.hook('u'))!.failing_since, null)
        const again = await claim(store, T0 + 100)
        const failed = await settle(store, T0 + 101, {
          lease: again[0]!.lease,
          outcomes: [
            { id: again[0]!.deliveries[0]!.id, hookId: 'u', attempt: FAIL, result: 'retry', dueAt: T0 + 200 },
          ],
        })
        assert.deepEqual(
          failed.failing.map((h) => h.id),
          ['u'],
        )
      },
    )

    withStore('switching ordered leaves no delivery stranded', async ({ store }) => {
      await store.createHook(hook('h'))
      await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
      await store.updateHook('h', { ordered: false }, T0 + 1)
      const runs = await claim(store, T0 + 2)
      assert.deepEqual(runs.map((r) => r.deliveries[0]!.seq).sort(), [1, 2, 3], 'unordered: all due')
      await settle(store, T0 + 3, { lease: runs[0]!.lease, released: runs.map((r) => r.deliveries[0]!.id) })
      await store.updateHook('h', { ordered: true }, T0 + 4)
      const [run] = await claim(store, T0 + 5)
      assert.deepEqual(
        run!.deliveries.map((d) => d.seq),
        [1, 2, 3],
        'ordered again: one run from the oldest',
      )
    })

    withStore(
      'prune removes settled deliveries (and their attempts) past the maximum age, no others',
      async ({ store }) => {
        await store.createHook(hook('h', { ordered: false }))
        await append(store, 'orders', T0, { type: 'a' }, { type: 'b' }, { type: 'c' })
        const runs = await claim(store, T0)
        await settle(store, T0 + 1, {
          lease: runs[0]!.lease,
          outcomes: runs.slice(0, 2).map((r) => ({
            id: r.deliveries[0]!.id,
            hookId: 'h',
            attempt: OK,
            result: 'delivered' as const,
          })),
          released: [runs[2]!.deliveries[0]!.id],
        })
        const week = 7 * 86_400_000
        const early = await store.prune(T0 + week, { maxAgeMs: week, maxEvents: null }, 86_400_000)
        assert.equal(early.deliveries, 0, 'not old enough yet')
        const result = await store.prune(T0 + week + 10, { maxAgeMs: week, maxEvents: null }, 86_400_000)
        assert.equal(result.deliveries, 2)
        assert.deepEqual(await store.deliveryCounts(), { pending: 1, delivered: 0, failed: 0 })
        assert.deepEqual(await store.attempts('h', { limit: 10 }), [], 'their attempts went with them')
      },
    )

    withStore(
      'WebSub verifications: recorded with a lease, done in order per topic and callback, taken over when their node is gone, finished under their token only',
      async (harness) => {
        let store = harness.store
        const now = Date.now()
        await store.joinCluster('node-a')
        await store.joinCluster('node-b')
        const lease = (owner: string, token: string, until = now + LEASE) => ({ owner, token, until })
        const request = (mode: 'subscribe' | 'unsubscribe', callback: string) => ({
          mode,
          topic_url: 'https://example.test/feed',
          callback,
          lease_seconds: mode === 'subscribe' ? 3600 : null,
          secret: mode === 'subscribe' ? 'a secret' : null,
          requested_at: now,
        })
        const one = await store.recordVerification(
          request('subscribe', 'https://sub.test/1'),
          lease('node-a', 't1'),
        )
        const two = await store.recordVerification(
          request('unsubscribe', 'https://sub.test/1'),
          lease('node-b', 't2'),
        )
        const other = await store.recordVerification(
          request('subscribe', 'https://sub.test/2'),
          lease('node-b', 't3'),
        )
        // Held by live nodes: no one takes them over.
        assert.deepEqual(await store.claimVerifications({ lease: lease('node-b', 'x'), now, limit: 10 }), [])
        // The second waits for the first (same topic and callback): it is let go, not done.
        assert.equal(await store.startVerification(two, lease('node-b', 't2')), undefined)
        assert.equal(await store.startVerification(one, lease('node-a', 'wrong')), undefined, 'not its token')
        const started = await store.startVerification(one, lease('node-a', 't1'))
        assert.deepEqual(
          [started?.mode, started?.callback, started?.lease_seconds, started?.secret],
          ['subscribe', 'https://sub.test/1', 3600, 'a secret'],
        )
        const listed = await store.verifications({ limit: 10 })
        assert.deepEqual(
          listed.map((v) => [v.id, v.state]),
          [
            [other, 'pending'],
            [two, 'pending'],
            [one, 'pending'],
          ],
        )
        assert.ok(
          listed.every((v) => !('secret' in v) && !('lease_token' in v)),
          'the admin view has no secret and no lease',
        )
        // node-a dies mid-verification (it leaves no trace but its row: it is gone from the nodes).
        store = await harness.reopen()
        await store.heartbeat('node-b', 0)
        const takenOver = await store.claimVerifications({ lease: lease('node-b', 't4'), now, limit: 10 })
        assert.deepEqual(
          takenOver.map((v) => [v.id, v.secret]),
          [[one, 'a secret']],
          'the first, not the second (it waits for the first), nor the third (held by node-b)',
        )
        // node-a's late outcome changes nothing; node-b's stands, with the subscription.
        const subscription = hook('websub_1', {
          kind: 'websub',
          target_url: 'https://sub.test/1',
          topic_url: 'https://example.test/feed',
          topic: 'herald.websub/feed',
          secret: 'a secret',
          lease_seconds: 3600,
          expires_at: now + 3_600_000,
        })
        const outcome = { id: one, state: 'verified' as const, error: null, now, subscription }
        assert.equal(await store.finishVerification({ ...outcome, token: 't1' }), false)
        assert.equal(
          await store.websubSubscription('https://example.test/feed', 'https://sub.test/1'),
          undefined,
        )
        assert.equal(await store.finishVerification({ ...outcome, token: 't4' }), true)
        assert.equal(await store.finishVerification({ ...outcome, token: 't4' }), false, 'once')
        const created = await store.websubSubscription('https://example.test/feed', 'https://sub.test/1')
        assert.equal(created?.secret, 'a secret')
        // The first is done: the second (let go) is taken by whoever looks, and its unsubscribe applies.
        const [next] = await store.claimVerifications({ lease: lease('node-b', 't5'), now, limit: 10 })
        assert.equal(next?.id, two)
        assert.deepEqual(await store.startVerification(two, lease('node-b', 't5')), next)
        assert.equal(
          await store.finishVerification({
            id: two,
            token: 't5',
            state: 'verified',
            error: null,
            now,
            unsubscribe: true,
          }),
          true,
        )
        assert.equal(
          await store.websubSubscription('https://example.test/feed', 'https://sub.test/1'),
          undefined,
        )
        // A lease that ran out is taken over too, and a former process's under this node's id.
        assert.deepEqual(await store.claimVerifications({ lease: lease('node-c', 't6'), now, limit: 10 }), [])
        const expired = await store.claimVerifications({
          lease: lease('node-c', 't6'),
          now: now + LEASE + 1,
          limit: 10,
        })
        assert.deepEqual(
          expired.map((v) => v.id),
          [other],
        )
        const former = await store.claimVerifications({
          lease: lease('node-c', 't7'),
          now,
          limit: 10,
          formerSelf: 'node-c',
        })
        assert.deepEqual(
          former.map((v) => v.id),
          [other],
        )
        assert.equal(
          await store.finishVerification({ id: other, token: 't7', state: 'failed', error: 'no', now }),
          true,
        )
        assert.deepEqual(
          (await store.verifications({ limit: 10 })).map((v) => [v.id, v.state, v.error]),
          [
            [other, 'failed', 'no'],
            [two, 'verified', null],
            [one, 'verified', null],
          ],
        )
      },
    )

    withStore('hooks: create, update, list in id order, delete', async ({ store }) => {
      await store.createHook(hook('b'))
      await store.createHook(hook('a', { topic: null, event: 'x.*' }))
      assert.deepEqual(
        (await store.hooks({ limit: 10 })).map((h) => h.id),
        ['a', 'b'],
      )
      assert.deepEqual(
        (await store.hooks({ after: 'a', limit: 10 })).map((h) => h.id),
        ['b'],
      )
      const updated = await store.updateHook('a', { event: 'y.*', ordered: false }, T0 + 5)
      assert.deepEqual([updated!.event, updated!.ordered, updated!.updated_at], ['y.*', false, T0 + 5])
      assert.equal(
        (await append(store, 'any', T0, { type: 'y.z' })).deliveries,
        1,
        'the new pattern is indexed',
      )
      assert.equal(await store.updateHook('missing', {}, T0), undefined)
      assert.equal(await store.deleteHook('a'), true)
      assert.equal(await store.deleteHook('a'), false)
    })
  })
}
