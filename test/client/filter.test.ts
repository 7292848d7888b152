import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Herald } from '../../src/client/index.ts'
import { publish, startTestServer, type TestServer, until } from '../helpers.ts'

let server: TestServer
before(async () => {
  server = await startTestServer({ heartbeatMs: 1000 })
})
after(() => server.close())

test('a subscription with a filter gets only the events it accepts; another on the same topic gets all', async () => {
  const client = new Herald({ url: server.url, transport: 'ws', heartbeat: 1000 })
  const kept: number[] = []
  const all: number[] = []
  try {
    client.subscribe('orders', (event) => kept.push(event.seq), {
      after: 0,
      filter: (event) => event.type === 'order.paid',
    })
    client.subscribe('orders', (event) => all.push(event.seq), { after: 0 })
    for (const type of ['order.created', 'order.paid', 'order.created', 'order.paid']) {
      assert.equal((await publish(server.url, 'orders', { type })).status, 201)
    }
    await until('every event to the unfiltered subscription', () => (all.length === 4 ? true : undefined))
    assert.deepEqual(kept, [2, 4])
    assert.deepEqual(all, [1, 2, 3, 4])
  } finally {
    client.close()
  }
})
