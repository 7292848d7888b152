import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { readAll, sleep } from '../helpers.ts'
import { caughtUp, Follower, Publisher, publishLoad, type ReaderKind } from './clients.ts'
import { BUSES, Cluster, clusterSkip } from './harness.ts'
import { describeReport, History } from './history.ts'

const skip = await clusterSkip()

/**
 * Three nodes on one PostgreSQL schema and one bus, behind nginx (round robin, no stickiness): once on
 * Redis, once on NATS. Publishers go through the proxy, so their requests land on every node; the
 * readers connect to the nodes themselves, so that which node serves them is certain.
 */
for (const bus of BUSES) {
  describe(`3 nodes on PostgreSQL + ${bus}, behind nginx`, { skip }, () => {
    let cluster: Cluster
    before(async () => {
      cluster = await Cluster.start({ bus })
    })
    after(async () => {
      await cluster?.cleanup()
    })

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
  })
}
