import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { describe, test } from 'node:test'
import pino from 'pino'
import type { Bus } from '../../src/bus/bus.ts'
import { type BusTiming, type BusTransport, ClusterBus } from '../../src/bus/cluster.ts'
import { LocalBus } from '../../src/bus/local.ts'
import { prepareEvent } from '../../src/core/event.ts'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import { sleep, tempDir, until } from '../helpers.ts'

/** A cluster transport under test: how a node reaches the server, and how anyone else writes to it. */
export interface ClusterBackend {
  kind: 'redis' | 'nats'
  /** One node's transport on `channel` (each test's channel is its own: a cluster of its own). */
  transport(channel: string): BusTransport
  /** Sends `message` on `channel` as any client of the server could (not a Herald node). */
  sendRaw(channel: string, message: string): Promise<void>
}

/** Positions checked so rarely that only a message can deliver a head within a test. */
export const MESSAGES_ONLY: BusTiming = { positionCheckMs: 600_000, downPollMs: 600_000 }
/** Positions checked often: what a message does not deliver arrives within a few hundred ms. */
export const FAST_CHECKS: BusTiming = { positionCheckMs: 100, downPollMs: 100 }

export interface TestCluster {
  nodes: Bus[]
  /** The store the nodes read their heads from (a SQLite file of the test's own). */
  store: SqliteStore
  channel: string
  /** Appends `count` events to `topic` in the store, without telling any bus; returns the new head. */
  append(topic: string, count?: number): Promise<number>
  close(): Promise<void>
}

