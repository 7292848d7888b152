import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type Gap, Herald } from '../../src/client/index.ts'
import { publish, startTestServer, type TestServer, until } from '../helpers.ts'

describe('client: onGap', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ pruneIntervalMs: 50, heartbeatMs: 1000 })
  })
  after(() => server.close())

  for (const transport of ['ws', 'sse', 'poll'] as const) {
    test(`${transport}: a cursor below what retention kept is reported, then delivery goes on from the floor`, async () => {
      const topic = `gap/${transport}`
      const put = await fetch(`${server.url}/v1/topics/${topic}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ retention: { max_events: 5 } }),
      })
      assert.ok(put.ok, `PUT ${put.status}`)
      for (let i = 0; i < 20; i++) await publish(server.url, topic, { type: 'x', data: i })
      await until('pruned', async () => {
        const meta = (await (await fetch(`${server.url}/v1/topics/${topic}`)).json()) as { first_seq: number }
        return meta.first_seq === 16 ? true : undefined
      })
      const client = new Herald({ url: server.url, transport, heartbeat: 1000 })
      const seen: Array<number | Gap> = []
      try {
        client.subscribe(topic, (event) => seen.push(event.seq), { after: 3, onGap: (gap) => seen.push(gap) })
        await until('the retained events', () => (seen.length >= 6 ? true : undefined), 30_000)
        await publish(server.url, topic, { type: 'x' })
        await until('the next one', () => (seen.length >= 7 ? true : undefined), 30_000)
        assert.deepEqual(seen, [{ topic, after: 3, first_seq: 16, reason: 'pruned' }, 16, 17, 18, 19, 20, 21])
      } finally {
        client.close()
      }
    })

    test(`${transport}: a cursor past the head (a store restored from an older backup) is reported, then new events come`, async () => {
      const topic = `ahead/${transport}`
      for (let i = 0; i < 3; i++) await publish(server.url, topic, { type: 'x' })
      const client = new Herald({ url: server.url, transport, heartbeat: 1000 })
      const seen: Array<number | Gap> = []
      try {
        client.subscribe(topic, (event) => seen.push(event.seq), {
          after: 100,
          onGap: (gap) => seen.push(gap),
        })
        await until('the gap', () => (seen.length >= 1 ? true : undefined), 30_000)
        await publish(server.url, topic, { type: 'x' })
        await until('the next event', () => (seen.length >= 2 ? true : undefined), 30_000)
        assert.deepEqual(seen, [{ topic, after: 100, head_seq: 3, reason: 'ahead' }, 4])
      } finally {
        client.close()
      }
    })
  }
})
