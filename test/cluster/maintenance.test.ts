import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { Leadership } from '../../src/cluster/leadership.ts'
import { MaintenanceService } from '../../src/cluster/maintenance.ts'
import { errors } from '../../src/core/errors.ts'
import { PostgresStore } from '../../src/store/postgres/postgres-store.ts'
import type { LeadershipClaim, MaintenanceStore, Store } from '../../src/store/store.ts'
import { sleep, until } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'

type FakeStore = MaintenanceStore & Pick<Store, 'prune' | 'now'>

/**
 * A store whose leadership the test decides: `holder` leads (null: no one), and `claim` may be
 * replaced to fail or hang. Every call is recorded with the time it was made.
 */
function fakeStore() {
  const calls: Array<{ call: string; node?: string; at: number }> = []
  const state = {
    holder: null as string | null,
    term: 1,
    claim: undefined as undefined | ((nodeId: string) => Promise<LeadershipClaim>),
    prune: async () => ({ events: 0, idempotencyKeys: 0, deliveries: 0 }),
  }
  const store: FakeStore = {
    now: () => Date.now(),
    async claimLeadership(nodeId) {
      calls.push({ call: 'claim', node: nodeId, at: performance.now() })
      if (state.claim) return state.claim(nodeId)
      state.holder ??= nodeId
      return { leader: state.holder, term: state.term, isMe: state.holder === nodeId }
    },
    async releaseLeadership(nodeId) {
      calls.push({ call: 'release', node: nodeId, at: performance.now() })
      if (state.holder === nodeId) {
        state.holder = null
        state.term++
      }
    },
    async recoverDeliveries() {
      calls.push({ call: 'recover', at: performance.now() })
      return { released: 0, stalled: 0 }
    },
    async prune() {
      calls.push({ call: 'prune', at: performance.now() })
      return state.prune()
    },
  }
  return { store, calls, state }
}

function capturingLogger() {
  const lines: Array<{ level: number; msg: string; term?: number; reason?: string }> = []
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  return { logger, lines }
}

function service(store: FakeStore, nodeId: string, logger = capturingLogger().logger, fields = {}) {
  return new MaintenanceService({
    store,
    nodeId,
    logger,
    retention: { maxAgeMs: null, maxEvents: null },
    idempotencyTtlMs: 86_400_000,
    pruneIntervalMs: 20,
    recoveryIntervalMs: 20,
    leadership: { leaseMs: 400, renewMs: 20, marginMs: 100 },
    ...fields,
  })
}

test('only the leader prunes and recovers; the other node only tries to take the leadership', async () => {
  const { store, calls } = fakeStore()
  const a = service(store, 'a')
  const b = service(store, 'b')
  await a.start()
  await b.start()
  try {
    assert.equal(a.isLeader(), true)
    assert.equal(b.isLeader(), false)
    await sleep(200)
  } finally {
    await b.stop()
    await a.stop()
  }
  const claims = (node: string) => calls.filter((c) => c.call === 'claim' && c.node === node).length
  assert.ok(claims('a') >= 3 && claims('b') >= 3, 'both keep claiming (a renews, b tries)')
  assert.ok(calls.filter((c) => c.call === 'prune').length >= 3)
  assert.ok(calls.filter((c) => c.call === 'recover').length >= 3)
  // Every prune and recovery was a's: b never led. a released at its stop, b had nothing to release.
  assert.deepEqual(
    calls.filter((c) => c.call === 'release').map((c) => c.node),
    ['a'],
  )
})

test('a node that becomes the leader recovers at once, then on its timer', async () => {
  const { store, calls, state } = fakeStore()
  state.holder = 'other'
  const { logger, lines } = capturingLogger()
  const node = service(store, 'me', logger, { recoveryIntervalMs: 60_000, pruneIntervalMs: 60_000 })
  await node.start()
  try {
    await sleep(60)
    assert.deepEqual(
      calls.filter((c) => c.call === 'recover'),
      [],
    )
    // The other leader stops: this node takes over at its next try and recovers at once.
    state.holder = null
    state.term = 2
    const takenAt = performance.now()
    await until('a recovery', () => calls.find((c) => c.call === 'recover'))
    const recovered = calls.find((c) => c.call === 'recover')!
    assert.ok(recovered.at - takenAt < 200, `recovered ${recovered.at - takenAt} ms after`)
    assert.ok(lines.some((line) => line.msg === 'this node is the leader' && line.term === 2))
  } finally {
    await node.stop()
  }
})

