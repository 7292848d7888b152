import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from '../backends.ts'
import { startReceiver } from '../delivery/receiver.ts'
import { publish, runCli, type ServerProcess, spawnServer, startTestServer, until } from '../helpers.ts'
import { StreamReader } from '../streams/clients.ts'

const postgres = (await backends()).find((backend) => backend.name === 'PostgreSQL')!

const KEY = 'cluster-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }

interface ClusterView {
  store: string
  bus: string
  nodes: Array<{ id: string; started_at: string; heartbeat_at: string; leader: boolean }>
}

async function cluster(url: string, headers: Record<string, string> = {}): Promise<ClusterView> {
  const response = await fetch(`${url}/v1/cluster`, { headers })
  assert.equal(response.status, 200)
  return (await response.json()) as ClusterView
}

/** The nodes as [id, leader] pairs. */
async function leaders(url: string): Promise<Array<[string, boolean]>> {
  return (await cluster(url)).nodes.map((node) => [node.id, node.leader])
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

test('GET /v1/cluster on SQLite: the one node, its leader; admin only; herald cluster prints it', async () => {
  const server = await startTestServer({ apiKey: KEY, nodeId: 'solo-node' })
  try {
    const refused = await fetch(`${server.url}/v1/cluster`)
    assert.equal(refused.status, 401)
    const view = await cluster(server.url, AUTH)
    assert.deepEqual(Object.keys(view), ['store', 'bus', 'nodes'])
    assert.deepEqual([view.store, view.bus], ['sqlite', 'local'])
    assert.equal(view.nodes.length, 1)
    const [node] = view.nodes
    assert.deepEqual(Object.keys(node!), ['id', 'started_at', 'heartbeat_at', 'leader'])
    assert.deepEqual([node!.id, node!.leader], ['solo-node', true])
    assert.match(node!.started_at, ISO)
    assert.match(node!.heartbeat_at, ISO)
    assert.ok(Date.parse(node!.heartbeat_at) >= Date.parse(node!.started_at))
    assert.ok(Math.abs(Date.now() - Date.parse(node!.started_at)) < 60_000)

    const json = await runCli(['cluster', '--url', server.url, '--api-key', KEY])
    assert.equal(json.code, 0, json.stderr)
    assert.deepEqual(JSON.parse(json.stdout).nodes[0].id, 'solo-node')
    const table = await runCli(['cluster', '--url', server.url, '--api-key', KEY, '--table'])
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, /^store sqlite, bus local\n/)
    assert.match(table.stdout, /NODE\s+LEADER\s+STARTED\s+HEARTBEAT\n/)
    assert.match(table.stdout, /solo-node\s+yes\s+\d{4}-/)
    const denied = await runCli(['cluster', '--url', server.url])
    assert.equal(denied.code, 1)
    assert.match(denied.stderr, /API key/)
  } finally {
    await server.close()
  }
})

/** Two `herald serve` processes on one PostgreSQL schema, a and b (started in that order). */
async function twoNodes() {
  const data = await postgres.open()
  const a = await spawnServer([...data.args, '--node-id', 'node-a'], data.env)
  let b: ServerProcess | undefined
  try {
    b = await spawnServer([...data.args, '--node-id', 'node-b'], data.env)
  } catch (error) {
    a.child.kill('SIGKILL')
    await data.cleanup()
    throw error
  }
  return {
    a,
    b,
    async cleanup() {
      for (const server of [a, b!]) server.child.kill('SIGKILL')
      await Promise.all([a.exited, b!.exited])
      await data.cleanup()
    },
  }
}

