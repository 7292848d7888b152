import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'
import { eventOf, type Received, type Receiver, startReceiver } from '../delivery/receiver.ts'
import { readAll, sleep, until } from '../helpers.ts'
import { type PrivatePostgres, startPrivatePostgres } from '../postgres.ts'
import { caughtUp, Follower, Publisher, publishLoad, stopFollowers } from './clients.ts'
import { Cluster, clusterSkip } from './harness.ts'
import { describeReport, History, type HookHistory } from './history.ts'

/**
 * Restarts under load, on a cluster of 3 nodes on a PostgreSQL server of the test's own (it is
 * restarted), on Redis and on NATS: every node in turn, then the database. Readers go through the proxy and
 * reconnect with their cursor; publishers retry with their Idempotency-Key; ordered hooks get every
 * event.
 */
for (const bus of ['redis', 'nats'] as const) {
  const skip = await clusterSkip({ shared: [bus] })

  describe(`restarts under load: 3 nodes on a private PostgreSQL + ${bus}, behind nginx`, { skip }, () => {
    let database: PrivatePostgres
    let cluster: Cluster
    let receiver: Receiver
    let target: HookHistory | undefined
    /** How long the receiver takes to answer (a test slows it down). */
    let answerDelayMs = 0

    before(async () => {
      receiver = await startReceiver((request: Received) => {
        const event = eventOf(request)
        target?.receive({ topic: event.topic, seq: event.seq, id: event.id })
        return { status: 200, delayMs: answerDelayMs }
      })
      database = await startPrivatePostgres()
      // A 3 s delivery timeout: an 11 s lease (twice it, and 5 s). A queue left leased by a run whose
      // settlement the outage cut is let go as soon as the database is back (Dispatcher.releaseAfterFailure);
      // the short lease is only the backstop, within the test's wait.
      cluster = await Cluster.start({
        bus,
        databaseUrl: database.url,
        args: ['--delivery-timeout', '3s'],
      })
    })
    after(async () => {
      await cluster?.cleanup()
      await database?.remove()
      await receiver?.close()
    })
    // A test that failed half-way must not leave its readers reconnecting.
    afterEach(stopFollowers)

    const read = (topic: string) => readAll(cluster.node(0).url, topic)

    /** An ordered hook on events of type `load` (every topic of these tests), recorded as `name`. */
    async function hook(history: History, name: string, topics: string[]): Promise<string> {
      target = history.hook(name, topics, { ordered: true })
      const response = await fetch(`${cluster.url}/v1/hooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ target_url: `${receiver.url}/${name}`, event: 'load', ordered: true }),
      })
      assert.equal(response.status, 201)
      return ((await response.json()) as { id: string }).id
    }

    async function delivered(history: History): Promise<void> {
      const hookTarget = target!
      await until(
        'every event delivered to the hook',
        () =>
          hookTarget.topics.every((topic) => hookTarget.distinct(topic) === history.head(topic))
            ? true
            : undefined,
        30_000,
      )
      await sleep(1000) // time for a resend to show up, were one sent
    }

    async function removeHook(id: string): Promise<void> {
      target = undefined
      assert.equal((await fetch(`${cluster.url}/v1/hooks/${id}`, { method: 'DELETE' })).status, 204)
    }

    /** Readers of every kind, all through the proxy: a reconnection lands on whichever node is next. */
    function followersThroughProxy(history: History, topics: [string, string, string]): Follower[] {
      const [a, b, c] = topics
      const from = (list: string[]) => Object.fromEntries(list.map((topic) => [topic, 0]))
      const urls = [cluster.url]
      return [
        new Follower(history.client('sse', from([a])), { kind: 'sse', urls }),
        new Follower(history.client('ndjson', from([b])), { kind: 'ndjson', urls }),
        new Follower(history.client('poll', from([c])), { kind: 'poll', urls }),
        new Follower(history.client('sse-three', from(topics)), { kind: 'sse', urls }),
        new Follower(history.client('ws-three', from(topics)), { kind: 'ws', urls }),
      ]
    }

    test('a rolling restart of every node (SIGTERM, start again) under publish, stream and webhook load: zero loss', async () => {
      const history = new History()
      const topics: [string, string, string] = ['roll0', 'roll1', 'roll2']
      const hookId = await hook(history, 'rolling', topics)
      const followers = followersThroughProxy(history, topics)
      const load = publishLoad(history, cluster.url, topics, { workers: 3, pauseMs: 10 })
      const drains: string[] = []
      try {
        while (load.acknowledged() < 30) await sleep(20)
        for (const [index, node] of cluster.nodes.entries()) {
          const start = performance.now()
          const exit = await cluster.stopNode(index, 'SIGTERM')
          assert.deepEqual(exit, { code: 0, signal: null }, `${node.id} drained and exited 0`)
          drains.push(`${node.id} ${Math.round(performance.now() - start)} ms`)
          await cluster.startNode(index)
          // Under load on the restarted node before the next one goes.
          const acknowledged = load.acknowledged()
          while (load.acknowledged() < acknowledged + 20) await sleep(20)
        }
      } finally {
        await load.stop()
      }
      try {
        await caughtUp(history, followers, 30_000)
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      await delivered(history)
      await removeHook(hookId)
      const report = await history.check({ read, complete: true, strictStore: true })
      const stats = load.stats()
      process.stderr.write(describeReport('rolling restart', report))
      process.stderr.write(
        `rolling restart: drains ${drains.join(', ')}; ${stats.retries} publish tries retried (${stats.repeats} had committed); reader connections that failed: ${followers.map((f) => `${f.client.name} ${f.failures}`).join(', ')}\n`,
      )
      // Each stream was on a node that restarted, and went on elsewhere (a long poll is a new request
      // each time: it has no connection to lose).
      for (const follower of followers) {
        if (follower.options.kind === 'poll') continue
        assert.ok(follower.client.connections.length >= 2, `${follower.client.name} reconnected`)
      }
      // A claim in flight at stop() lets its runs go rather than start them under a closing sender.
      assert.deepEqual(cluster.errors(), [], 'no node logged an error while draining')
    })

    test('PostgreSQL restarted under load: no acknowledged event lost, the nodes recover without a restart', async () => {
      const history = new History()
      const topics: [string, string, string] = ['pg0', 'pg1', 'pg2']
      const followers = [
        ...followersThroughProxy(history, topics),
        ...cluster.nodes.map(
          (node) =>
            new Follower(history.client(`sse@${node.id}`, { pg0: 0 }), { kind: 'sse', urls: [node.url] }),
        ),
      ]
      const processes = cluster.nodes.map((node) => node.process)
      const startedAt = Date.now()
      const load = publishLoad(history, cluster.url, topics, { workers: 3, pauseMs: 10 })
      try {
        while (load.acknowledged() < 30) await sleep(20)
        await database.stop('immediate')
        await sleep(3_000)
        await database.start()
        await cluster.ready()
        const acknowledged = load.acknowledged()
        while (load.acknowledged() < acknowledged + 30) await sleep(20)
      } finally {
        await load.stop()
      }
      // Each node takes a publish of its own.
      const publisher = new Publisher(history, 'direct')
      for (const node of cluster.nodes) await publisher.publish(node.url, 'pg0')
      try {
        await caughtUp(history, followers, 30_000)
      } finally {
        await Promise.all(followers.map((follower) => follower.stop()))
      }
      assert.deepEqual(
        cluster.nodes.map((node) => node.process),
        processes,
        'no node restarted',
      )
      const report = await history.check({ read, complete: true, strictStore: true })
      const stats = load.stats()
      process.stderr.write(describeReport('PostgreSQL restarted', report))
      process.stderr.write(
        `PostgreSQL restarted: ${stats.retries} publish tries retried (${stats.repeats} had committed)\n`,
      )
      assert.ok(stats.retries > 0, 'the outage was felt (publishes were refused and retried)')
      // Streams wait an outage out on their connection (a long poll answers 503 and is asked again).
      for (const follower of followers) {
        if (follower.options.kind === 'poll') continue
        assert.equal(follower.client.connections.length, 1, `${follower.client.name} kept its connection`)
      }
      assert.deepEqual(cluster.errors(startedAt), [], 'an outage is logged as warnings, no error')
    })

    test('PostgreSQL stopped in the middle of ordered runs: no node ends, every event is delivered, the queues go on as soon as it is back', async () => {
      const history = new History()
      const topics = ['run0', 'run1', 'run2', 'run3', 'run4', 'run5']
      await hook(history, 'outage', topics)
      const hookTarget = target!
      const processes = cluster.nodes.map((node) => node.process)
      const publisher = new Publisher(history, 'runs')
      let down = false
      try {
        // Slow answers: the runs (one per topic, spread over the nodes) are under way when the
        // database stops, and go on sending while it is down.
        answerDelayMs = 100
        for (const topic of topics) await publisher.publish(cluster.url, topic, 40)
        await until('the runs to be under way', () =>
          topics.every((topic) => hookTarget.distinct(topic) >= 2) ? true : undefined,
        )
        const startedAt = Date.now()
        await database.stop('immediate')
        down = true
        await sleep(2_000)
        const alive = cluster.nodes.map((node, index) => node.process === processes[index])
        process.stderr.write(`PostgreSQL stopped mid-run: nodes alive through it: ${alive.join(', ')}\n`)
        assert.deepEqual(alive, [true, true, true], 'no node ended while the database was down')
        answerDelayMs = 0
        await database.start()
        down = false
        await cluster.ready()
        const backAt = Date.now()
        await delivered(history)
        const pauses = topics.map((topic) => hookTarget.longestPause(topic, backAt))
        const report = await history.check({ read, strictStore: true, resendsAllowed: ['outage'] })
        process.stderr.write(describeReport('PostgreSQL stopped mid-run', report))
        process.stderr.write(
          `PostgreSQL stopped mid-run: longest pause of a queue once it was back: ${Math.max(...pauses)} ms (${pauses.join(', ')})\n`,
        )
        assert.ok(
          Math.max(...pauses) < 5_000,
          `a queue stood still ${Math.max(...pauses)} ms once it was back`,
        )
        assert.deepEqual(cluster.errors(startedAt), [], 'an outage is logged as warnings, no error')
      } finally {
        // The last test on this cluster: its hook goes with the schema.
        answerDelayMs = 0
        target = undefined
        if (down) await database.start()
      }
    })
  })
}
