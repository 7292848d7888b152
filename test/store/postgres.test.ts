import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import pg from 'pg'
import pino from 'pino'
import { LocalBus } from '../../src/bus/local.ts'
import { prepareEvent } from '../../src/core/event.ts'
import { Dispatcher } from '../../src/delivery/dispatcher.ts'
import { createGuardedAgent } from '../../src/delivery/targets.ts'
import { TopicLog } from '../../src/log/topic-log.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import { PostgresStore } from '../../src/store/postgres/postgres-store.ts'
import type { ClaimedRun, ClaimRequest, HookRecord, Store } from '../../src/store/store.ts'
import { startReceiver } from '../delivery/receiver.ts'
import { ROOT, until } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { type StoreHarness, storeContract } from './contract.ts'
import { deliveryContract } from './delivery-contract.ts'
import { leaderContract } from './leader-contract.ts'
import { presenceContract } from './presence-contract.ts'

const skip = await skipWithoutPostgres()

async function openPostgres(): Promise<StoreHarness> {
  const schema = testSchema('store')
  const open = () => PostgresStore.open({ url: TEST_DATABASE_URL, schema, maxConnections: 4 })
  let store: Store = await open()
  return {
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = await open()
      return store
    },
    async cleanup() {
      await store.close()
      await dropSchema(schema)
    },
  }
}

storeContract('PostgreSQL', openPostgres, { skip })
deliveryContract('PostgreSQL', openPostgres, { skip })
leaderContract('PostgreSQL', openPostgres, { skip })
presenceContract('PostgreSQL', openPostgres, { skip })

// ---- PostgreSQL only: several nodes on one database ------------------------------------------------

const LEASE_MS = 60_000
const OK = { at: 0, duration_ms: 1, status: 200, error: null, response: 'ok' }

function hook(id: string, fields: Partial<HookRecord> = {}): HookRecord {
  const now = Date.now()
  return {
    id,
    kind: 'webhook',
    target_url: `http://receiver.test/${id}`,
    topic: null,
    topic_url: null,
    lease_seconds: null,
    expires_at: null,
    // Every topic: a hook without a topic takes the events its pattern matches.
    event: 't.*',
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    previous_secret: null,
    previous_secret_until: null,
    ordered: true,
    max_in_flight: 1000,
    rate_limit: null,
    state: 'active',
    disabled_reason: null,
    failing_since: null,
    description: null,
    filter: null,
    created_at: now,
    updated_at: now,
    ...fields,
  }
}

function append(store: Store, topic: string, count: number) {
  const now = store.now()
  const events = Array.from({ length: count }, (_, i) =>
    prepareEvent(topic, { type: `t.${i}` }, new Date(now)),
  )
  return store.append(topic, events, { now })
}

function claim(store: Store, owner: string, fields: Partial<ClaimRequest> = {}) {
  return store.claimDeliveries({
    owner,
    now: store.now(),
    leaseMs: LEASE_MS,
    runLength: 8,
    limit: 20,
    ...fields,
  })
}

/** Every delivery of the runs delivered, under their lease, and their ordered queues advanced. */
function deliver(store: Store, runs: ClaimedRun[]) {
  return Promise.all(
    runs.map((run) =>
      store.settleDeliveries({
        lease: run.lease,
        now: store.now(),
        outcomes: run.deliveries.map((d) => ({
          id: d.id,
          hookId: run.hook.id,
          attempt: OK,
          result: 'delivered' as const,
        })),
        released: [],
        advanced: run.hook.ordered ? [{ hookId: run.hook.id, topic: run.deliveries[0]!.topic }] : [],
        disableAfterMs: 86_400_000,
      }),
    ),
  )
}

