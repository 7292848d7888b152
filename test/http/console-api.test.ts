import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { startReceiver } from '../delivery/receiver.ts'
import { problemOf, publish, readAll, startTestServer, type TestServer, until } from '../helpers.ts'
import { StreamReader, WsClient } from '../streams/clients.ts'

const ROOT_KEY = 'root-key-0123456789abcdef'
const root = { authorization: `Bearer ${ROOT_KEY}` }

async function get(server: TestServer, path: string, headers: Record<string, string> = root) {
  return fetch(`${server.url}${path}`, { headers })
}

async function post(server: TestServer, path: string, body: unknown) {
  return fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { ...root, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

interface ConnectionJson {
  id: string
  protocol: string
  topics: string[]
  topic_count: number
  sub?: string
  actor: string | null
  remote: string | null
  since: string
}

describe('GET and DELETE /v1/connections', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY })
  })
  after(() => server.close())

  test("lists this node's streams and sockets with protocol, topics, who and where; closes one", async () => {
    const sse = await StreamReader.open(`${server.url}/v1/topics/c1/events`, {
      ...root,
      accept: 'text/event-stream',
    })
    const ndjson = await StreamReader.open(`${server.url}/v1/stream?topic=c1&topic=c2`, {
      ...root,
      accept: 'application/x-ndjson',
    })
    const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${ROOT_KEY}`)
    ws.send({ op: 'subscribe', topic: 'c3', ref: 1 })
    await ws.reply(1)
    try {
      const answer = (await (await get(server, '/v1/connections')).json()) as {
        node: string
        connections: ConnectionJson[]
        next: string | null
      }
      assert.equal(typeof answer.node, 'string')
      const byProtocol = Object.fromEntries(answer.connections.map((c) => [c.protocol, c]))
      assert.deepEqual(byProtocol['sse']!.topics, ['c1'])
      assert.deepEqual(byProtocol['ndjson']!.topics.sort(), ['c1', 'c2'])
      assert.deepEqual(byProtocol['ws']!.topics, ['c3'])
      for (const connection of answer.connections) {
        assert.equal(connection.actor, 'root')
        assert.equal(connection.remote, '127.0.0.1')
        assert.ok(Date.parse(connection.since) <= Date.now())
      }
      const onlyWs = (await (await get(server, '/v1/connections?protocol=ws')).json()) as {
        connections: ConnectionJson[]
      }
      assert.deepEqual(
        onlyWs.connections.map((c) => c.protocol),
        ['ws'],
      )

      // Closing: the SSE stream ends, the socket closes with 4000; each is gone from the list.
      assert.equal(
        (
          await fetch(`${server.url}/v1/connections/${byProtocol['sse']!.id}`, {
            method: 'DELETE',
            headers: root,
          })
        ).status,
        204,
      )
      await sse.ended()
      const closed = once(ws.ws, 'close')
      assert.equal(
        (
          await fetch(`${server.url}/v1/connections/${byProtocol['ws']!.id}`, {
            method: 'DELETE',
            headers: root,
          })
        ).status,
        204,
      )
      assert.equal(((await closed) as [number])[0], 4000)
      const left = (await (await get(server, '/v1/connections')).json()) as { connections: ConnectionJson[] }
      assert.deepEqual(
        left.connections.map((c) => c.protocol),
        ['ndjson'],
      )
      await problemOf(
        await fetch(`${server.url}/v1/connections/${byProtocol['sse']!.id}`, {
          method: 'DELETE',
          headers: root,
        }),
        404,
      )
      // The closing is on the audit trail.
      const trail = await readAll(server.url, 'herald.system', root)
      assert.equal(trail.filter((event) => event.type === 'connection.closed').length, 2)
    } finally {
      sse.close()
      ndjson.close()
      await ws.close()
    }
  })

  test('a key without admin may not list or close connections; bad filters are 400s', async () => {
    const created = await post(server, '/v1/keys', {
      name: 'reader',
      scopes: [{ actions: ['subscribe'], topics: ['**'] }],
    })
    const key = ((await created.json()) as { key: string }).key
    await problemOf(await get(server, '/v1/connections', { authorization: `Bearer ${key}` }), 403)
    await problemOf(await get(server, '/v1/connections?protocol=smtp'), 400)
    await problemOf(await get(server, '/v1/connections?limit=0'), 400)
  })
})

describe('GET /v1/deliveries and POST /v1/deliveries/retry', () => {
  let server: TestServer
  let receiver: Awaited<ReturnType<typeof startReceiver>>
  before(async () => {
    receiver = await startReceiver()
    server = await startTestServer({ apiKey: ROOT_KEY, allowPrivateTargets: true, retryScheduleMs: [0] })
  })
  after(async () => {
    await server.close()
    await receiver.close()
  })

  test('failed deliveries across hooks are listed by state, hook and topic, and "retry all failed since" retries exactly those', async () => {
    // /down fails everything; /up takes everything. One attempt each (a retry schedule of one).
    receiver.answer = (request) =>
      request.url === '/down' ? { status: 500, body: 'down for maintenance' } : { status: 200 }
    const hooks: Record<string, string> = {}
    for (const path of ['down', 'up']) {
      const response = await post(server, '/v1/hooks', {
        target_url: `${receiver.url}/${path}`,
        topic: 'orders',
        ordered: false,
      })
      assert.equal(response.status, 201)
      hooks[path] = ((await response.json()) as { id: string }).id
    }
    const before = new Date(Date.now() - 1000).toISOString()
    for (let i = 0; i < 3; i++)
      assert.equal((await publish(server.url, 'orders', { type: 'o', data: i }, root)).status, 201)
    await receiver.waitFor(6, () => true)
    const failed = await until('three failed deliveries', async () => {
      const page = (await (await get(server, '/v1/deliveries?state=failed')).json()) as {
        deliveries: Array<{
          id: number
          hook_id: string
          state: string
          last_status: number | null
          topic: string
        }>
      }
      return page.deliveries.length === 3 ? page.deliveries : undefined
    })
    assert.ok(
      failed.every((d) => d.hook_id === hooks['down'] && d.last_status === 500 && d.topic === 'orders'),
    )
    const delivered = (await (
      await get(server, `/v1/deliveries?state=delivered&hook=${hooks['up']}`)
    ).json()) as {
      deliveries: unknown[]
    }
    assert.equal(delivered.deliveries.length, 3)
    assert.equal(
      ((await (await get(server, '/v1/deliveries?topic=invoices')).json()) as { deliveries: unknown[] })
        .deliveries.length,
      0,
    )
    await problemOf(await get(server, '/v1/deliveries?state=lost'), 400)
    await problemOf(await get(server, '/v1/deliveries?since=yesterday'), 400)

    // The target is back: retry everything that failed since before the publishes.
    receiver.answer = () => ({ status: 200 })
    const seenBefore = receiver.received.length
    const retried = await post(server, '/v1/deliveries/retry', { state: 'failed', since: before })
    assert.equal(retried.status, 202)
    assert.deepEqual(await retried.json(), { queued: 3, more: false })
    const again = await receiver.waitFor(seenBefore + 3, () => true)
    const resent = again.slice(seenBefore)
    assert.ok(
      resent.every((request) => request.url === '/down'),
      'only the failed ones are sent again',
    )
    await until('none failed', async () => {
      const page = (await (await get(server, '/v1/deliveries?state=failed')).json()) as {
        deliveries: unknown[]
      }
      return page.deliveries.length === 0 ? true : undefined
    })
    assert.equal(receiver.received.length, seenBefore + 3, 'nothing else was sent')
    await problemOf(await post(server, '/v1/deliveries/retry', { state: 'delivered' }), 400)
    await problemOf(await post(server, '/v1/deliveries/retry', { state: 'failed', limit: 0 }), 400)
    await problemOf(await post(server, '/v1/deliveries/retry', { state: 'failed', everything: true }), 400)
  })
})

describe('POST /v1/hooks/{id}/test', () => {
  test('sends one signed herald.test event now and answers with what the receiver said; nothing is stored', async () => {
    const receiver = await startReceiver((request) =>
      request.url === '/broken' ? { status: 503, body: 'try later' } : { status: 200, body: 'thanks' },
    )
    const server = await startTestServer({ apiKey: ROOT_KEY, allowPrivateTargets: true })
    try {
      const created = await post(server, '/v1/hooks', { target_url: `${receiver.url}/ok`, topic: 'orders' })
      const hook = (await created.json()) as { id: string; secret: string }
      const sent = await post(server, `/v1/hooks/${hook.id}/test`, {})
      assert.equal(sent.status, 200)
      const answer = (await sent.json()) as { event_id: string; status: number; response: string }
      assert.equal(answer.status, 200)
      assert.equal(answer.response, 'thanks')
      const [request] = await receiver.waitFor(1, (r) => r.url === '/ok')
      // Signed as every delivery is: the Standard Webhooks reference verifier accepts it.
      const payload = new Webhook(hook.secret).verify(
        request!.body,
        request!.headers as Record<string, string>,
      ) as {
        type: string
        id: string
      }
      assert.equal(payload.type, 'herald.test')
      assert.equal(payload.id, answer.event_id)
      // Not an event of any topic, not a delivery.
      assert.equal((await readAll(server.url, 'orders', root)).length, 0)
      const deliveries = (await (await get(server, `/v1/deliveries?hook=${hook.id}`)).json()) as {
        deliveries: unknown[]
      }
      assert.equal(deliveries.deliveries.length, 0)

      const broken = await post(server, '/v1/hooks', {
        target_url: `${receiver.url}/broken`,
        topic: 'orders',
      })
      const brokenId = ((await broken.json()) as { id: string }).id
      const failed = (await (await post(server, `/v1/hooks/${brokenId}/test`, {})).json()) as {
        status: number
        response: string
      }
      assert.deepEqual([failed.status, failed.response], [503, 'try later'])
      await problemOf(await post(server, '/v1/hooks/nope/test', {}), 404)
    } finally {
      await server.close()
      await receiver.close()
    }
  })
})