test('a leader whose renewals go unanswered stops acting before its lease could have ended', async () => {
  const { store, calls, state } = fakeStore()
  const { logger, lines } = capturingLogger()
  const node = service(store, 'me', logger)
  await node.start()
  try {
    assert.equal(node.isLeader(), true)
    await sleep(50)
    // The database stops answering: every claim from now on hangs.
    state.claim = () => new Promise(() => {})
    const lastAnswered = calls.filter((c) => c.call === 'claim').at(-1)!.at
    // The lease the store granted at the last answered claim ends 400 ms after it was sent, at the
    // earliest. The node must have stopped 100 ms (the margin) before.
    await until('the leadership to end', () => (node.isLeader() ? undefined : true), 2_000)
    const endedAt = performance.now()
    assert.ok(endedAt <= lastAnswered + 400, `acted until ${endedAt - lastAnswered} ms after the last claim`)
    const tasksAfter = calls.filter(
      (c) => (c.call === 'prune' || c.call === 'recover') && c.at > lastAnswered + 300,
    )
    assert.deepEqual(tasksAfter, [], 'no task started past the deadline')
    await until('the loss to be logged', () =>
      lines.find((line) => line.msg === 'this node is no longer the leader'),
    )
    assert.equal(
      calls.filter((c) => c.call === 'claim').length,
      calls.filter((c) => c.call === 'claim' && c.at <= lastAnswered).length + 1,
      'an unanswered claim is not sent again on top of itself',
    )
  } finally {
    state.claim = async () => ({ leader: null, term: 0, isMe: false })
    await Promise.race([node.stop(), sleep(100)])
  }
})

test('failing claims are warnings; the leadership runs out by itself and is taken again when they succeed', async () => {
  const { store, state } = fakeStore()
  const { logger, lines } = capturingLogger()
  const node = service(store, 'me', logger)
  await node.start()
  try {
    state.claim = async () => {
      throw errors.unavailable('The database cannot be reached at the moment.')
    }
    await until('the leadership to end', () => (node.isLeader() ? undefined : true), 2_000)
    assert.ok(lines.some((line) => line.level === 40 && line.msg === 'claiming the leadership failed'))
    state.claim = undefined
    await until('the leadership again', () => (node.isLeader() ? true : undefined), 2_000)
  } finally {
    await node.stop()
  }
  assert.ok(!lines.some((line) => line.level >= 50), 'no error logged')
})

test('a pruning pass that fails for want of the database is a warning, and the next one runs', async () => {
  const { store, calls, state } = fakeStore()
  let failures = 2
  state.prune = async () => {
    if (failures-- > 0) throw errors.unavailable('The database cannot be reached at the moment.')
    return { events: 3, idempotencyKeys: 0, deliveries: 0 }
  }
  const { logger, lines } = capturingLogger()
  const pruned: number[] = []
  const node = service(store, 'me', logger, { onPruned: (events: number) => pruned.push(events) })
  await node.start()
  try {
    await until('a pass to succeed', () => (pruned.includes(3) ? true : undefined))
  } finally {
    await node.stop()
  }
  assert.ok(calls.filter((c) => c.call === 'prune').length >= 3)
  assert.equal(lines.filter((line) => line.msg === 'retention pruning failed' && line.level === 40).length, 2)
  assert.ok(lines.some((line) => line.msg === 'retention pruned events'))
})

