import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from '../backends.ts'
import { publish, spawnServer, until } from '../helpers.ts'
import { startReceiver } from './receiver.ts'

const PUBLIC_URL = 'http://herald.test'

/**
 * Node A takes a subscription request and starts its verification of intent; the callback holds A's
 * GET, so A is mid-verification when it is killed (kill -9). The request was recorded before its 202:
 * on PostgreSQL node B, running beside A on the same schema, finds it (A is gone from the nodes at B's
 * next heartbeat); on SQLite the server started again on the data directory does. Either verifies it
 * with a challenge of its own, and the subscription gets content.
 */
for (const backend of await backends()) {
  const by = backend.name === 'PostgreSQL' ? 'another node' : 'the restarted server'
  test(`a WebSub verification of intent started on a node that dies is finished by ${by} (${backend.name}, kill -9)`, {
    skip: backend.skip,
  }, async () => {
    const data = await backend.open()
    // GETs are verifications: the first (A's) is held and never answered in time; the others echo
    // their challenge. POSTs are distributions.
    let gets = 0
    const subscriber = await startReceiver((request) => {
      if (request.method !== 'GET') return { status: 200 }
      const challenge = new URL(request.url, 'http://x').searchParams.get('hub.challenge') ?? ''
      return gets++ === 0
        ? { status: 200, body: challenge, delayMs: 60_000 }
        : { status: 200, body: challenge }
    })
    const args = [...data.args, '--allow-private-targets', 'true', '--public-url', PUBLIC_URL]
    const a = await spawnServer(args, data.env)
    let b: Awaited<ReturnType<typeof spawnServer>> | undefined
    try {
      if (backend.name === 'PostgreSQL') b = await spawnServer(args, data.env)
      const callback = `${subscriber.url}/takeover`
      const topic = `${PUBLIC_URL}/v1/topics/takeover`
      const accepted = await fetch(`${a.url}/websub`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          'hub.mode': 'subscribe',
          'hub.topic': topic,
          'hub.callback': callback,
          'hub.secret': 'a secret of the subscriber',
          'hub.lease_seconds': '3600',
        }).toString(),
      })
      assert.equal(accepted.status, 202)
      const [first] = await subscriber.waitFor(1, (r) => r.method === 'GET')
      const firstChallenge = new URL(first!.url, 'http://x').searchParams.get('hub.challenge')

      a.child.kill('SIGKILL')
      await a.exited
      const killedAt = Date.now()
      b ??= await spawnServer(args, data.env)
      const bUrl = b.url
      const verification = await until(
        'node B to finish the verification',
        async () => {
          const list = (await (await fetch(`${bUrl}/v1/websub/verifications`)).json()) as {
            verifications: Array<Record<string, unknown>>
          }
          return list.verifications.find((v) => v['callback'] === callback && v['state'] !== 'pending')
        },
        15_000,
      )
      assert.equal(verification['state'], 'verified', String(verification['error']))
      assert.ok(Date.now() - killedAt < 15_000)
      assert.equal(verification['secret'], undefined, 'the admin API never shows the secret')
      const verifying = subscriber.received.filter((r) => r.method === 'GET')
      assert.equal(verifying.length, 2, `verified once more, by ${by}`)
      const second = new URL(verifying[1]!.url, 'http://x').searchParams
      assert.notEqual(second.get('hub.challenge'), firstChallenge, 'with a challenge of its own')
      assert.deepEqual(
        [second.get('hub.mode'), second.get('hub.topic'), second.get('hub.lease_seconds')],
        ['subscribe', topic, '3600'],
      )

      // The subscription is B's now, with the subscriber's secret: content is distributed, signed.
      assert.equal((await publish(bUrl, 'takeover', { type: 'note', data: { n: 1 } })).status, 201)
      const [content] = await subscriber.waitFor(1, (r) => r.method === 'POST' && r.url === '/takeover')
      assert.equal(JSON.parse(content!.body).data.n, 1)
      assert.match(String(content!.headers['x-hub-signature']), /^sha256=[0-9a-f]{64}$/)
      const logged = b.output()
      assert.ok(!logged.includes('a secret of the subscriber'), 'the secret is never logged')
    } finally {
      a.child.kill('SIGKILL')
      b?.child.kill('SIGKILL')
      await Promise.all([a.exited, b?.exited])
      await subscriber.close()
      await data.cleanup()
    }
  })
}
