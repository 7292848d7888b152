import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'
import { readAll, sleep } from '../helpers.ts'
import { type PrivateServer, startPrivateNats, startPrivateRedis } from '../services.ts'
import { caughtUp, Follower, Publisher, publishLoad, type ReaderKind, stopFollowers } from './clients.ts'
import { BUSES, Cluster, clusterSkip } from './harness.ts'
import { describeReport, History } from './history.ts'

const skip = await clusterSkip({ own: BUSES })

/**
 * Three nodes on one PostgreSQL schema and one bus, behind nginx (round robin, no stickiness): once on
 * Redis, once on NATS, each a server of the test's own (the last test kills it). Publishers go through
 * the proxy, so their requests land on every node; the readers connect to the nodes themselves, so
 * that which node serves them is certain (and some through the proxy, as clients do).
 */
for (const bus of BUSES) {
  describe(`3 nodes on PostgreSQL + ${bus}, behind nginx`, { skip }, () => {
    let cluster: Cluster
    /** The cluster's own bus server, which the last test kills. */
    let server: PrivateServer
    before(async () => {
      server = bus === 'redis' ? await startPrivateRedis() : await startPrivateNats()
      cluster = await Cluster.start({ bus, busUrl: server.url })
    })
    after(async () => {
      await cluster?.cleanup()
      await server?.remove()
    })
    // A test that failed half-way must not leave its readers reconnecting.
    afterEach(stopFollowers)

    /** Nodes (their upstream addresses) that answered `path`'s POSTs through the proxy. */
    async function nodesThatTook(path: string): Promise<Set<string>> {
      const entries = await cluster.proxy.accessLog()
      return new Set(
        entries.filter((entry) => entry.method === 'POST' && entry.path === path).map((e) => e.upstream),
      )
    }

    const read = (topic: string) => readAll(cluster.node(0).url, topic)

    test('an event published through the proxy reaches SSE, NDJSON, WebSocket and long polls held on the other nodes, at once', async () => {
      const history = new History()
      const kinds: ReaderKind[] = ['sse', 'ndjson', 'ws', 'poll']
      const followers = cluster.nodes.flatMap((node) =>
        kinds.map(
          (kind) =>
            new Follower(history.client(`${kind}@${node.id}`, { fan: 0 }), { kind, urls: [node.url] }),
        ),
      )
      const publisher = new Publisher(history, 'fan')
      try {
        // A first event: once every reader has it, every one is live (caught up, waiting on its node).
        await publisher.publish(cluster.url, 'fan')
        await caughtUp(history, followers)
        // Then one at a time, each waited for by all twelve: the time it takes is the bus's hop (a
        // reader that only the position check woke, every 3 s, would wait 1.5 s on average).
        const waits: number[] = []
        for (let i = 0; i < 9; i++) {
          const [event] = await publisher.publish(cluster.url, 'fan')
          const start = performance.now()
          await caughtUp(history, followers, 10_000, 2)
          waits.push(performance.now() - start)
          assert.ok(event)
        }
        waits.sort((a, b) => a - b)
        const median = waits[Math.floor(waits.length / 2)]!
        process.stderr.write(
          `[${bus}] publish → all 12 readers on 3 nodes: median ${median.toFixed(0)} ms, max ${waits.at(-1)!.toFixed(0)} ms\n`,
        )
        assert.ok(
          median < 1000,
          `the readers were woken by the bus, not the 3 s position check (median ${median} ms)`,
        )
        // One cluster: every node knows the three, on this bus, whichever answers.
        const info = (await (await fetch(`${cluster.url}/v1/cluster`)).json()) as {
          store: string
          bus: string
          nodes: Array<{ id: string }>
        }
        assert.deepEqual(
          { store: info.store, bus: info.bus, nodes: info.nodes.map((node) => node.id) },
          { store: 'postgres', bus, nodes: ['n1', 'n2', 'n3'] },
        )
        // The ten publishes went round robin over the three nodes: each reader got events published
        // on the other two.
        assert.equal((await nodesThatTook('/v1/topics/fan/events')).size, 3, 'the proxy spread the publishes')
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      const report = await history.check({ read, complete: true, strictStore: true })
      assert.equal(report.received, 12 * 10)
    })

    test('concurrent publishes to one topic through all nodes: seq gapless, each event once', async () => {
      const history = new History()
      const followers = cluster.nodes.map(
        (node) =>
          new Follower(history.client(`sse@${node.id}`, { shared: 0 }), { kind: 'sse', urls: [node.url] }),
      )
      const load = publishLoad(history, cluster.url, ['shared'], { workers: 6 })
      try {
        while (load.acknowledged() < 150) await sleep(20)
      } finally {
        await load.stop()
      }
      try {
        await caughtUp(history, followers)
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      assert.equal((await nodesThatTook('/v1/topics/shared/events')).size, 3, 'every node took publishes')
      const report = await history.check({ read, complete: true, strictStore: true })
      process.stderr.write(describeReport(`[${bus}] concurrent publishes`, report))
    })

    test('clients resume with their cursor on another node, one topic and several: exactly once, in order', async () => {
      const history = new History()
      const urls = cluster.nodes.map((node) => node.url)
      const follow = (name: string, topics: string[], kind: ReaderKind, hopEvery: number, via = urls) =>
        new Follower(history.client(name, Object.fromEntries(topics.map((topic) => [topic, 0]))), {
          kind,
          urls: via,
          hopEvery,
        })
      const followers = [
        follow('sse-one', ['r1'], 'sse', 10),
        follow('ndjson-one', ['r2'], 'ndjson', 10),
        follow('poll-one', ['r1'], 'poll', 10),
        follow('sse-two', ['r1', 'r2'], 'sse', 15),
        follow('ws-two', ['r1', 'r2'], 'ws', 15),
        // Through the proxy: each reconnection lands wherever round robin sends it.
        follow('sse-two-proxy', ['r1', 'r2'], 'sse', 15, [cluster.url]),
      ]
      const load = publishLoad(history, cluster.url, ['r1', 'r2'], { workers: 3, pauseMs: 5 })
      try {
        while (
          load.acknowledged() < 120 ||
          followers.some((follower) => follower.client.connections.length < 4)
        ) {
          await sleep(20)
        }
      } finally {
        await load.stop()
      }
      try {
        await caughtUp(history, followers)
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      const report = await history.check({ read, complete: true, strictStore: true })
      process.stderr.write(describeReport(`[${bus}] resume on another node`, report))
      assert.ok(report.reconnections >= 18, `${report.reconnections} resumptions`)
    })

    /**
     * The bus is a hint: its server killed under load and started again, no stream loses an event.
     * While it is down the readers still get events (the nodes poll the heads from the store); once
     * it is back the nodes use it again, without a restart (events come at the bus's pace again).
     */
    test(`${bus} killed and restarted under load: no event lost by any stream, and the nodes use it again`, async () => {
      const history = new History()
      const [n1, n2, n3] = cluster.nodes.map((node) => node.url) as [string, string, string]
      const followers = [
        new Follower(history.client('sse@n1', { b1: 0 }), { kind: 'sse', urls: [n1] }),
        new Follower(history.client('ws@n2', { b1: 0, b2: 0 }), { kind: 'ws', urls: [n2] }),
        new Follower(history.client('ndjson@n3', { b2: 0 }), { kind: 'ndjson', urls: [n3] }),
        new Follower(history.client('poll@n3', { b1: 0 }), { kind: 'poll', urls: [n3] }),
        new Follower(history.client('sse-two@proxy', { b1: 0, b2: 0 }), { kind: 'sse', urls: [cluster.url] }),
      ]
      const load = publishLoad(history, cluster.url, ['b1', 'b2'], { workers: 3, pauseMs: 10 })
      let latencies: number[]
      try {
        while (load.acknowledged() < 40) await sleep(20)
        await server.stop('SIGKILL')
        // Down: each reader still moves on (the heads are polled from the store every 1.5 s).
        const atOutage = followers.map((follower) => follower.client.count())
        await sleep(3_500)
        for (const [index, follower] of followers.entries()) {
          assert.ok(
            follower.client.count() > atOutage[index]!,
            `${follower.client.name} received events while the bus was down`,
          )
        }
        await server.start()
        await sleep(2_000)
      } finally {
        await load.stop()
      }
      try {
        await caughtUp(history, followers)
        // Back: one event at a time reaches every reader at the bus's pace (the poll would take up
        // to 1.5 s, the position check up to 3 s).
        const publisher = new Publisher(history, 'after')
        latencies = []
        for (let i = 0; i < 7; i++) {
          await publisher.publish(cluster.url, 'b1')
          const start = performance.now()
          await caughtUp(history, followers, 10_000, 2)
          latencies.push(performance.now() - start)
        }
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      const report = await history.check({
        read: (topic) => readAll(cluster.node(0).url, topic),
        complete: true,
        strictStore: true,
      })
      latencies.sort((a, b) => a - b)
      const median = latencies[Math.floor(latencies.length / 2)]!
      process.stderr.write(describeReport(`[${bus}] bus killed and restarted`, report))
      process.stderr.write(
        `[${bus}] after the restart, publish → every reader: median ${median.toFixed(0)} ms\n`,
      )
      assert.ok(median < 500, `the nodes use the bus again (median ${median.toFixed(0)} ms)`)
      assert.deepEqual(cluster.errors(), [], 'no error logged by any node')
    })
  })
}
