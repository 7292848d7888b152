import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from '../backends.ts'
import { startReceiver } from '../delivery/receiver.ts'
import { publish, sleep, spawnServer, until } from '../helpers.ts'

const postgres = (await backends()).find((backend) => backend.name === 'PostgreSQL')!

/**
 * A node stopped (SIGSTOP) in the middle of an attempt, past the point where the others count it
 * dead: another node takes its delivery over and delivers it. When the stopped node wakes up, the
 * answer it gets (a 500) must change nothing: its lease token no longer holds the row.
 */
test('a node paused past its lease cannot settle what another node took over (PostgreSQL, SIGSTOP)', {
  skip: postgres.skip,
}, async () => {
  const data = await postgres.open()
  // The first request (node A's) is answered 500, but only after A has been taken over; the second
  // (node B's) at once with 200.
  const receiver = await startReceiver((_, index) =>
    index === 0 ? { status: 500, delayMs: 14_000 } : { status: 200 },
  )
  // A 20 s timeout: a 45 s lease, so only the dead-node rescue (10 s of silence) can free the row.
  const args = [
    ...data.args,
    '--allow-private-targets',
    'true',
    '--delivery-timeout',
    '20s',
    '--retry-schedule',
    '0s,1s,1s',
  ]
  const a = await spawnServer(args, data.env)
  let b: Awaited<ReturnType<typeof spawnServer>> | undefined
  try {
    const created = await fetch(`${a.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: `${receiver.url}/paused`, topic: 'paused' }),
    })
    assert.equal(created.status, 201)
    const hook = (await created.json()) as { id: string }
    assert.equal((await publish(a.url, 'paused', { type: 'p' })).status, 201)
    await receiver.waitFor(1)
    a.child.kill('SIGSTOP')
    const stoppedAt = Date.now()
    b = await spawnServer(args, data.env)
    const [first, second] = await receiver.waitFor(2, () => true, 30_000)
    assert.equal(first!.headers['webhook-id'], second!.headers['webhook-id'], 'the same delivery')
    assert.ok(second!.at - stoppedAt >= 9_000, 'not taken over while the paused node could still be alive')
    const bUrl = b.url
    await until('the delivery to be delivered', async () => {
      const log = (await (await fetch(`${bUrl}/v1/hooks/${hook.id}/deliveries`)).json()) as {
        attempts: Array<{ status: number | null }>
      }
      return log.attempts.length === 1 && log.attempts[0]!.status === 200 ? true : undefined
    })

    // A wakes up and gets its 500 (the receiver answers it at 14 s): a retry it must not record.
    await sleep(Math.max(0, 15_000 - (Date.now() - stoppedAt)))
    a.child.kill('SIGCONT')
    await sleep(4_000) // the retry schedule is 1 s: a wrongly accepted retry would be sent by now
    const log = (await (await fetch(`${bUrl}/v1/hooks/${hook.id}/deliveries`)).json()) as {
      attempts: Array<{ status: number | null; attempt: number }>
    }
    assert.deepEqual(
      log.attempts.map((attempt) => attempt.status),
      [200],
      'only the attempt of the node holding the lease is logged',
    )
    assert.equal(receiver.received.length, 2, 'nothing sent again after the paused node woke up')
  } finally {
    a.child.kill('SIGCONT')
    a.child.kill('SIGKILL')
    b?.child.kill('SIGKILL')
    await Promise.all([a.exited, b?.exited])
    await receiver.close()
    await data.cleanup()
  }
})