test('stop waits for a task under way, releases the leadership and runs nothing after', async () => {
  const { store, calls, state } = fakeStore()
  let finish: () => void = () => {}
  state.prune = () =>
    new Promise((resolve) => {
      finish = () => resolve({ events: 0, idempotencyKeys: 0, deliveries: 0 })
    })
  const node = service(store, 'me')
  await node.start()
  await until('a pruning pass', () => calls.find((c) => c.call === 'prune'))
  let stopped = false
  const stopping = node.stop().then(() => {
    stopped = true
  })
  await sleep(30)
  assert.equal(stopped, false, 'the pass under way is waited for')
  assert.equal(node.isLeader(), false, 'no longer acting as the leader from the start of the stop')
  finish()
  await stopping
  assert.equal(calls.at(-1)!.call, 'release')
  const count = calls.length
  await sleep(80)
  assert.equal(calls.length, count, 'nothing after the stop')
})

// ---- two nodes on one PostgreSQL schema -------------------------------------------------------------

const skip = await skipWithoutPostgres()

test('two nodes on PostgreSQL: never both leading, even while the leader cannot renew; the other takes over after the lease', {
  skip,
}, async () => {
  const schema = testSchema('lead')
  const open = () => PostgresStore.open({ url: TEST_DATABASE_URL, schema, maxConnections: 3 })
  const stores = [await open(), await open()]
  // Node a's claims can be held back (its database connection hangs, say); node b's always go.
  let holdA = false
  const held: Array<() => void> = []
  const gated = (
    store: PostgresStore,
    gate: () => boolean,
  ): MaintenanceStore & Pick<Store, 'prune' | 'now'> => ({
    now: () => store.now(),
    prune: (...args) => store.prune(...args),
    recoverDeliveries: (now) => store.recoverDeliveries(now),
    releaseLeadership: (nodeId) => store.releaseLeadership(nodeId),
    claimLeadership: async (nodeId, leaseMs) => {
      if (gate()) await new Promise<void>((resolve) => held.push(resolve))
      return store.claimLeadership(nodeId, leaseMs)
    },
  })
  const { logger } = capturingLogger()
  const timings = { leaseMs: 800, renewMs: 50, marginMs: 200 }
  const a = service(
    gated(stores[0]!, () => holdA),
    'node-a',
    logger,
    { leadership: timings },
  )
  const b = service(
    gated(stores[1]!, () => false),
    'node-b',
    logger,
    { leadership: timings },
  )
  let both = 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      if (a.isLeader() && b.isLeader()) both++
      await sleep(2)
    }
  })()
  try {
    await a.start()
    await b.start()
    assert.deepEqual([a.isLeader(), b.isLeader()], [true, false])
    await sleep(300)
    assert.deepEqual([a.isLeader(), b.isLeader()], [true, false], 'renewed')
    holdA = true
    const heldAt = performance.now()
    await until('node b to lead', () => (b.isLeader() ? true : undefined), 5_000)
    const tookOver = performance.now() - heldAt
    // a's last claim went out at most 50 ms before the hold; its lease ran 800 ms from then.
    assert.ok(tookOver >= 700, `b led ${tookOver} ms after a stopped renewing`)
    assert.equal(a.isLeader(), false)
    // a's claims go through again: b holds the leadership, a does not take it back.
    holdA = false
    for (const resolve of held.splice(0)) resolve()
    await sleep(300)
    assert.deepEqual([a.isLeader(), b.isLeader()], [false, true])
    // b stops: its release hands over to a at a's next try.
    await b.stop()
    await until('node a to lead again', () => (a.isLeader() ? true : undefined), 1_000)
    assert.equal(a.leadership.currentTerm, 3)
  } finally {
    sampling = false
    await sampler
    holdA = false
    for (const resolve of held.splice(0)) resolve()
    await Promise.all([a.stop(), b.stop()])
    await Promise.all(stores.map((store) => store.close()))
    await dropSchema(schema)
  }
  assert.equal(both, 0, 'never two leaders at once')
})

test('Leadership refuses a margin as long as the lease', () => {
  const { store } = fakeStore()
  assert.throws(
    () =>
      new Leadership({ store, nodeId: 'x', logger: pino({ level: 'silent' }), leaseMs: 100, marginMs: 100 }),
    /margin/,
  )
})