/** Two stores (two nodes) on one schema, closed and the schema dropped after the test. */
function withTwoNodes(
  title: string,
  body: (a: PostgresStore, b: PostgresStore, schema: string) => Promise<void>,
) {
  test(title, { skip }, async () => {
    const schema = testSchema('nodes')
    const open = () => PostgresStore.open({ url: TEST_DATABASE_URL, schema, maxConnections: 6 })
    const a = await open()
    const b = await open().catch(async (error) => {
      await a.close()
      throw error
    })
    try {
      await body(a, b, schema)
    } finally {
      await Promise.allSettled([a.close(), b.close()])
      await dropSchema(schema)
    }
  })
}

/** Runs `sql` on a connection of its own to the test database. */
async function admin<T extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    return (await client.query<T>(sql, values)).rows
  } finally {
    await client.end()
  }
}

withTwoNodes(
  'two nodes claiming at once never get the same delivery, and ordered queues stay one run at a time',
  async (a, b) => {
    await a.createHook(hook('u', { ordered: false }))
    await a.createHook(hook('o'))
    const topics = ['q0', 'q1', 'q2', 'q3']
    for (const topic of topics) await append(a, topic, 60)
    const total = topics.length * 60 * 2
    const claimed = new Map<number, string>()
    const claimedSeqs = new Map<string, number[]>()
    // Four claimers, two per node, each claiming and settling in a loop until nothing is left.
    const claimer = async (store: PostgresStore, name: string) => {
      let idle = 0
      while (idle < 5) {
        const runs = await claim(store, name)
        if (runs.length === 0) {
          idle++
          await new Promise((resolve) => setTimeout(resolve, 5))
          continue
        }
        idle = 0
        for (const run of runs) {
          for (const d of run.deliveries) {
            assert.equal(
              claimed.get(d.id),
              undefined,
              `delivery ${d.id} claimed by ${claimed.get(d.id)} and ${name}`,
            )
            claimed.set(d.id, name)
          }
          if (run.hook.ordered) {
            const queue = `${run.hook.id}/${run.deliveries[0]!.topic}`
            claimedSeqs.set(queue, [...(claimedSeqs.get(queue) ?? []), ...run.deliveries.map((d) => d.seq)])
          }
        }
        await deliver(store, runs)
      }
    }
    await Promise.all([claimer(a, 'a1'), claimer(a, 'a2'), claimer(b, 'b1'), claimer(b, 'b2')])
    assert.equal(claimed.size, total)
    assert.deepEqual(await b.deliveryCounts(), { pending: 0, delivered: total, failed: 0 })
    const names = new Set(claimed.values())
    assert.ok(names.has('a1') || names.has('a2'), 'node a claimed some')
    assert.ok(names.has('b1') || names.has('b2'), 'node b claimed some')
    // Each ordered queue was claimed in seq order, one run after the other.
    for (const topic of topics) {
      assert.deepEqual(
        claimedSeqs.get(`o/${topic}`),
        Array.from({ length: 60 }, (_, i) => i + 1),
      )
    }
    for (const id of ['u', 'o']) {
      const attempts = await a.attempts(id, { limit: 1000 })
      assert.equal(attempts.length, total / 2, 'one attempt logged per delivery')
      assert.ok(attempts.every((attempt) => attempt.attempt === 1))
    }
  },
)

