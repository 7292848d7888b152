import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { eventOf, type Received, type Receiver, startReceiver } from '../delivery/receiver.ts'
import { readAll, sleep, until } from '../helpers.ts'
import { Publisher, publishLoad } from './clients.ts'
import { Cluster, clusterSkip } from './harness.ts'
import { describeReport, History, type HookHistory } from './history.ts'

/**
 * Webhook and WebSub deliveries from a 3-node cluster, every node dispatching from the one queue in
 * PostgreSQL. The bus plays no part in dispatching (each node claims from the store), so one bus
 * (Redis) is enough here; the streams' tests run on both.
 */
const skip = await clusterSkip({ shared: ['redis'] })

describe('deliveries from 3 nodes on PostgreSQL + redis, behind nginx', { skip }, () => {
  let cluster: Cluster
  let receiver: Receiver
  /** Where each path's requests go: the hook target histories of the test running. */
  const targets = new Map<string, HookHistory>()
  /** How the receiver answers a delivery (a test slows it down). */
  let deliveryDelayMs = 0

  before(async () => {
    receiver = await startReceiver((request: Received) => {
      const url = new URL(request.url, 'http://receiver')
      // WebSub's verification of intent: echo the challenge.
      const challenge = url.searchParams.get('hub.challenge')
      if (request.method === 'GET') return { status: challenge === null ? 404 : 200, body: challenge ?? '' }
      const event = eventOf(request)
      targets.get(url.pathname)?.receive({ topic: event.topic, seq: event.seq, id: event.id })
      return { status: 200, delayMs: deliveryDelayMs }
    })
    cluster = await Cluster.start({ bus: 'redis' })
  })
  after(async () => {
    await cluster?.cleanup()
    await receiver?.close()
  })

  // Through the proxy: any live node answers (a test kills one, which may be the first).
  const read = (topic: string) => readAll(cluster.url, topic)

  async function createHook(body: Record<string, unknown>): Promise<string> {
    const response = await fetch(`${cluster.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(response.status, 201, await response.clone().text())
    return ((await response.json()) as { id: string }).id
  }

  /** The nodes holding leases on the hook's deliveries right now. */
  async function leaseOwners(hookId?: string): Promise<string[]> {
    const rows = await cluster.query<{ owner: string }>(
      `SELECT DISTINCT lease_owner AS owner FROM deliveries WHERE lease_owner IS NOT NULL ${hookId ? 'AND hook_id = $1' : ''}`,
      hookId ? [hookId] : [],
    )
    return rows.map((row) => row.owner)
  }

  test('500 events to an ordered hook and a WebSub subscription, all nodes dispatching: each delivered, in order, none twice', async () => {
    const topics = Array.from({ length: 10 }, (_, i) => `w${i}`)
    const history = new History()
    targets.set('/ordered', history.hook('webhook', topics, { ordered: true }))
    targets.set('/websub', history.hook('websub', ['w0'], { ordered: true }))
    const hookId = await createHook({ target_url: `${receiver.url}/ordered`, event: 'load', ordered: true })
    const subscribed = await fetch(`${cluster.url}/websub`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        'hub.mode': 'subscribe',
        'hub.topic': `${cluster.url}/v1/topics/w0`,
        'hub.callback': `${receiver.url}/websub`,
      }),
    })
    assert.equal(subscribed.status, 202)
    await until('the WebSub subscription to be verified', async () => {
      const list = (await (await fetch(`${cluster.url}/v1/websub/subscriptions`)).json()) as {
        subscriptions: unknown[]
      }
      return list.subscriptions.length === 1 ? true : undefined
    })

    let timings = ''
    // Which nodes hold leases, sampled while the deliveries go out.
    const senders = new Set<string>()
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        for (const owner of await leaseOwners()) senders.add(owner)
        await sleep(50)
      }
    })()
    const started = performance.now()
    const load = publishLoad(history, cluster.url, topics, { workers: 4 })
    try {
      while (history.acknowledgedCount < 500) await sleep(10)
    } finally {
      await load.stop()
    }
    const published = performance.now()
    try {
      const hooks = [...targets.values()]
      await until(
        'every event delivered',
        () =>
          hooks.every((hook) => hook.topics.every((topic) => hook.distinct(topic) === history.head(topic)))
            ? true
            : undefined,
        60_000,
      )
      timings = `published in ${Math.round(published - started)} ms, all delivered ${Math.round(performance.now() - published)} ms later`
      await sleep(1000) // time for a resend to show up, were one sent
    } finally {
      sampling = false
      await sampler
    }
    const report = await history.check({ read, strictStore: true })
    process.stderr.write(describeReport('ordered hook and WebSub from 3 nodes', report))
    process.stderr.write(
      `${timings}; nodes seen holding delivery leases: ${[...senders].sort().join(', ')}\n`,
    )
    assert.ok(senders.size >= 2, `deliveries were sent by several nodes (${[...senders].join(', ')})`)
    targets.clear()
    assert.equal((await fetch(`${cluster.url}/v1/hooks/${hookId}`, { method: 'DELETE' })).status, 204)
  })

  test('kill -9 of the node sending an ordered run: another node delivers the rest within 10 s of the death', async () => {
    const history = new History()
    const hook = history.hook('run', ['run'], { ordered: true })
    targets.set('/run', hook)
    const hookId = await createHook({ target_url: `${receiver.url}/run`, topic: 'run', ordered: true })
    // Slow answers, so that the run is still going when its node dies.
    deliveryDelayMs = 50
    const publisher = new Publisher(history, 'run')
    for (let i = 0; i < 6; i++) await publisher.publish(cluster.url, 'run', 50)
    await until('the run to be under way', () => (hook.distinct('run') >= 20 ? true : undefined), 20_000)
    // One node holds the queue's run (none for an instant, between two runs of it).
    const owners = await until('the node sending the run', async () => {
      const now = await leaseOwners(hookId)
      assert.ok(now.length <= 1, `one node at a time sends an ordered queue (${now.join(', ')})`)
      return now.length === 1 ? now : undefined
    })
    const index = cluster.nodes.findIndex((node) => node.id === owners[0])
    const before = hook.distinct('run')
    await cluster.stopNode(index, 'SIGKILL')
    const diedAt = Date.now()
    deliveryDelayMs = 0
    await until('the rest delivered', () => (hook.distinct('run') === 300 ? true : undefined), 30_000)
    const doneAfter = Date.now() - diedAt
    // Whatever arrived after the death came from another node.
    const firstAfter = receiver.received.find((request) => request.at >= diedAt && request.url === '/run')
    const takenOverAfter = firstAfter === undefined ? Number.NaN : firstAfter.at - diedAt
    const now = await leaseOwners(hookId)
    assert.ok(!now.includes(owners[0]!), 'the dead node holds no lease')
    await sleep(1000)
    const report = await history.check({ read, strictStore: true, resendsAllowed: ['run'] })
    process.stderr.write(describeReport(`kill -9 of ${owners[0]} mid-run`, report))
    process.stderr.write(
      `kill -9 of ${owners[0]} after ${before} of 300: another node sent again after ${takenOverAfter} ms, all delivered ${doneAfter} ms after the death\n`,
    )
    assert.ok(doneAfter <= 10_000, `the rest was delivered ${doneAfter} ms after the death`)
  })
})
