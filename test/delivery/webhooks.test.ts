import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { generateSecret } from '../../src/delivery/signing.ts'
import {
  loopbackHostName,
  NO_LOOPBACK_NAME,
  problemOf,
  publish,
  readAll,
  sleep,
  startTestServer,
  type TestServer,
  until,
} from '../helpers.ts'
import { eventOf, type Received, type Receiver, startReceiver } from './receiver.ts'

interface HookJson {
  id: string
  secret: string
  state: string
  target_url: string
  [key: string]: unknown
}

async function api(server: TestServer, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  })
}

async function createHook(server: TestServer, body: Record<string, unknown>): Promise<HookJson> {
  const response = await api(server, 'POST', '/v1/hooks', body)
  const text = await response.text()
  assert.equal(response.status, 201, text)
  return JSON.parse(text) as HookJson
}

/** Checks the Standard Webhooks signature with the reference package; returns the verified event. */
function verified(request: Received, secret: string) {
  const headers = {
    'webhook-id': String(request.headers['webhook-id']),
    'webhook-timestamp': String(request.headers['webhook-timestamp']),
    'webhook-signature': String(request.headers['webhook-signature']),
  }
  return new Webhook(secret).verify(request.body, headers) as { id: string; seq: number; type: string }
}

async function attemptsOf(server: TestServer, hookId: string, query = '') {
  const response = await api(server, 'GET', `/v1/hooks/${hookId}/deliveries${query}`)
  assert.equal(response.status, 200)
  return ((await response.json()) as { attempts: Array<Record<string, unknown>> }).attempts
}

