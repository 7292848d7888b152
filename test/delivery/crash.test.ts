import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from '../backends.ts'
import { publish, sleep, spawnServer } from '../helpers.ts'
import { eventOf, startReceiver } from './receiver.ts'

// Forty quick retries: the receiver stays down for several of them, and none may run out.
const ARGS = [
  '--allow-private-targets',
  'true',
  '--retry-schedule',
  Array.from({ length: 40 }, (_, i) => (i === 0 ? '0s' : '100ms')).join(','),
  '--delivery-timeout',
  '1s',
]

for (const backend of await backends()) {
  test(`SIGKILL while deliveries are pending and the receiver is down: after a restart every event is delivered, in order (${backend.name})`, {
    skip: backend.skip,
  }, async () => {
    const data = await backend.open()
    // A port with nothing listening on it: the receiver is down.
    const probe = await startReceiver()
    const port = probe.port
    await probe.close()
    const target = `http://127.0.0.1:${port}`

    let server = await spawnServer([...data.args, ...ARGS], data.env)
    let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined
    try {
      const hookIds: string[] = []
      for (const path of ['/one', '/two']) {
        const response = await fetch(`${server.url}/v1/hooks`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ target_url: `${target}${path}`, topic: 'crash' }),
        })
        assert.equal(response.status, 201)
        hookIds.push(((await response.json()) as { id: string }).id)
      }
      const published: number[] = []
      for (let batch = 0; batch < 10; batch++) {
        const response = await publish(
          server.url,
          'crash',
          Array.from({ length: 5 }, (_, i) => ({ type: 'c', data: batch * 5 + i })),
        )
        assert.equal(response.status, 201)
        for (const event of (await response.json()) as Array<{ seq: number }>) published.push(event.seq)
      }
      // Let attempts fail against the closed port, then kill the server mid-retry.
      await sleep(400)
      const log = (await (await fetch(`${server.url}/v1/hooks/${hookIds[0]}/deliveries`)).json()) as {
        attempts: Array<{ status: number | null; error: string | null }>
      }
      assert.ok(log.attempts.length > 0, 'attempts were made before the kill')
      assert.ok(
        log.attempts.every((attempt) => attempt.status === null && /ECONNREFUSED/.test(attempt.error ?? '')),
      )
      server.child.kill('SIGKILL')
      assert.equal((await server.exited).signal, 'SIGKILL')

      receiver = await startReceiver(() => ({ status: 200 }), port)
      server = await spawnServer([...data.args, ...ARGS], data.env)
      for (const path of ['/one', '/two']) {
        const got = await receiver.waitFor(published.length, (r) => r.url === path, 30_000)
        // At least once: a delivery sent just before the kill may come again, but in order and complete.
        const firstSeen: number[] = []
        for (const request of got) {
          const { seq } = eventOf(request)
          if (!firstSeen.includes(seq)) firstSeen.push(seq)
        }
        assert.deepEqual(firstSeen.slice(0, published.length), published, `${path}: every event, in order`)
      }
    } finally {
      server.child.kill('SIGKILL')
      await server.exited
      await receiver?.close()
      await data.cleanup()
    }
  })

  test(`SIGKILL during an attempt: the restarted server sends it again at once, not a lease later (${backend.name})`, {
    skip: backend.skip,
  }, async () => {
    const data = await backend.open()
    let answering = false
    // Holds the first request unanswered (the attempt is in flight when the server dies).
    const receiver = await startReceiver(() =>
      answering ? { status: 200 } : { status: 200, delayMs: 60_000 },
    )
    // A lease of 2 × the 15 s timeout + 5 s = 35 s, which the restart must not wait for.
    const args = [...data.args, '--allow-private-targets', 'true', '--delivery-timeout', '15s']
    let server = await spawnServer(args, data.env)
    try {
      const created = await fetch(`${server.url}/v1/hooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ target_url: `${receiver.url}/held`, topic: 'held' }),
      })
      assert.equal(created.status, 201)
      assert.equal((await publish(server.url, 'held', { type: 'h' })).status, 201)
      await receiver.waitFor(1)
      server.child.kill('SIGKILL')
      // Dead and gone before anything is sent again: no double send while the old process could live.
      assert.equal((await server.exited).signal, 'SIGKILL')
      answering = true
      const restarted = Date.now()
      // Joining the store, the new server releases the leases the dead one left: on SQLite every lease
      // (one server per data directory), on PostgreSQL those of nodes whose session is gone.
      server = await spawnServer(args, data.env)
      const [first, second] = await receiver.waitFor(2, () => true, 10_000)
      assert.equal(first!.headers['webhook-id'], second!.headers['webhook-id'], 'the same delivery, again')
      assert.ok(second!.at >= restarted, 'not before the old process was dead')
      assert.ok(second!.at - restarted < 5_000, `sent again ${second!.at - restarted} ms after the restart`)
      await sleep(300)
      assert.equal(receiver.received.length, 2, 'sent again once')
    } finally {
      server.child.kill('SIGKILL')
      await server.exited
      await receiver.close()
      await data.cleanup()
    }
  })
}