withTwoNodes(
  'claims on two nodes at once never hold more runs of a hook than its max_in_flight',
  async (a, b) => {
    await a.createHook(hook('u', { ordered: false, max_in_flight: 3 }))
    await a.createHook(hook('o', { max_in_flight: 2 }))
    for (const topic of ['q0', 'q1', 'q2', 'q3', 'q4']) await append(a, topic, 20)
    const total = 5 * 20 * 2
    const held = { u: 0, o: 0 }
    const most = { u: 0, o: 0 }
    let settled = 0
    // Four claimers, two per node, each holding its runs a moment before settling them; a claimer's
    // runs are counted from its claim's answer to just before its settlement is issued (never longer
    // than the store holds them: a cap exceeded in the store shows here).
    const claimer = async (store: PostgresStore, name: string) => {
      while (settled < total) {
        const runs = await claim(store, name, { limit: 4 })
        if (runs.length === 0) {
          await new Promise((resolve) => setTimeout(resolve, 2))
          continue
        }
        for (const run of runs) {
          const id = run.hook.id as 'u' | 'o'
          held[id]++
          most[id] = Math.max(most[id], held[id])
        }
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 5))
        for (const run of runs) held[run.hook.id as 'u' | 'o']--
        await deliver(store, runs)
        settled += runs.reduce((n, run) => n + run.deliveries.length, 0)
      }
    }
    await Promise.all([claimer(a, 'a1'), claimer(a, 'a2'), claimer(b, 'b1'), claimer(b, 'b2')])
    assert.deepEqual(await b.deliveryCounts(), { pending: 0, delivered: total, failed: 0 })
    assert.ok(most.u <= 3, `unordered hook (max_in_flight 3): ${most.u} runs held at once`)
    assert.ok(most.o <= 2, `ordered hook (max_in_flight 2): ${most.o} runs held at once`)
    assert.ok(most.u >= 2 && most.o >= 2, `runs held at once: ${JSON.stringify(most)}`)
  },
)

withTwoNodes(
  'a claim skips what another transaction holds locked, and an ordered run stops before it',
  async (a, _b, schema) => {
    await a.createHook(hook('o'))
    await append(a, 'x', 5)
    await append(a, 'y', 2)
    const locker = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await locker.connect()
    try {
      await locker.query('BEGIN')
      // Another node's transaction holds the head of queue y, and seq 3 of queue x.
      await locker.query(
        `SELECT d.id FROM ${schema}.deliveries d JOIN ${schema}.topics t ON t.id = d.topic_id
         WHERE (t.name = 'y' AND d.seq = 1) OR (t.name = 'x' AND d.seq = 3) FOR UPDATE`,
      )
      const started = performance.now()
      const runs = await claim(a, 'a')
      assert.ok(performance.now() - started < 2_000, 'not waited for')
      assert.deepEqual(
        runs.map((run) => [run.deliveries[0]!.topic, run.deliveries.map((d) => d.seq)]),
        [['x', [1, 2]]],
      )
      await locker.query('ROLLBACK')
      await deliver(a, runs)
      const next = await claim(a, 'a')
      assert.deepEqual(
        next.map((run) => [run.deliveries[0]!.topic, run.deliveries.map((d) => d.seq)]).sort(),
        [
          ['x', [3, 4, 5]],
          ['y', [1, 2]],
        ],
      )
    } finally {
      await locker.end()
    }
  },
)