/** A cluster of `count` ClusterBus nodes, started, on a fresh channel and store. */
export async function openCluster(
  backend: ClusterBackend,
  count: number,
  timing: BusTiming,
  options: { start?: boolean; logger?: pino.Logger } = {},
): Promise<TestCluster & { nodes: ClusterBus[] }> {
  const dataDir = await tempDir('herald-bus-')
  const store = new SqliteStore({ dataDir })
  const channel = `herald.test_${randomBytes(6).toString('hex')}.heads`
  const nodes = Array.from(
    { length: count },
    (_, i) =>
      new ClusterBus({
        kind: backend.kind,
        transport: backend.transport(channel),
        nodeId: `node-${i}`,
        heads: (topics) => store.heads(topics),
        logger: options.logger ?? pino({ level: 'silent' }),
        timing,
      }),
  )
  const cluster = {
    nodes,
    store,
    channel,
    append: (topic: string, n = 1) => append(store, topic, n),
    async close() {
      await Promise.all(nodes.map((node) => node.close()))
      await store.close()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
  if (options.start ?? true) {
    try {
      await Promise.all(nodes.map((node) => node.start()))
    } catch (error) {
      await cluster.close()
      throw error
    }
  }
  return cluster
}

async function append(store: SqliteStore, topic: string, count: number): Promise<number> {
  const now = new Date()
  const events = Array.from({ length: count }, () => prepareEvent(topic, { type: 'bus.test' }, now))
  return (await store.append(topic, events, { now: now.getTime() })).head
}

/** What one listener was handed. */
export interface Heard {
  heads: number[]
  stop(): void
  /** Resolves once `count` heads arrived; fails naming `what` after `timeoutMs`. */
  waitFor(count: number, what: string, timeoutMs?: number): Promise<number[]>
}

export function listen(bus: Bus, topic: string): Heard {
  const heads: number[] = []
  return {
    heads,
    stop: bus.subscribe(topic, (head) => heads.push(head)),
    waitFor: (count, what, timeoutMs = 5_000) =>
      until(what, () => (heads.length >= count ? heads : undefined), timeoutMs),
  }
}

/** Long enough for a duplicate, a stray or a late delivery to show up, were one coming. */
const QUIET_MS = 400

/**
 * The behaviour every Bus must have; each backend's test file runs this suite. The in-process bus
 * (no `cluster`) is one node; a cluster backend runs three ClusterBus nodes per test, each test on a
 * channel of its own, with a real head source (a SQLite store the test appends to).
 */
export function busContract(name: string, options: { skip: string | false; cluster?: ClusterBackend }): void {
  const backend = options.cluster
  const open = async (timing: BusTiming): Promise<TestCluster> => {
    if (backend !== undefined) return openCluster(backend, 3, timing)
    const dataDir = await tempDir('herald-bus-')
    const store = new SqliteStore({ dataDir })
    const bus = new LocalBus()
    return {
      nodes: [bus],
      store,
      channel: '',
      append: (topic, n = 1) => append(store, topic, n),
      async close() {
        await bus.close()
        await store.close()
        await rm(dataDir, { recursive: true, force: true })
      },
    }
  }
  const withCluster = (title: string, timing: BusTiming, body: (cluster: TestCluster) => Promise<void>) =>
    test(title, async () => {
      const cluster = await open(timing)
      try {
        await body(cluster)
      } finally {
        await cluster.close()
      }
    })

  describe(`Bus contract: ${name}`, { skip: options.skip }, () => {
    withCluster(
      'a publish reaches the listeners of its topic on every node once (its own node too), and no other topic',
      FAST_CHECKS,
      async ({ nodes, append }) => {
        const heard = nodes.map((node) => listen(node, 'orders'))
        const others = nodes.map((node) => listen(node, 'invoices'))
        await nodes[0]!.ready()
        // In the store too, as after a real commit: the position checks find it as well, and must
        // not hand it over a second time.
        const head = await append('orders')
        nodes[0]!.publish('orders', head)
        for (const [i, listener] of heard.entries()) await listener.waitFor(1, `node ${i} to hear head 1`)
        await sleep(QUIET_MS)
        assert.deepEqual(
          heard.map((listener) => listener.heads),
          nodes.map(() => [1]),
        )
        assert.deepEqual(
          others.map((listener) => listener.heads),
          nodes.map(() => []),
        )
      },
    )

    withCluster('after unsubscribe, nothing arrives', MESSAGES_ONLY, async ({ nodes }) => {
      const last = nodes.at(-1)!
      const gone = listen(last, 'orders')
      const stays = listen(last, 'orders')
      const goneElsewhere = nodes.map((node) => listen(node, 'payments'))
      gone.stop()
      for (const listener of goneElsewhere) listener.stop()
      nodes[0]!.publish('orders', 1)
      nodes[0]!.publish('payments', 1)
      await stays.waitFor(1, 'the remaining listener to hear head 1')
      await sleep(QUIET_MS)
      assert.deepEqual(gone.heads, [])
      assert.deepEqual(
        goneElsewhere.map((listener) => listener.heads),
        nodes.map(() => []),
      )
    })

    withCluster('ready() resolves', MESSAGES_ONLY, async ({ nodes }) => {
      await Promise.all(nodes.map((node) => node.ready()))
    })

    if (backend === undefined) return

    withCluster('an older head after a newer one wakes no one', MESSAGES_ONLY, async ({ nodes }) => {
      const heard = nodes.map((node) => listen(node, 'orders'))
      // One connection keeps its order: 3 arrives after 5.
      nodes[0]!.publish('orders', 5)
      nodes[0]!.publish('orders', 3)
      for (const [i, listener] of heard.entries()) await listener.waitFor(1, `node ${i} to hear 5`)
      // Another node's older head: dropped wherever it lands, before 6 or after.
      nodes[1]!.publish('orders', 4)
      nodes[0]!.publish('orders', 6)
      for (const [i, listener] of heard.entries()) await listener.waitFor(2, `node ${i} to hear 6`)
      await sleep(QUIET_MS)
      assert.deepEqual(
        heard.map((listener) => listener.heads),
        nodes.map(() => [5, 6]),
      )
    })

    test('ready() resolves only once the subscription is acknowledged: a publish right after it is heard', async () => {
      // Many rounds: a ready() that resolved before the server had the subscription would lose some.
      for (let round = 0; round < 20; round++) {
        const cluster = await openCluster(backend, 2, MESSAGES_ONLY, { start: false })
        try {
          const [publisher, late] = cluster.nodes as [ClusterBus, ClusterBus]
          await publisher.ready()
          const heard = listen(late, 'orders')
          await late.ready()
          publisher.publish('orders', 1)
          await heard.waitFor(1, `the node that just became ready to hear head 1 (round ${round})`)
        } finally {
          await cluster.close()
        }
      }
    })

    withCluster(
      'a dropped message: a head that moved in the store reaches the listeners through the position check',
      FAST_CHECKS,
      async ({ nodes, append }) => {
        const heard = nodes.map((node) => listen(node, 'orders'))
        const head = await append('orders', 3)
        for (const [i, listener] of heard.entries()) await listener.waitFor(1, `node ${i} to find head 3`)
        await append('orders')
        for (const [i, listener] of heard.entries()) await listener.waitFor(2, `node ${i} to find head 4`)
        await sleep(QUIET_MS)
        assert.deepEqual(
          heard.map((listener) => listener.heads),
          nodes.map(() => [head, head + 1]),
        )
      },
    )

    withCluster(
      'a malformed message on the channel is ignored, and the next one is heard',
      MESSAGES_ONLY,
      async ({ nodes, channel }) => {
        const heard = nodes.map((node) => listen(node, 'orders'))
        const strays = [
          'not json',
          '',
          'null',
          '5',
          '"orders"',
          '[]',
          '{}',
          '{"n":"stray","t":"orders"}',
          '{"n":"stray","t":"orders","h":"7"}',
          '{"n":"stray","t":"orders","h":7.5}',
          '{"n":"stray","t":"orders","h":1e300}',
          '{"n":"stray","t":"orders","h":-7}',
          '{"n":"stray","t":7,"h":7}',
          '{"n":"stray","t":null,"h":7}',
          '{"n":"stray","t":{"toString":1},"h":7}',
        ]
        for (const stray of strays) await backend.sendRaw(channel, stray)
        await backend.sendRaw(channel, '{"n":"stray","t":"orders","h":2}')
        for (const [i, listener] of heard.entries()) await listener.waitFor(1, `node ${i} to hear head 2`)
        await sleep(QUIET_MS)
        assert.deepEqual(
          heard.map((listener) => listener.heads),
          nodes.map(() => [2]),
        )
      },
    )
  })
}
