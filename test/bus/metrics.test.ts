import assert from 'node:assert/strict'
import { test } from 'node:test'
import { publish, startTestServer, until } from '../helpers.ts'
import { dropSchema, postgresMissing, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { programMissing, skipWithout, startPrivateRedis } from '../services.ts'

const skip = await skipWithout(
  (await postgresMissing()) ?? programMissing('redis-server', 'apt-get install redis-server'),
)

/** One series of `GET /metrics`, e.g. `herald_bus_connected` or `herald_x_total{label="v"}`. */
async function metric(url: string, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text()
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const SENT = 'herald_bus_messages_total{direction="sent"}'
const RECEIVED = 'herald_bus_messages_total{direction="received"}'
const CONNECTED = 'herald_bus_connected'

test('GET /metrics of two nodes on PostgreSQL + Redis: bus messages sent and received, and the bus connection through an outage', {
  skip,
}, async () => {
  const redis = await startPrivateRedis()
  const schema = testSchema('bus')
  const cluster = { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema, busUrl: redis.url }
  const a = await startTestServer(cluster)
  const b = await startTestServer(cluster)
  const single = await startTestServer()
  try {
    const values = (url: string) =>
      Promise.all([SENT, RECEIVED, CONNECTED].map((series) => metric(url, series)))
    assert.deepEqual(await values(single.url), [0, 0, 1], 'a single node: no messages, always connected')
    assert.deepEqual(await values(a.url), [0, 0, 1])

    assert.equal((await publish(a.url, 'orders', { type: 'order.created' })).status, 201)
    await until('node B to count the message', async () => (await metric(b.url, RECEIVED)) === 1 || undefined)
    // Its own message comes back to node A through Redis, and is not counted.
    assert.deepEqual(await values(a.url), [1, 0, 1])
    assert.deepEqual(await values(b.url), [0, 1, 1])

    await redis.stop()
    for (const node of [a, b])
      await until('the bus to be down', async () => (await metric(node.url, CONNECTED)) === 0 || undefined)
    await redis.start()
    for (const node of [a, b])
      await until(
        'the bus to be back',
        async () => (await metric(node.url, CONNECTED)) === 1 || undefined,
        20_000,
      )
  } finally {
    await Promise.all([a.close(), b.close(), single.close()])
    await redis.remove()
    await dropSchema(schema)
  }
})