withTwoNodes(
  'a node whose session is killed is found dead by the next heartbeat, not after staleMs; its settlement is then ignored',
  async (a, b) => {
    const suffix = testSchema('n')
    const nodeA = `node-a-${suffix}`
    const nodeB = `node-b-${suffix}`
    await a.joinCluster(nodeA)
    await b.joinCluster(nodeB)
    await a.createHook(hook('o'))
    await a.createHook(hook('u', { ordered: false }))
    await append(a, 'orders', 3)
    const stale = await claim(a, nodeA)
    assert.equal(
      stale.reduce((n, run) => n + run.deliveries.length, 0),
      6,
    )
    assert.equal(await b.heartbeat(nodeB, 60_000), 0, 'node a is alive: its session holds its lock')
    assert.deepEqual(
      (await b.nodes()).map((node) => node.id),
      [nodeA, nodeB],
    )
    // The process of node a is killed: its session ends with it (as kill -9 would end it).
    const killed = await admin<{ ok: boolean }>(
      'SELECT pg_terminate_backend(pid, 5000) AS ok FROM pg_stat_activity WHERE application_name = $1',
      [`herald-node:${nodeA}`.slice(0, 63)],
    )
    assert.deepEqual(
      killed.map((row) => row.ok),
      [true],
    )
    // Its heartbeat is fresh (well within staleMs): the lost lock alone gives it away.
    assert.equal(await b.heartbeat(nodeB, 60_000), 6)
    assert.deepEqual(
      (await b.nodes()).map((node) => node.id),
      [nodeB],
    )
    const fresh = await claim(b, nodeB)
    assert.deepEqual(fresh.map((run) => [run.hook.id, run.deliveries.map((d) => d.seq)]).sort(), [
      ['o', [1, 2, 3]],
      ['u', [1]],
      ['u', [2]],
      ['u', [3]],
    ])
    // Node a was only paused, say: it settles what it sent, and nothing of it applies.
    await deliver(a, stale)
    assert.deepEqual(await b.attempts('o', { limit: 10 }), [])
    assert.deepEqual(await b.deliveryCounts(), { pending: 6, delivered: 0, failed: 0 })
    assert.deepEqual(await claim(a, nodeA), [], "node b's runs are node b's")
    await deliver(b, fresh)
    assert.deepEqual(await b.deliveryCounts(), { pending: 0, delivered: 6, failed: 0 })
    // Node a's next heartbeat opens a session again, takes its lock again and is known again.
    assert.equal(await a.heartbeat(nodeA, 60_000), 0)
    assert.deepEqual(
      (await a.nodes()).map((node) => node.id),
      [nodeA, nodeB],
    )
    assert.equal(await b.heartbeat(nodeB, 60_000), 0, 'node a is alive again')
    await a.leaveCluster(nodeA)
    assert.deepEqual(
      (await b.nodes()).map((node) => node.id),
      [nodeB],
    )
  },
)

/** A real dispatcher (a node's) on `store`, sending on the main thread, and its metrics. */
function dispatcherOn(store: PostgresStore, nodeId: string) {
  const metrics = createMetrics()
  const dispatcher = new Dispatcher({
    store,
    nodeId,
    log: new TopicLog(store, new LocalBus(), metrics),
    metrics,
    logger: pino({ level: 'silent' }),
    agent: createGuardedAgent({ allowPrivate: true, connectTimeoutMs: 2_000 }),
    allowPrivateTargets: true,
    workers: 0,
    retryScheduleMs: [0, 10, 10, 10, 10, 10, 10, 10],
    timeoutMs: 2_000,
    concurrency: 8,
    disableAfterMs: 86_400_000,
    hubUrl: 'http://127.0.0.1/websub',
  })
  return { dispatcher, metrics }
}

withTwoNodes(
  'two dispatchers on one database send each delivery once, an ordered queue in order through retries',
  async (a, b) => {
    let requests = 0
    // Every 7th request to the ordered hook fails: its run stops, the queue waits for the retry.
    const receiver = await startReceiver((request) => ({
      status: request.url.startsWith('/o') && ++requests % 7 === 0 ? 500 : 200,
    }))
    const dispatchers = [a, b].map((store, index) => dispatcherOn(store, `node-${index}`).dispatcher)
    try {
      const target = (id: string) => ({ target_url: `${receiver.url}/${id}`, max_in_flight: 8 })
      await a.createHook(hook('o', target('o')))
      await a.createHook(hook('u', { ...target('u'), ordered: false }))
      for (const dispatcher of dispatchers) dispatcher.start()
      const count = 400
      for (let i = 0; i < count; i += 50) {
        await append(a, 'orders', 50)
        for (const dispatcher of dispatchers) dispatcher.wake()
      }
      await until(
        'every delivery settled',
        async () => ((await b.deliveryCounts()).delivered === 2 * count ? true : undefined),
        60_000,
      )
      const attempts = (await a.attempts('o', { limit: 10_000 })).reverse()
      assert.deepEqual(
        attempts.filter((attempt) => attempt.status === 200).map((attempt) => attempt.seq),
        Array.from({ length: count }, (_, i) => i + 1),
        'each event delivered once, in seq order',
      )
      assert.equal(
        receiver.received.filter((r) => r.url === '/o').length,
        attempts.length,
        'no request unlogged',
      )
      const seqs = receiver.received
        .filter((r) => r.url === '/u')
        .map((r) => JSON.parse(r.body).seq as number)
      assert.deepEqual(
        seqs.sort((x, y) => x - y),
        Array.from({ length: count }, (_, i) => i + 1),
        'the unordered hook got each event once',
      )
    } finally {
      await Promise.all(dispatchers.map((dispatcher) => dispatcher.stop()))
      await receiver.close()
    }
  },
)

