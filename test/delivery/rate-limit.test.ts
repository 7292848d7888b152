import assert from 'node:assert/strict'
import { test } from 'node:test'
import { publish, sleep, startTestServer } from '../helpers.ts'
import { eventOf, startReceiver } from './receiver.ts'

// Its own file, so that its long wait runs beside the other test files rather than after them.
test('a rate below one delivery per lease: each delivery is sent once, at the rate', async () => {
  // A lease here is 2 × 500 ms + 5 s = 6 s; the rate allows one delivery every 10 s. A sender that
  // claimed both deliveries and waited for a token outlived its lease: the first delivery (sent, not
  // yet settled) was claimed again and sent a second time, 20 s after the first (seen before the
  // dispatcher kept the buckets). So the test watches for 22 s.
  const receiver = await startReceiver()
  const server = await startTestServer({ allowPrivateTargets: true, deliveryTimeoutMs: 500 })
  try {
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: `${receiver.url}/trickle`, topic: 'trickle', rate_limit: 0.1 }),
    })
    assert.equal(created.status, 201)
    await publish(server.url, 'trickle', [{ type: 'a' }, { type: 'b' }])
    const got = await receiver.waitFor(2, () => true, 20_000)
    // The tokens are taken when the deliveries are claimed, 10 s apart; a send may lag its claim by a
    // moment (a cold sender thread on a loaded machine: 1.2 s seen), so the sends are at least 7 s
    // apart. Without the limit they would be milliseconds apart.
    assert.ok(got[1]!.at - got[0]!.at >= 7_000, `spaced ${got[1]!.at - got[0]!.at} ms`)
    await sleep(Math.max(0, got[0]!.at + 22_000 - Date.now()))
    assert.deepEqual(
      receiver.received.map((request) => eventOf(request).seq),
      [1, 2],
      'no delivery sent twice',
    )
  } finally {
    await server.close()
    await receiver.close()
  }
})