describe('webhook delivery', () => {
  let server: TestServer
  let receiver: Receiver
  before(async () => {
    receiver = await startReceiver()
    server = await startTestServer({
      allowPrivateTargets: true,
      // Ten attempts: the ordering test fails 15% of attempts at random, and with four a delivery
      // would be given up (rightly skipped) in about one run in sixteen.
      retryScheduleMs: [0, 100, 100, 100, 100, 100, 100, 100, 100, 100],
      deliveryTimeoutMs: 2_000,
    })
  })
  after(async () => {
    await server.close()
    await receiver.close()
  })

  test('events are POSTed signed per Standard Webhooks, in order, with the event id as webhook-id', async () => {
    receiver.answer = () => ({ status: 200 })
    const hook = await createHook(server, { target_url: `${receiver.url}/a?x=1`, topic: 'orders' })
    assert.match(hook.secret, /^whsec_/)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) {
      const response = await publish(server.url, 'orders', { type: 'order.created', data: { i } })
      ids.push(((await response.json()) as { id: string }).id)
    }
    const got = await receiver.waitFor(5, (r) => r.url === '/a?x=1')
    const events = got.map((request) => verified(request, hook.secret))
    assert.deepEqual(
      events.map((event) => event.seq),
      [1, 2, 3, 4, 5],
    )
    assert.deepEqual(
      got.map((request) => request.headers['webhook-id']),
      ids,
    )
    for (const request of got) {
      assert.equal(request.method, 'POST')
      assert.equal(request.headers['content-type'], 'application/json')
      assert.ok(Math.abs(Number(request.headers['webhook-timestamp']) - Date.now() / 1000) < 60)
    }
    // Settled in batches just after the sends: the log has them a moment later.
    const log = await until('5 attempts logged', async () => {
      const attempts = await attemptsOf(server, hook.id)
      return attempts.length >= 5 ? attempts : undefined
    })
    assert.equal(log.length, 5)
    assert.ok(log.every((attempt) => attempt['status'] === 200 && attempt['attempt'] === 1))
    assert.deepEqual(new Set(log.map((attempt) => attempt['event_id'])), new Set(ids))
  })

  test('a failing target is retried with the same webhook-id until it answers 2xx', async () => {
    let calls = 0
    receiver.answer = (request) =>
      request.url === '/retry' ? { status: ++calls <= 2 ? 500 : 204 } : { status: 200 }
    const hook = await createHook(server, { target_url: `${receiver.url}/retry`, topic: 'retries' })
    await publish(server.url, 'retries', { type: 't', data: 1 })
    const got = await receiver.waitFor(3, (r) => r.url === '/retry')
    assert.equal(new Set(got.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id across retries')
    for (const request of got) verified(request, hook.secret) // each attempt signed anew, validly
    const log = await until('3 attempts logged', async () => {
      const attempts = await attemptsOf(server, hook.id)
      return attempts.length >= 3 ? attempts : undefined
    })
    assert.deepEqual(
      log.map((attempt) => [attempt['attempt'], attempt['status']]),
      [
        [3, 204],
        [2, 500],
        [1, 500],
      ],
    )
    await sleep(300)
    assert.equal(receiver.received.filter((r) => r.url === '/retry').length, 3, 'nothing after the 2xx')
  })

  test('Retry-After is honoured', async () => {
    let calls = 0
    receiver.answer = (request) =>
      request.url === '/later'
        ? ++calls === 1
          ? { status: 503, headers: { 'retry-after': '1' } }
          : { status: 200 }
        : { status: 200 }
    await createHook(server, { target_url: `${receiver.url}/later`, topic: 'later' })
    await publish(server.url, 'later', { type: 't' })
    const [first, second] = await receiver.waitFor(2, (r) => r.url === '/later')
    const gap = second!.at - first!.at
    assert.ok(gap >= 950, `retried after ${gap} ms, Retry-After said 1 s (the schedule 100 ms)`)
  })

  test('a receiver that answers 200 and then trickles its body gets the delivery exactly once', async () => {
    // 200 at once, then 100 bytes at one byte every 100 ms: 10 s, past the 2 s delivery timeout.
    receiver.answer = (request) =>
      request.url === '/trickle' ? { status: 200, body: 'y'.repeat(100), trickleMs: 100 } : { status: 200 }
    const hook = await createHook(server, { target_url: `${receiver.url}/trickle`, topic: 'trickle' })
    await publish(server.url, 'trickle', { type: 't' })
    await receiver.waitFor(1, (r) => r.url === '/trickle')
    const log = await until('the attempt logged', async () => {
      const attempts = await attemptsOf(server, hook.id)
      return attempts.length > 0 ? attempts : undefined
    })
    assert.equal(log[0]!['status'], 200)
    assert.equal(log[0]!['error'], null)
    assert.match(String(log[0]!['response']), /^y*…$/, 'the body read so far, marked as cut')
    // Longer than the delivery timeout and the retry delay together: a retry would have come by now.
    await sleep(3_000)
    assert.equal(receiver.received.filter((r) => r.url === '/trickle').length, 1, 'delivered once')
    assert.equal((await attemptsOf(server, hook.id)).length, 1)
  })

  test('410 Gone removes the hook and says so on herald.system', async () => {
    receiver.answer = (request) => (request.url === '/gone' ? { status: 410 } : { status: 200 })
    const hook = await createHook(server, { target_url: `${receiver.url}/gone`, topic: 'gone' })
    await publish(server.url, 'gone', { type: 't' })
    await publish(server.url, 'gone', { type: 't' })
    await receiver.waitFor(1, (r) => r.url === '/gone')
    await until('hook removed', async () =>
      (await api(server, 'GET', `/v1/hooks/${hook.id}`)).status === 404 ? true : undefined,
    )
    const system = await until('hook.removed event', async () => {
      const events = await readAll(server.url, 'herald.system')
      return events.find(
        (event) => event.type === 'hook.removed' && (event.data as { hook_id: string }).hook_id === hook.id,
      )
    })
    assert.ok(system)
    await sleep(300)
    assert.equal(receiver.received.filter((r) => r.url === '/gone').length, 1, 'no retry after 410')
  })

  test('ordered delivery holds under random receiver latency and failures', async () => {
    const delivered = new Map<string, number[]>()
    const violations: string[] = []
    receiver.answer = (request) => {
      if (!request.url.startsWith('/ordered')) return { status: 200 }
      const { seq } = eventOf(request)
      const done = delivered.get(request.url) ?? []
      delivered.set(request.url, done)
      // When seq arrives, every earlier seq must have been answered 2xx already.
      if (done.length !== seq - 1 && !done.includes(seq))
        violations.push(`${request.url}: ${seq} after ${done.at(-1)}`)
      const fail = Math.random() < 0.15
      if (!fail && !done.includes(seq)) done.push(seq)
      return { status: fail ? 500 : 200, delayMs: Math.floor(Math.random() * 8) }
    }
    await createHook(server, { target_url: `${receiver.url}/ordered-1`, topic: 'ordered' })
    await createHook(server, { target_url: `${receiver.url}/ordered-2`, topic: 'ordered' })
    for (let i = 0; i < 6; i++) {
      await publish(
        server.url,
        'ordered',
        Array.from({ length: 10 }, (_, j) => ({ type: 'o', data: i * 10 + j })),
      )
    }
    await until(
      '60 events delivered to both hooks',
      async () =>
        (delivered.get('/ordered-1')?.length ?? 0) === 60 && (delivered.get('/ordered-2')?.length ?? 0) === 60
          ? true
          : undefined,
      30_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${JSON.stringify([...delivered])}, violations ${violations}`)
    })
    assert.deepEqual(violations, [])
    const expected = Array.from({ length: 60 }, (_, i) => i + 1)
    assert.deepEqual(delivered.get('/ordered-1'), expected)
    assert.deepEqual(delivered.get('/ordered-2'), expected)
  })

  for (const workers of [1, 0] as const) {
    test(`a queue longer than a run goes out in order, each event once (dispatch workers: ${workers})`, async () => {
      // 1,200 events: a run of 256 is extended while it is sent (or ends and is claimed again), past
      // the 1,024 after which it lets go of what it sent.
      const own = await startTestServer({ allowPrivateTargets: true, dispatchWorkers: workers })
      try {
        receiver.answer = () => ({ status: 200 })
        const path = `/long-${workers}`
        const hook = await createHook(own, { target_url: `${receiver.url}${path}`, topic: 'long' })
        // Paused while the events are published, so that one run finds the whole queue waiting.
        await api(own, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'paused' })
        for (let batch = 0; batch < 12; batch++) {
          await publish(
            own.url,
            'long',
            Array.from({ length: 100 }, (_, i) => ({ type: 't', data: batch * 100 + i })),
          )
        }
        assert.equal((await api(own, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'active' })).status, 200)
        const got = await receiver.waitFor(1_200, (r) => r.url === path, 30_000)
        assert.deepEqual(
          got.map((request) => verified(request, hook.secret).seq),
          Array.from({ length: 1_200 }, (_, i) => i + 1),
        )
        await sleep(300)
        assert.equal(receiver.received.filter((r) => r.url === path).length, 1_200, 'none sent twice')
      } finally {
        await own.close()
      }
    })
  }

  test('a slow failure is not overtaken by the rest of its ordered queue', async () => {
    let failedOnce = false
    receiver.answer = (request) => {
      if (request.url !== '/slow-fail') return { status: 200 }
      // Longer than the sender's report interval (200 ms), then a 500: the retry must come first.
      if (eventOf(request).seq === 2 && !failedOnce) {
        failedOnce = true
        return { status: 500, delayMs: 300 }
      }
      return { status: 200 }
    }
    await createHook(server, { target_url: `${receiver.url}/slow-fail`, topic: 'slow-fail' })
    await publish(
      server.url,
      'slow-fail',
      Array.from({ length: 4 }, (_, i) => ({ type: 's', data: i })),
    )
    const got = await receiver.waitFor(5, (r) => r.url === '/slow-fail')
    assert.deepEqual(
      got.map((r) => eventOf(r).seq),
      [1, 2, 2, 3, 4],
    )
  })

  test('a hook switched to ordered:false sends what queued up while it was ordered', async () => {
    receiver.answer = () => ({ status: 200 })
    const hook = await createHook(server, { target_url: `${receiver.url}/switched`, topic: 'switched' })
    await api(server, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'paused' })
    await publish(
      server.url,
      'switched',
      Array.from({ length: 4 }, (_, i) => ({ type: 's', data: i })),
    )
    await api(server, 'PATCH', `/v1/hooks/${hook.id}`, { ordered: false, state: 'active' })
    const got = await receiver.waitFor(4, (r) => r.url === '/switched')
    assert.deepEqual(got.map((r) => eventOf(r).seq).sort(), [1, 2, 3, 4])
  })

  test('ordered:false delivers in parallel', async () => {
    let inFlight = 0
    let most = 0
    receiver.answer = (request) => {
      if (request.url !== '/parallel') return { status: 200 }
      inFlight++
      most = Math.max(most, inFlight)
      setTimeout(() => inFlight--, 50)
      return { status: 200, delayMs: 50 }
    }
    await createHook(server, {
      target_url: `${receiver.url}/parallel`,
      topic: 'parallel',
      ordered: false,
      max_in_flight: 5,
    })
    await publish(
      server.url,
      'parallel',
      Array.from({ length: 20 }, (_, i) => ({ type: 'p', data: i })),
    )
    await receiver.waitFor(20, (r) => r.url === '/parallel')
    assert.ok(most > 1, `at most ${most} at once`)
    assert.ok(most <= 5, `max_in_flight 5, saw ${most}`)
  })

  test('rate_limit spaces deliveries out', async () => {
    receiver.answer = () => ({ status: 200 })
    await createHook(server, {
      target_url: `${receiver.url}/rated`,
      topic: 'rated',
      ordered: false,
      rate_limit: 10,
    })
    await publish(
      server.url,
      'rated',
      Array.from({ length: 20 }, (_, i) => ({ type: 'r', data: i })),
    )
    const got = await receiver.waitFor(20, (r) => r.url === '/rated')
    const span = got.at(-1)!.at - got[0]!.at
    // A bucket of 10 (one second's worth) goes at once, the other 10 at 10/s: about a second.
    assert.ok(span >= 800, `20 deliveries at 10/s took ${span} ms`)
  })

  test('event type patterns and topic-less hooks', async () => {
    receiver.answer = () => ({ status: 200 })
    await createHook(server, { target_url: `${receiver.url}/orders-only`, event: 'order.*' })
    await publish(server.url, 'shop-a', { type: 'order.created' })
    await publish(server.url, 'shop-b', { type: 'invoice.paid' })
    await publish(server.url, 'shop-b', { type: 'order.line.added' })
    await publish(server.url, 'shop-c', { type: 'order' })
    const got = await receiver.waitFor(2, (r) => r.url === '/orders-only')
    await sleep(300)
    assert.deepEqual(
      receiver.received
        .filter((r) => r.url === '/orders-only')
        .map((r) => [eventOf(r).topic, eventOf(r).type]),
      [
        ['shop-a', 'order.created'],
        ['shop-b', 'order.line.added'],
      ],
    )
    assert.equal(got.length, 2)
  })

  test('after a secret rotation both signatures are sent, each verifiable', async () => {
    receiver.answer = () => ({ status: 200 })
    const hook = await createHook(server, { target_url: `${receiver.url}/rotate`, topic: 'rotate' })
    const response = await api(server, 'PATCH', `/v1/hooks/${hook.id}`, { rotate_secret: true })
    assert.equal(response.status, 200)
    const rotated = (await response.json()) as HookJson
    assert.notEqual(rotated.secret, hook.secret)
    assert.ok(rotated['previous_secret_until'])
    await publish(server.url, 'rotate', { type: 't' })
    const [request] = await receiver.waitFor(1, (r) => r.url === '/rotate')
    assert.equal(String(request!.headers['webhook-signature']).split(' ').length, 2)
    verified(request!, rotated.secret)
    verified(request!, hook.secret)
    assert.throws(() => verified(request!, generateSecret()))
  })

  test('a hook that keeps failing is disabled and announced', async () => {
    const failing = await startTestServer({
      allowPrivateTargets: true,
      retryScheduleMs: [0, 50, 50, 50, 50, 50, 50, 50, 50, 50],
      disableAfterMs: 200,
      deliveryTimeoutMs: 1_000,
    })
    try {
      receiver.answer = (request) => (request.url === '/down' ? { status: 500 } : { status: 200 })
      const hook = await createHook(failing, { target_url: `${receiver.url}/down`, topic: 'down' })
      await publish(failing.url, 'down', { type: 't' })
      const state = await until('disabled', async () => {
        const current = (await (await api(failing, 'GET', `/v1/hooks/${hook.id}`)).json()) as HookJson
        return current.state === 'disabled' ? current : undefined
      })
      assert.match(String(state['disabled_reason']), /failing/)
      const events = await readAll(failing.url, 'herald.system')
      // One delivery.failing when the streak began (not one per attempt), then hook.disabled (the
      // audit trail's hook.created, from /herald/audit, is not an operational event).
      assert.deepEqual(
        events
          .filter((event) => (event.data as { hook_id?: string }).hook_id === hook.id)
          .filter((event) => event.source === '/herald')
          .map((event) => event.type),
        ['delivery.failing', 'hook.disabled'],
      )
      // Disabled: new events are not queued for it.
      const before = receiver.received.filter((r) => r.url === '/down').length
      await publish(failing.url, 'down', { type: 't' })
      await sleep(300)
      assert.equal(receiver.received.filter((r) => r.url === '/down').length, before)
      // Re-enabled with "active": it is sent again.
      receiver.answer = () => ({ status: 200 })
      const resumed = await api(failing, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'active' })
      assert.equal(((await resumed.json()) as HookJson).failing_since, null)
    } finally {
      await failing.close()
    }
  })

  test('retry one delivery and replay a range', async () => {
    receiver.answer = () => ({ status: 200 })
    const hook = await createHook(server, { target_url: `${receiver.url}/replay`, topic: 'replay' })
    await publish(
      server.url,
      'replay',
      Array.from({ length: 4 }, (_, i) => ({ type: 'r', data: i })),
    )
    await receiver.waitFor(4, (r) => r.url === '/replay')
    const log = await until('4 attempts', async () => {
      const attempts = await attemptsOf(server, hook.id)
      return attempts.length === 4 ? attempts : undefined
    })
    const delivery = log.find((attempt) => attempt['seq'] === 2)!['delivery']
    const retried = await api(server, 'POST', `/v1/hooks/${hook.id}/deliveries/${delivery}/retry`)
    assert.equal(retried.status, 202)
    const again = await receiver.waitFor(5, (r) => r.url === '/replay')
    assert.equal(eventOf(again[4]!).seq, 2)
    const one = (await (await api(server, 'GET', `/v1/hooks/${hook.id}/deliveries/${delivery}`)).json()) as {
      state: string
      attempt_log: unknown[]
    }
    await until('retry settled', async () => {
      const current = (await (
        await api(server, 'GET', `/v1/hooks/${hook.id}/deliveries/${delivery}`)
      ).json()) as {
        attempts: number
      }
      return current.attempts === 2 ? true : undefined
    })
    assert.ok(one.state)
    const replay = await api(server, 'POST', `/v1/hooks/${hook.id}/replay`, { after: 2 })
    assert.equal(replay.status, 202)
    assert.deepEqual(await replay.json(), { queued: 2 })
    const all = await receiver.waitFor(7, (r) => r.url === '/replay')
    assert.deepEqual(
      all.slice(5).map((r) => eventOf(r).seq),
      [3, 4],
    )
    const missing = await api(server, 'POST', `/v1/hooks/${hook.id}/deliveries/999999/retry`)
    await problemOf(missing, 404)
  })

  test('herald.* topics are written by Herald only: a publish to them is 403, reading them works', async () => {
    const problem = await problemOf(
      await publish(server.url, 'herald.system', { type: 'hook.disabled' }),
      403,
    )
    assert.equal(problem.field, 'topic')
    await problemOf(await publish(server.url, 'herald.websub/abc', { type: 'x' }), 403)
    assert.ok((await readAll(server.url, 'herald.system')).length > 0, 'system events are readable')
  })

  test('herald_deliveries counts by state in /metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text()
    const delivered = /herald_deliveries\{state="delivered"\} (\d+)/.exec(text)
    assert.ok(delivered && Number(delivered[1]) > 0, 'delivered count')
    assert.match(text, /herald_delivery_attempts_total\{outcome="retry"\} [1-9]/)
  })
})

describe('hook API', () => {
  let server: TestServer
  let receiver: Receiver
  before(async () => {
    receiver = await startReceiver()
    server = await startTestServer({ allowPrivateTargets: true })
  })
  after(async () => {
    await server.close()
    await receiver.close()
  })

  test('create, list, get, pause, update, delete', async () => {
    const hook = await createHook(server, {
      target_url: `${receiver.url}/crud`,
      topic: 'crud',
      description: 'test',
    })
    const list = (await (await api(server, 'GET', '/v1/hooks')).json()) as { hooks: HookJson[] }
    const listed = list.hooks.find((h) => h.id === hook.id)!
    assert.equal(listed.secret, undefined, 'secrets are not listed')
    const got = (await (await api(server, 'GET', `/v1/hooks/${hook.id}`)).json()) as HookJson
    assert.equal(got.secret, hook.secret)
    const paused = await api(server, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'paused', event: 'a.*' })
    assert.equal(paused.status, 200)
    assert.deepEqual((({ state, event }) => ({ state, event }))((await paused.json()) as HookJson), {
      state: 'paused',
      event: 'a.*',
    })
    // Paused: queued, not sent; resumed: sent.
    await publish(server.url, 'crud', { type: 'a.b' })
    await sleep(300)
    assert.equal(receiver.received.filter((r) => r.url === '/crud').length, 0)
    await api(server, 'PATCH', `/v1/hooks/${hook.id}`, { state: 'active' })
    await receiver.waitFor(1, (r) => r.url === '/crud')
    assert.equal((await api(server, 'DELETE', `/v1/hooks/${hook.id}`)).status, 204)
    await problemOf(await api(server, 'GET', `/v1/hooks/${hook.id}`), 404)
    await problemOf(await api(server, 'DELETE', `/v1/hooks/${hook.id}`), 404)
  })

  test('bad input is refused with problem+json naming the field', async () => {
    const cases: Array<[unknown, number, string]> = [
      [{ topic: 'x' }, 400, 'target_url'],
      [{ target_url: `${receiver.url}/x` }, 400, 'topic'],
      [{ target_url: 'ftp://example.test/', topic: 'x' }, 422, 'target_url'],
      [{ target_url: `${receiver.url}/x`, topic: 'bad topic' }, 400, 'topic'],
      [{ target_url: `${receiver.url}/x`, event: 'order.*ed' }, 400, 'event'],
      [{ target_url: `${receiver.url}/x`, topic: 'x', secret: 'nope' }, 422, 'secret'],
      [{ target_url: `${receiver.url}/x`, topic: 'x', ordered: 'yes' }, 400, 'ordered'],
      [{ target_url: `${receiver.url}/x`, topic: 'x', max_in_flight: 0 }, 400, 'max_in_flight'],
      [{ target_url: `${receiver.url}/x`, topic: 'x', rate_limit: -1 }, 400, 'rate_limit'],
      [{ target_url: `${receiver.url}/x`, topic: 'x', colour: 'blue' }, 400, 'colour'],
    ]
    for (const [body, status, field] of cases) {
      const problem = await problemOf(await api(server, 'POST', '/v1/hooks', body), status)
      assert.equal(problem.field, field, JSON.stringify(body))
    }
    await problemOf(await api(server, 'POST', '/v1/hooks', [1]), 400)
    const response = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"target_url":',
    })
    await problemOf(response, 400)
  })

  test('target_url has at most 2048 characters, on POST and PATCH', async () => {
    const url = (length: number) => {
      const base = `${receiver.url}/long?q=`
      return base + 'x'.repeat(length - base.length)
    }
    const longest = await createHook(server, { target_url: url(2048), topic: 'long' })
    assert.equal(longest.target_url.length, 2048)
    const tooLong = await problemOf(
      await api(server, 'POST', '/v1/hooks', { target_url: url(2049), topic: 'long' }),
      400,
    )
    assert.equal(tooLong.field, 'target_url')
    assert.match(tooLong.detail, /2048/)
    const huge = await api(server, 'POST', '/v1/hooks', { target_url: url(900_000), topic: 'long' })
    assert.equal((await problemOf(huge, 400)).field, 'target_url')
    const patched = await api(server, 'PATCH', `/v1/hooks/${longest.id}`, { target_url: url(2049) })
    assert.equal((await problemOf(patched, 400)).field, 'target_url')
    const hooks = ((await (await api(server, 'GET', '/v1/hooks')).json()) as { hooks: HookJson[] }).hooks
    assert.deepEqual(
      hooks.filter((hook) => hook.topic === 'long').map((hook) => hook.target_url.length),
      [2048],
      'nothing longer was stored',
    )
  })

  test('a lone surrogate in event, description or target_url is a 400, not stored as U+FFFD', async () => {
    // JSON "\ud800" is no Unicode character: SQLite stored it as U+FFFD, so the hook answered and kept
    // another pattern (or description, or URL) than the one sent.
    const hook = await createHook(server, { target_url: `${receiver.url}/lone`, topic: 'lone' })
    const before = await (await api(server, 'GET', '/v1/hooks?limit=1000')).json()
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ event: 'order.\ud800' }, 'event'],
      [{ description: 'note \udfff' }, 'description'],
      [{ target_url: `${receiver.url}/lone/\ud800` }, 'target_url'],
    ]
    for (const [fields, field] of cases) {
      const created = await api(server, 'POST', '/v1/hooks', {
        target_url: `${receiver.url}/lone`,
        topic: 'lone',
        ...fields,
      })
      assert.equal((await problemOf(created, 400)).field, field, JSON.stringify(fields))
      const patched = await api(server, 'PATCH', `/v1/hooks/${hook.id}`, fields)
      assert.equal((await problemOf(patched, 400)).field, field, JSON.stringify(fields))
    }
    assert.deepEqual(await (await api(server, 'GET', '/v1/hooks?limit=1000')).json(), before)
    // A well-formed pair (an emoji) is a character like any other.
    const emoji = await api(server, 'PATCH', `/v1/hooks/${hook.id}`, {
      event: 'order.\u{1f600}',
      description: '\u{1f600}',
    })
    assert.equal(emoji.status, 200)
    assert.deepEqual(
      (({ event, description }) => ({ event, description }))((await emoji.json()) as HookJson),
      {
        event: 'order.\u{1f600}',
        description: '\u{1f600}',
      },
    )
  })

  test('REST Hooks: subscribe with target_url + event, handshake with X-Hook-Secret, unsubscribe', async () => {
    receiver.answer = (request) =>
      request.url === '/echo'
        ? { status: 200, headers: { 'x-hook-secret': String(request.headers['x-hook-secret']) } }
        : { status: 200 }
    const hook = await createHook(server, {
      target_url: `${receiver.url}/echo`,
      subscription_url: `${receiver.url}/echo`,
      event: 'contact.create',
      verify: true,
    })
    const handshake = receiver.received.find((r) => r.url === '/echo')!
    assert.equal(handshake.headers['x-hook-secret'], hook.secret)
    const refused = await api(server, 'POST', '/v1/hooks', {
      target_url: `${receiver.url}/no-echo`,
      event: 'contact.create',
      verify: true,
    })
    const problem = await problemOf(refused, 422)
    assert.equal(problem.type, 'urn:herald:problem:hook-verification-failed')
    assert.equal((await api(server, 'DELETE', `/v1/hooks/${hook.id}`)).status, 204)
  })
})

describe('SSRF guard on hooks', () => {
  let server: TestServer
  let receiver: Receiver
  before(async () => {
    receiver = await startReceiver()
    server = await startTestServer({ allowPrivateTargets: false, retryScheduleMs: [0, 50] })
  })
  after(async () => {
    await server.close()
    await receiver.close()
  })

  test('loopback, private and metadata targets are refused at creation', async () => {
    for (const target of [
      receiver.url,
      `http://localhost:${receiver.port}/`,
      'http://10.1.2.3/',
      'http://169.254.169.254/latest/meta-data',
      'http://[::ffff:127.0.0.1]/',
    ]) {
      const problem = await problemOf(
        await api(server, 'POST', '/v1/hooks', { target_url: target, topic: 'x' }),
        422,
      )
      assert.equal(problem.type, 'urn:herald:problem:target-not-allowed', target)
    }
  })

  test('a host name that resolves to 127.0.0.1 is refused', async (t) => {
    const name = await loopbackHostName()
    if (name === undefined) {
      t.skip(NO_LOOPBACK_NAME)
      return
    }
    const problem = await problemOf(
      await api(server, 'POST', '/v1/hooks', { target_url: `http://${name}:${receiver.port}/`, topic: 'x' }),
      422,
    )
    assert.match(problem.detail, /loopback/)
    assert.equal(receiver.received.length, 0)
  })
})