// ---- leadership between two nodes (MaintenanceStore) ----------------------------------------------

withTwoNodes(
  'one leader at a time; when its lease runs out the other takes over in the next term',
  async (a, b, schema) => {
    const lead = await a.claimLeadership('node-a', 400)
    assert.deepEqual(lead, { leader: 'node-a', term: 1, isMe: true })
    assert.deepEqual(await b.claimLeadership('node-b', 400), { leader: 'node-a', term: 1, isMe: false })
    // The lease is on the database's clock: it ends leaseMs after the database applied the claim.
    const [row] = await admin<{ node_id: string; left: number }>(
      `SELECT node_id, expires_at - (extract(epoch FROM now()) * 1000)::bigint AS left FROM ${schema}.leader`,
    )
    assert.equal(row!.node_id, 'node-a')
    assert.ok(Number(row!.left) > 0 && Number(row!.left) <= 400, `${row!.left} ms left`)
    await new Promise((resolve) => setTimeout(resolve, 450))
    // node-a did not renew in time: node-b takes over, in term 2; node-a's renewal then fails.
    assert.deepEqual(await b.claimLeadership('node-b', 60_000), { leader: 'node-b', term: 2, isMe: true })
    assert.deepEqual(await a.claimLeadership('node-a', 60_000), { leader: 'node-b', term: 2, isMe: false })
    assert.deepEqual(await b.claimLeadership('node-b', 60_000), { leader: 'node-b', term: 2, isMe: true })
    await b.joinCluster('node-b')
    await a.joinCluster('node-a')
    assert.deepEqual(
      (await a.nodes()).map((node) => [node.id, node.leader]),
      [
        ['node-a', false],
        ['node-b', true],
      ],
    )
  },
)

withTwoNodes('a graceful release hands the leadership over at once', async (a, b) => {
  assert.equal((await a.claimLeadership('node-a', 60_000)).isMe, true)
  assert.equal((await b.claimLeadership('node-b', 60_000)).isMe, false)
  await b.releaseLeadership('node-b') // not the leader: nothing
  assert.equal((await b.claimLeadership('node-b', 60_000)).isMe, false)
  await a.releaseLeadership('node-a')
  assert.deepEqual(await b.claimLeadership('node-b', 60_000), { leader: 'node-b', term: 2, isMe: true })
  // node-a comes back: node-b holds it.
  assert.deepEqual(await a.claimLeadership('node-a', 60_000), { leader: 'node-b', term: 2, isMe: false })
})

withTwoNodes('claims racing from two nodes: exactly one wins each round', async (a, b) => {
  for (let round = 0; round < 5; round++) {
    const claims = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        (i % 2 === 0 ? a : b).claimLeadership(`node-${round}-${i}`, 60_000),
      ),
    )
    assert.equal(claims.filter((claim) => claim.isMe).length, 1, `round ${round}`)
    const winner = claims.find((claim) => claim.isMe)!
    assert.equal(winner.term, round + 1)
    for (const claim of claims) assert.ok(claim.leader === null || claim.leader === winner.leader)
    await (round % 2 === 0 ? a : b).releaseLeadership(winner.leader!)
  }
})

