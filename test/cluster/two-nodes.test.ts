import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from '../backends.ts'
import { eventOf, startReceiver } from '../delivery/receiver.ts'
import { publish, readAll, type StoredEventJson, sleep, spawnServer } from '../helpers.ts'

const postgres = (await backends()).find((backend) => backend.name === 'PostgreSQL')!

/**
 * Two Herald processes on one PostgreSQL schema, as two nodes of a cluster behind a load balancer
 * would be: publishers alternate between them on one topic, and both dispatch one hook's queue.
 */
test('two Herald processes on one database: concurrent publishes to one topic stay gapless; each delivery is sent once, in order', {
  skip: postgres.skip,
}, async () => {
  const data = await postgres.open()
  const receiver = await startReceiver(() => ({ status: 200 }))
  const args = [...data.args, '--allow-private-targets', 'true', '--log-level', 'info']
  const nodes = [await spawnServer(args, data.env), await spawnServer(args, data.env)]
  try {
    const created = await fetch(`${nodes[0]!.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: `${receiver.url}/both`, topic: 'shared' }),
    })
    assert.equal(created.status, 201)
    const acknowledged = new Map<number, string>()
    const byNode = [0, 0]
    const publisher = async (worker: number) => {
      for (let i = 0; i < 60; i++) {
        const node = (worker + i) % 2
        const body =
          i % 5 === 0
            ? [
                { type: 'b', data: i },
                { type: 'b', data: i },
              ]
            : { type: 's', data: i }
        const response = await publish(nodes[node]!.url, 'shared', body)
        assert.equal(response.status, 201)
        const stored = (await response.json()) as StoredEventJson | StoredEventJson[]
        for (const event of Array.isArray(stored) ? stored : [stored]) acknowledged.set(event.seq, event.id)
        byNode[node]!++
      }
    }
    await Promise.all(Array.from({ length: 8 }, (_, worker) => publisher(worker)))
    assert.ok(byNode[0]! > 0 && byNode[1]! > 0, 'both nodes took publishes')

    for (const node of nodes) {
      const events = await readAll(node.url, 'shared')
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: acknowledged.size }, (_, i) => i + 1),
        'gapless from 1, the same on each node',
      )
      for (const event of events) assert.equal(acknowledged.get(event.seq), event.id)
    }

    // Every event delivered once (one webhook-id each, no second send), in seq order.
    const got = await receiver.waitFor(acknowledged.size, () => true, 30_000)
    await sleep(1500) // time for a duplicate to show up, were one sent
    const ids = receiver.received.map((request) => request.headers['webhook-id'])
    assert.equal(new Set(ids).size, ids.length, 'no delivery sent twice')
    assert.equal(receiver.received.length, acknowledged.size)
    assert.deepEqual(
      got.map((request) => eventOf(request).seq),
      [...acknowledged.keys()].sort((a, b) => a - b),
      'in order',
    )
    const cluster = await Promise.all(nodes.map((node) => node.output()))
    assert.ok(
      cluster.every((output) => !output.includes('"level":50')),
      'no error logged by either node',
    )
  } finally {
    for (const node of nodes) node.child.kill('SIGTERM')
    await Promise.all(nodes.map((node) => node.exited))
    await receiver.close()
    await data.cleanup()
  }
})