test('GET /v1/cluster on PostgreSQL with two processes: both listed the same from either, one leader; a graceful stop hands the leadership over at once', {
  skip: postgres.skip,
}, async (t) => {
  const { a, b, cleanup } = await twoNodes()
  try {
    const fromA = await cluster(a.url)
    assert.deepEqual([fromA.store, fromA.bus], ['postgres', 'local'])
    assert.deepEqual(await leaders(a.url), [
      ['node-a', true],
      ['node-b', false],
    ])
    assert.deepEqual(await leaders(b.url), await leaders(a.url), 'every node answers from the store')
    for (const node of fromA.nodes) {
      assert.match(node.started_at, ISO)
      assert.match(node.heartbeat_at, ISO)
    }
    // The leader's stream is open when it stops: it ends with a reconnect hint.
    const stream = await StreamReader.open(`${a.url}/v1/topics/bye/events`, { accept: 'text/event-stream' })
    await stream.until(() => stream.text.startsWith('retry:'))
    a.child.kill('SIGTERM')
    const stoppedAt = Date.now()
    await stream.ended()
    assert.match(stream.text, /retry: 500\n\n$/)
    assert.equal((await a.exited).code, 0, a.output())
    assert.match(a.output(), /this node is no longer the leader: it stops/)
    // Released, not left to run out (10 s): node b takes over at its next try (every 2 s).
    await until('node b to lead', async () => {
      const nodes = await leaders(b.url)
      return nodes.length === 1 && nodes[0]![0] === 'node-b' && nodes[0]![1] ? true : undefined
    })
    const tookOver = Date.now() - stoppedAt
    t.diagnostic(`node b led ${tookOver} ms after node a was sent SIGTERM`)
    assert.ok(tookOver < 6_000, `node b led ${tookOver} ms after node a stopped`)
    // Its log line may reach us a moment after the store shows it leading (a pipe between us).
    await until('node b to log its leadership in term 2', () =>
      /"term":2,"msg":"this node is the leader"/.test(b.output()) ? true : undefined,
    )
  } finally {
    await cleanup()
  }
})

test('kill -9 of the leader in the middle of a delivery: the other node sends it within 10 s, then leads', {
  skip: postgres.skip,
}, async (t) => {
  const data = await postgres.open()
  let answering = false
  // The first request is held unanswered: node a's attempt is in flight when it dies.
  const receiver = await startReceiver(() => (answering ? { status: 200 } : { status: 200, delayMs: 60_000 }))
  // A lease of 2 × 15 s + 5 s = 35 s: only the rescue of a dead node frees the delivery in time.
  const args = [...data.args, '--allow-private-targets', 'true', '--delivery-timeout', '15s']
  const a = await spawnServer([...args, '--node-id', 'node-a'], data.env)
  let b: ServerProcess | undefined
  try {
    const created = await fetch(`${a.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: `${receiver.url}/held`, topic: 'held' }),
    })
    assert.equal(created.status, 201)
    assert.equal((await publish(a.url, 'held', { type: 'h' })).status, 201)
    await receiver.waitFor(1)
    // Node b joins while node a holds the delivery and the leadership.
    b = await spawnServer([...args, '--node-id', 'node-b'], data.env)
    assert.deepEqual(await leaders(b.url), [
      ['node-a', true],
      ['node-b', false],
    ])
    a.child.kill('SIGKILL')
    assert.equal((await a.exited).signal, 'SIGKILL')
    const diedAt = Date.now()
    answering = true
    const [first, second] = await receiver.waitFor(2, () => true, 15_000)
    assert.equal(first!.headers['webhook-id'], second!.headers['webhook-id'], 'the same delivery')
    t.diagnostic(`sent again ${second!.at - diedAt} ms after the death`)
    assert.ok(second!.at - diedAt < 10_000, `sent again ${second!.at - diedAt} ms after the death`)
    const bUrl = b.url
    // Node a is forgotten at once (its session is gone); the leadership waits for its lease to end.
    await until('node a to be forgotten', async () => ((await leaders(bUrl)).length === 1 ? true : undefined))
    await until(
      'node b to lead',
      async () => ((await leaders(bUrl))[0]?.[1] === true ? true : undefined),
      15_000,
    )
    const ledAfter = Date.now() - diedAt
    t.diagnostic(`node b led ${ledAfter} ms after the death`)
    // a renewed at most 2 s before it died, for 10 s; b tries every 2 s.
    assert.ok(ledAfter < 13_000, `node b led ${ledAfter} ms after the death`)
    assert.equal(receiver.received.length, 2, 'sent again once')
  } finally {
    a.child.kill('SIGKILL')
    b?.child.kill('SIGKILL')
    await Promise.all([a.exited, b?.exited])
    await receiver.close()
    await data.cleanup()
  }
})