test('nodes starting at once on a new schema migrate it once (advisory lock), and each can write', {
  skip,
}, async () => {
  const schema = testSchema('migrate')
  const stores = await Promise.all(
    Array.from({ length: 4 }, () =>
      PostgresStore.open({ url: TEST_DATABASE_URL, schema, maxConnections: 2 }),
    ),
  )
  try {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await client.connect()
    try {
      const applied = await client.query<{ version: number; n: string }>(
        `SELECT version, count(*) AS n FROM ${schema}.schema_migrations GROUP BY version ORDER BY version`,
      )
      // Each migration once (the files in src/store/postgres/migrations, by their number).
      const files = readdirSync(join(ROOT, 'src/store/postgres/migrations'))
        .filter((name) => /^\d{3}_.*\.sql$/.test(name))
        .map((name) => [Number(name.slice(0, 3)), 1])
      assert.deepEqual(
        applied.rows.map((row) => [row.version, Number(row.n)]),
        files,
      )
    } finally {
      await client.end()
    }
    const results = await Promise.all(
      stores.map((store, i) =>
        store.append('m', [prepareEvent('m', { type: `n${i}` }, new Date())], { now: Date.now() }),
      ),
    )
    assert.deepEqual(results.map((result) => result.head).sort(), [1, 2, 3, 4])
  } finally {
    await Promise.all(stores.map((store) => store.close()))
    await dropSchema(schema)
  }
})

test('a schema name that is not a plain identifier is refused before anything is sent', {
  skip,
}, async () => {
  await assert.rejects(
    PostgresStore.open({ url: TEST_DATABASE_URL, schema: 'herald; DROP TABLE x' }),
    /HERALD_DATABASE_SCHEMA/,
  )
})

withTwoNodes(
  'two dispatchers on one database keep one rate limit: the receiver gets the rate and the burst, not twice',
  async (a, b) => {
    const receiver = await startReceiver()
    const nodes = [a, b].map((store, index) => dispatcherOn(store, `node-${index}`))
    try {
      const rate = 20
      const count = 70
      await a.createHook(
        hook('r', { target_url: `${receiver.url}/r`, ordered: false, max_in_flight: 100, rate_limit: rate }),
      )
      await append(a, 'rated', count)
      for (const { dispatcher } of nodes) dispatcher.start()
      const got = await receiver.waitFor(count, (r) => r.url === '/r', 30_000)
      const first = got[0]!.at
      // A full bucket (one second's worth) at once, then the rate: the k-th delivery no sooner than
      // the bucket allows (2 of slack for the clocks: the database's for the bucket, this one here).
      got.forEach((request, index) => {
        const allowed = rate + ((request.at - first) / 1000) * rate + 2
        assert.ok(
          index + 1 <= allowed,
          `${index + 1} deliveries within ${request.at - first} ms at ${rate}/s`,
        )
      })
      const span = got.at(-1)!.at - first
      assert.ok(span >= ((count - rate - 2) / rate) * 1000, `${count} deliveries in ${span} ms at ${rate}/s`)
      // A node counts a delivery once the answer is in, a moment after the receiver has the request.
      const sent = await until('both nodes to count every delivery', async () => {
        const counted = await Promise.all(
          nodes.map(async ({ metrics }) => {
            const values = (await metrics.deliveryAttempts.get()).values
            return values.find((value) => value.labels.outcome === 'delivered')?.value ?? 0
          }),
        )
        return counted[0]! + counted[1]! >= count ? counted : undefined
      })
      assert.equal(sent[0]! + sent[1]!, count, 'each delivery sent once')
      assert.equal(receiver.received.filter((r) => r.url === '/r').length, count, 'none received twice')
      assert.ok(sent[0]! > 0 && sent[1]! > 0, `both nodes sent: ${sent.join(' and ')}`)
    } finally {
      await Promise.all(nodes.map(({ dispatcher }) => dispatcher.stop()))
      await receiver.close()
    }
  },
)
