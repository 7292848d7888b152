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

test('on the WebSocket, publish goes over the socket; the same id published again is stored once', async () => {
  const client = new Herald({ url: server.url, transport: 'ws', heartbeat: 1000 })
  const httpPublishes = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    return text
      .split('\n')
      .filter((line) => line.startsWith('herald_publish_requests_total{'))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
  }
  try {
    client.subscribe('socket/pub', () => {}, { after: 0 })
    await until('connected', () => (client.state === 'connected' ? true : undefined))
    const before = await httpPublishes()
    const first = await client.publish('socket/pub', { type: 'm', data: 1, id: 'msg-1' })
    const again = await client.publish('socket/pub', { type: 'm', data: 1, id: 'msg-1' })
    assert.equal(first.seq, 1)
    assert.equal(again.seq, 1, 'a repeat of (source, id) is the stored event, not a new one')
    assert.equal(await httpPublishes(), before, 'no HTTP publish request was made')
    const stored = (await (await fetch(`${server.url}/v1/topics/socket/pub/events`)).json()) as {
      events: unknown[]
    }
    assert.equal(stored.events.length, 1)
  } finally {
    client.close()
  }
})
