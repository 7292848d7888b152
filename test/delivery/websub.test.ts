import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import pino from 'pino'
import {
  loopbackHostName,
  NO_LOOPBACK_NAME,
  publish,
  sleep,
  startTestServer,
  type TestServer,
  until,
} from '../helpers.ts'
import { type Answer, type Received, type Receiver, startReceiver } from './receiver.ts'

// The websub.rocks hub tests (100–106) and the W3C WebSub checklist (STANDARDS.md §1), re-created with
// a real subscriber and a real publisher on loopback.

const PUBLIC_URL = 'http://herald.test'
const HUB = `${PUBLIC_URL}/websub`
const heraldTopic = (name: string) => `${PUBLIC_URL}/v1/topics/${name}`

/** A WebSub subscriber: echoes hub.challenge on GET (unless told otherwise), takes POSTs with 2xx. */
function subscriber(options: { echo?: (challenge: string) => string; status?: number } = {}): Answer {
  return (request) => {
    if (request.method === 'GET') {
      const challenge = new URL(request.url, 'http://x').searchParams.get('hub.challenge') ?? ''
      return { status: options.status ?? 200, body: options.echo ? options.echo(challenge) : challenge }
    }
    return { status: 200 }
  }
}

function form(fields: Record<string, string | number>): string {
  return new URLSearchParams(
    Object.entries(fields).map(([k, v]): [string, string] => [k, String(v)]),
  ).toString()
}

async function hubRequest(server: TestServer, fields: Record<string, string | number>): Promise<Response> {
  return fetch(`${server.url}/websub`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: form(fields),
  })
}

const query = (request: Received) => new URL(request.url, 'http://x').searchParams
const gets = (receiver: Receiver, path: string) =>
  receiver.received.filter((r) => r.method === 'GET' && r.url.startsWith(path))
const posts = (receiver: Receiver, path: string) =>
  receiver.received.filter((r) => r.method === 'POST' && r.url.startsWith(path))

interface Verification {
  mode: string
  state: string
  callback: string
  error: string | null
}

async function verificationOf(
  server: TestServer,
  callback: string,
  mode = 'subscribe',
): Promise<Verification> {
  return until(`the ${mode} verification of ${callback}`, async () => {
    const list = (await (await fetch(`${server.url}/v1/websub/verifications`)).json()) as {
      verifications: Verification[]
    }
    return list.verifications.find((v) => v.callback === callback && v.mode === mode && v.state !== 'pending')
  })
}

async function subscriptions(server: TestServer, topic: string) {
  const response = await fetch(`${server.url}/v1/websub/subscriptions?topic=${encodeURIComponent(topic)}`)
  return ((await response.json()) as { subscriptions: Array<Record<string, unknown>> }).subscriptions
}

/** Subscribes and waits until the hub has verified it. */
async function subscribe(server: TestServer, fields: Record<string, string | number>): Promise<void> {
  const response = await hubRequest(server, { 'hub.mode': 'subscribe', ...fields })
  assert.equal(response.status, 202, await response.text())
  const verification = await verificationOf(server, String(fields['hub.callback']))
  assert.equal(verification.state, 'verified', verification.error ?? '')
}

describe('WebSub hub (websub.rocks 100–106)', () => {
  let server: TestServer
  let sub: Receiver
  let publisher: Receiver
  before(async () => {
    sub = await startReceiver(subscriber())
    // An external publisher's topics: text/plain and JSON, as websub.rocks 105 and 106 serve them.
    publisher = await startReceiver((request) =>
      request.url === '/text'
        ? { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'Hello, world.\n' }
        : { status: 200, headers: { 'content-type': 'application/json' }, body: '{"hello":"world"}' },
    )
    server = await startTestServer({
      allowPrivateTargets: true,
      publicUrl: PUBLIC_URL,
      retryScheduleMs: [0, 100, 100],
      websubLease: { minSeconds: 1, defaultSeconds: 864_000, maxSeconds: 2_592_000 },
    })
  })
  after(async () => {
    await server.close()
    await sub.close()
    await publisher.close()
  })

  test('100: a plain subscription is verified, then gets each event unsigned with the Link header', async () => {
    const callback = `${sub.url}/s100?foo=bar&flag&x=a%20b`
    const response = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('t100'),
      'hub.callback': callback,
    })
    assert.equal(response.status, 202)
    await verificationOf(server, callback)
    const [verify] = gets(sub, '/s100')
    const q = query(verify!)
    // The callback's own query is kept, the hub's parameters appended (§5.1.1, §5.3).
    assert.equal(q.get('foo'), 'bar')
    // …as it was given, byte for byte (a bare "flag" stays bare, %20 stays %20)
    assert.ok(verify!.url.startsWith('/s100?foo=bar&flag&x=a%20b&hub.mode=subscribe'), verify!.url)
    assert.equal(q.get('hub.mode'), 'subscribe')
    assert.equal(q.get('hub.topic'), heraldTopic('t100'))
    assert.equal(q.get('hub.lease_seconds'), '864000', 'the default lease, 10 days')
    assert.ok((q.get('hub.challenge') ?? '').length >= 16, 'a random challenge')

    const published = (await (
      await publish(server.url, 't100', { type: 'note', data: { n: 1 } })
    ).json()) as {
      id: string
    }
    const [delivery] = await sub.waitFor(1, (r) => r.method === 'POST' && r.url.startsWith('/s100'))
    assert.equal(
      delivery!.url,
      '/s100?foo=bar&flag&x=a%20b',
      'the callback query is kept on distribution too',
    )
    assert.equal(delivery!.headers['content-type'], 'application/json')
    assert.equal((JSON.parse(delivery!.body) as { id: string }).id, published.id)
    assert.equal(delivery!.headers['link'], `<${HUB}>; rel="hub", <${heraldTopic('t100')}>; rel="self"`)
    assert.equal(delivery!.headers['x-hub-signature'], undefined, 'no secret, no signature')
  })

  test('101: with hub.secret the distribution carries X-Hub-Signature: sha256=<lowercase hex>', async () => {
    const callback = `${sub.url}/s101`
    await subscribe(server, {
      'hub.topic': heraldTopic('t101'),
      'hub.callback': callback,
      'hub.secret': 'sekrit',
    })
    await publish(server.url, 't101', { type: 'note' })
    const [delivery] = await sub.waitFor(1, (r) => r.method === 'POST' && r.url === '/s101')
    const expected = createHmac('sha256', 'sekrit').update(delivery!.body).digest('hex')
    assert.equal(delivery!.headers['x-hub-signature'], `sha256=${expected}`)
    assert.match(expected, /^[0-9a-f]{64}$/)
  })

  test('102: unknown parameters are ignored', async () => {
    const callback = `${sub.url}/s102`
    await subscribe(server, {
      'hub.topic': heraldTopic('t102'),
      'hub.callback': callback,
      foo: 'bar',
      'hub.foo': 'hub.bar',
    })
    await publish(server.url, 't102', { type: 'note' })
    await sub.waitFor(1, (r) => r.method === 'POST' && r.url === '/s102')
  })

  test('103: subscribing again replaces the subscription: one delivery per publish, the new secret', async () => {
    const callback = `${sub.url}/s103`
    await subscribe(server, {
      'hub.topic': heraldTopic('t103'),
      'hub.callback': callback,
      'hub.secret': 'first',
    })
    const again = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('t103'),
      'hub.callback': callback,
      'hub.secret': 'second',
    })
    assert.equal(again.status, 202)
    await until('the second verification', () => (gets(sub, '/s103').length === 2 ? true : undefined))
    await until('verified twice', async () => {
      const list = (await (await fetch(`${server.url}/v1/websub/verifications`)).json()) as {
        verifications: Verification[]
      }
      return list.verifications.filter((v) => v.callback === callback && v.state === 'verified').length === 2
        ? true
        : undefined
    })
    assert.equal((await subscriptions(server, heraldTopic('t103'))).length, 1)
    await publish(server.url, 't103', { type: 'note' })
    const [delivery] = await sub.waitFor(1, (r) => r.method === 'POST' && r.url === '/s103')
    await sleep(300)
    assert.equal(posts(sub, '/s103').length, 1, 'exactly one POST')
    const expected = createHmac('sha256', 'second').update(delivery!.body).digest('hex')
    assert.equal(delivery!.headers['x-hub-signature'], `sha256=${expected}`)
  })

  test('104: after unsubscribing (verified), publishing sends nothing', async () => {
    const callback = `${sub.url}/s104`
    await subscribe(server, { 'hub.topic': heraldTopic('t104'), 'hub.callback': callback })
    const response = await hubRequest(server, {
      'hub.mode': 'unsubscribe',
      'hub.topic': heraldTopic('t104'),
      'hub.callback': callback,
    })
    assert.equal(response.status, 202)
    const verification = await verificationOf(server, callback, 'unsubscribe')
    assert.equal(verification.state, 'verified')
    const unsubscribeGet = gets(sub, '/s104').find((r) => query(r).get('hub.mode') === 'unsubscribe')!
    assert.equal(query(unsubscribeGet).get('hub.lease_seconds'), null)
    assert.deepEqual(await subscriptions(server, heraldTopic('t104')), [])
    await publish(server.url, 't104', { type: 'note' })
    await sleep(400)
    assert.equal(posts(sub, '/s104').length, 0)
  })

  for (const [scenario, path, type, body] of [
    ['105', '/text', 'text/plain; charset=utf-8', 'Hello, world.\n'],
    ['106', '/json', 'application/json', '{"hello":"world"}'],
  ] as const) {
    test(`${scenario}: an external ${type} topic is fetched on a publish ping and distributed as it is`, async () => {
      const topic = `${publisher.url}${path}`
      const callback = `${sub.url}/s${scenario}`
      await subscribe(server, { 'hub.topic': topic, 'hub.callback': callback, 'hub.secret': 'k' })
      // websub.rocks pings with hub.topic; the spec's note says hub.url: both are taken.
      const ping = await hubRequest(server, {
        'hub.mode': 'publish',
        [scenario === '105' ? 'hub.url' : 'hub.topic']: topic,
      })
      assert.equal(ping.status, 202)
      const [delivery] = await sub.waitFor(1, (r) => r.method === 'POST' && r.url === `/s${scenario}`)
      assert.equal(delivery!.body, body)
      assert.equal(delivery!.headers['content-type'], type)
      assert.equal(delivery!.headers['link'], `<${HUB}>; rel="hub", <${topic}>; rel="self"`)
      const signature = createHmac('sha256', 'k').update(delivery!.body).digest('hex')
      assert.equal(delivery!.headers['x-hub-signature'], `sha256=${signature}`)
    })
  }
})

describe('WebSub hub: leases, refusals, denial, verification failures', () => {
  let server: TestServer
  let sub: Receiver
  before(async () => {
    sub = await startReceiver(subscriber())
    server = await startTestServer({
      allowPrivateTargets: true,
      publicUrl: PUBLIC_URL,
      retryScheduleMs: [0, 100],
      websubLease: { minSeconds: 1, defaultSeconds: 864_000, maxSeconds: 864_000 },
    })
  })
  after(async () => {
    await server.close()
    await sub.close()
  })

  test('a lease ends: lease_seconds=2, 3 s later a publish sends nothing; leases are capped', async () => {
    const callback = `${sub.url}/lease`
    await subscribe(server, {
      'hub.topic': heraldTopic('lease'),
      'hub.callback': callback,
      'hub.lease_seconds': 2,
    })
    assert.equal(query(gets(sub, '/lease')[0]!).get('hub.lease_seconds'), '2')
    await sleep(3_000)
    await publish(server.url, 'lease', { type: 'note' })
    await sleep(400)
    assert.equal(posts(sub, '/lease').length, 0)
    // No perpetual lease: a request for more than the maximum gets the maximum.
    const long = `${sub.url}/long`
    await subscribe(server, {
      'hub.topic': heraldTopic('lease'),
      'hub.callback': long,
      'hub.lease_seconds': 10 ** 9,
    })
    assert.equal(query(gets(sub, '/long')[0]!).get('hub.lease_seconds'), '864000')
  })

  test('a wrong challenge echo does not activate, and leaves an existing subscription as it was', async () => {
    const callback = `${sub.url}/wrong`
    await subscribe(server, {
      'hub.topic': heraldTopic('wrong'),
      'hub.callback': callback,
      'hub.secret': 'old',
    })
    sub.answer = subscriber({ echo: (challenge) => `${challenge}x` })
    try {
      assert.equal(
        (
          await hubRequest(server, {
            'hub.mode': 'subscribe',
            'hub.topic': heraldTopic('wrong'),
            'hub.callback': callback,
            'hub.secret': 'new',
          })
        ).status,
        202,
      )
      await until('the failed verification', async () => {
        const list = (await (await fetch(`${server.url}/v1/websub/verifications`)).json()) as {
          verifications: Verification[]
        }
        return list.verifications.find((v) => v.callback === callback && v.state === 'failed')
      })
      const fresh = `${sub.url}/never`
      await hubRequest(server, {
        'hub.mode': 'subscribe',
        'hub.topic': heraldTopic('wrong'),
        'hub.callback': fresh,
      })
      assert.equal((await verificationOf(server, fresh)).state, 'failed')
    } finally {
      sub.answer = subscriber()
    }
    const list = await subscriptions(server, heraldTopic('wrong'))
    assert.deepEqual(
      list.map((s) => s['callback']),
      [callback],
    )
    await publish(server.url, 'wrong', { type: 'note' })
    const [delivery] = await sub.waitFor(1, (r) => r.method === 'POST' && r.url === '/wrong')
    const old = createHmac('sha256', 'old').update(delivery!.body).digest('hex')
    assert.equal(delivery!.headers['x-hub-signature'], `sha256=${old}`, 'still the old subscription')
  })

  test('a callback answering 404 or 302 is not verified', async () => {
    for (const status of [404, 302]) {
      const callback = `${sub.url}/status-${status}`
      sub.answer = subscriber({ status })
      try {
        await hubRequest(server, {
          'hub.mode': 'subscribe',
          'hub.topic': heraldTopic('st'),
          'hub.callback': callback,
        })
        const verification = await verificationOf(server, callback)
        assert.equal(verification.state, 'failed')
        assert.match(verification.error ?? '', new RegExp(String(status)))
      } finally {
        sub.answer = subscriber()
      }
    }
  })

  test('hub.secret: 199 bytes are accepted, 200 refused with a plain-text reason', async () => {
    const ok = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('secret'),
      'hub.callback': `${sub.url}/secret`,
      'hub.secret': 'é'.repeat(99) + 'x', // 199 bytes in UTF-8
    })
    assert.equal(ok.status, 202)
    const refused = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('secret'),
      'hub.callback': `${sub.url}/secret`,
      'hub.secret': 'é'.repeat(100),
    })
    assert.equal(refused.status, 400)
    assert.match(refused.headers.get('content-type') ?? '', /^text\/plain/)
    assert.match(await refused.text(), /200 bytes/)
  })

  test('malformed requests are 4xx with a plain-text reason', async () => {
    const cases: Array<Record<string, string>> = [
      { 'hub.topic': heraldTopic('x'), 'hub.callback': `${sub.url}/m` },
      { 'hub.mode': 'foo', 'hub.topic': heraldTopic('x'), 'hub.callback': `${sub.url}/m` },
      { 'hub.mode': 'subscribe', 'hub.callback': `${sub.url}/m` },
      { 'hub.mode': 'subscribe', 'hub.topic': heraldTopic('x') },
      { 'hub.mode': 'subscribe', 'hub.topic': heraldTopic('x'), 'hub.callback': 'not a url' },
      { 'hub.mode': 'subscribe', 'hub.topic': heraldTopic('x'), 'hub.callback': 'ftp://127.0.0.1/' },
      {
        'hub.mode': 'subscribe',
        'hub.topic': heraldTopic('x'),
        'hub.callback': `${sub.url}/m`,
        'hub.lease_seconds': 'ten',
      },
      { 'hub.mode': 'publish' },
    ]
    for (const fields of cases) {
      const response = await hubRequest(server, fields)
      assert.equal(response.status, 400, JSON.stringify(fields))
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
      assert.ok((await response.text()).trim().length > 0)
    }
    const json = await fetch(`${server.url}/websub`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    assert.equal(json.status, 415)
    assert.equal(gets(sub, '/m').length, 0, 'nothing was sent for a refused request')
  })

  test('topic and callback URLs have at most 2048 characters; a publish ping names at most 100', async () => {
    const long = (base: string, length: number) => base + 'x'.repeat(length - base.length)
    const callback = `${sub.url}/long?q=`
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { 'hub.mode': 'subscribe', 'hub.topic': long(heraldTopic('x?'), 2049), 'hub.callback': callback },
        /hub.topic/,
      ],
      [
        {
          'hub.mode': 'subscribe',
          'hub.topic': long('https://example.test/', 900_000),
          'hub.callback': callback,
        },
        /hub.topic/,
      ],
      [
        { 'hub.mode': 'subscribe', 'hub.topic': heraldTopic('x'), 'hub.callback': long(callback, 2049) },
        /hub.callback/,
      ],
      [
        { 'hub.mode': 'unsubscribe', 'hub.topic': heraldTopic('x'), 'hub.callback': long(callback, 2049) },
        /hub.callback/,
      ],
      [{ 'hub.mode': 'publish', 'hub.url': long('https://example.test/', 2049) }, /hub.url/],
      [{ 'hub.mode': 'publish', 'hub.topic': long('https://example.test/', 2049) }, /hub.topic/],
    ]
    for (const [fields, names] of cases) {
      const response = await hubRequest(server, fields)
      assert.equal(response.status, 400, Object.values(fields).join(' ').slice(0, 80))
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
      const text = await response.text()
      assert.match(text, names)
      assert.match(text, /2048 characters/)
    }
    const urls = new URLSearchParams({ 'hub.mode': 'publish' })
    for (let i = 0; i < 101; i++) urls.append('hub.url', `https://example.test/feed/${i}`)
    const many = await fetch(`${server.url}/websub`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: urls.toString(),
    })
    assert.equal(many.status, 400)
    assert.match(await many.text(), /at most 100/)
    const longest = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('long'),
      'hub.callback': long(callback, 2048),
    })
    assert.equal(longest.status, 202, 'a 2048-character callback is taken')
    await until('the 2048-character callback to be verified', async () =>
      gets(sub, '/long').length > 0 ? true : undefined,
    )
    assert.equal(gets(sub, '/long').length, 1, 'only the request within the limit reached the callback')
  })

  test('a topic the hub refuses gets a denial: hub.mode=denied with hub.topic and hub.reason', async () => {
    const topic = heraldTopic('news/events') // "events" is reserved in Herald topic names
    const callback = `${sub.url}/denied?keep=1`
    assert.equal(
      (await hubRequest(server, { 'hub.mode': 'subscribe', 'hub.topic': topic, 'hub.callback': callback }))
        .status,
      202,
    )
    const verification = await verificationOf(server, callback)
    assert.equal(verification.state, 'denied')
    const [denial] = gets(sub, '/denied')
    const q = query(denial!)
    assert.equal(q.get('keep'), '1')
    assert.equal(q.get('hub.mode'), 'denied')
    assert.equal(q.get('hub.topic'), topic)
    assert.ok((q.get('hub.reason') ?? '').length > 0)
    assert.equal(q.get('hub.challenge'), null)
  })

  test('discovery: a Herald topic URL answers with the hub and self Link headers', async () => {
    await publish(server.url, 'disco', { type: 'note' })
    const response = await fetch(`${server.url}/v1/topics/disco`)
    assert.equal(response.headers.get('link'), `<${HUB}>; rel="hub", <${heraldTopic('disco')}>; rel="self"`)
  })

  test('410 from a callback ends the subscription', async () => {
    const callback = `${sub.url}/gone`
    await subscribe(server, { 'hub.topic': heraldTopic('gone'), 'hub.callback': callback })
    sub.answer = (request) => (request.method === 'POST' ? { status: 410 } : subscriber()(request, 0))
    try {
      await publish(server.url, 'gone', { type: 'note' })
      await until('the subscription removed', async () =>
        (await subscriptions(server, heraldTopic('gone'))).length === 0 ? true : undefined,
      )
    } finally {
      sub.answer = subscriber()
    }
  })

  test('a failing callback is retried on the schedule; the admin API shows the attempts', async () => {
    const callback = `${sub.url}/flaky`
    await subscribe(server, { 'hub.topic': heraldTopic('flaky'), 'hub.callback': callback })
    let calls = 0
    sub.answer = (request) =>
      request.method === 'POST' ? { status: ++calls === 1 ? 503 : 200 } : subscriber()(request, 0)
    try {
      await publish(server.url, 'flaky', { type: 'note' })
      await sub.waitFor(2, (r) => r.method === 'POST' && r.url === '/flaky')
    } finally {
      sub.answer = subscriber()
    }
    const [subscription] = await subscriptions(server, heraldTopic('flaky'))
    const detail = await until('two attempts', async () => {
      const one = (await (
        await fetch(`${server.url}/v1/websub/subscriptions/${subscription!['id']}`)
      ).json()) as {
        attempts: Array<{ status: number }>
        expires_at: string
      }
      return one.attempts.length === 2 ? one : undefined
    })
    assert.deepEqual(
      detail.attempts.map((a) => a.status),
      [200, 503],
    )
    assert.ok(Date.parse(detail.expires_at) > Date.now())
  })
})

describe('WebSub hub: operations', () => {
  let server: TestServer
  let sub: Receiver
  before(async () => {
    sub = await startReceiver(subscriber())
    server = await startTestServer({
      allowPrivateTargets: true,
      publicUrl: PUBLIC_URL,
      retryScheduleMs: [0, 100, 100, 100, 100, 100],
      disableAfterMs: 100,
    })
  })
  after(async () => {
    await server.close()
    await sub.close()
  })

  test('GET /websub is 405; an oversized request is a plain-text 413', async () => {
    const get = await fetch(`${server.url}/websub`)
    assert.equal(get.status, 405)
    assert.equal(get.headers.get('allow'), 'POST')
    const big = await hubRequest(server, {
      'hub.mode': 'publish',
      'hub.url': `http://x.test/${'a'.repeat(1_100_000)}`,
    })
    assert.equal(big.status, 413)
    assert.match(big.headers.get('content-type') ?? '', /^text\/plain/)
  })

  test("Herald's own topics are not offered: subscribing to herald.system is denied", async () => {
    const callback = `${sub.url}/system`
    await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('herald.system'),
      'hub.callback': callback,
    })
    assert.equal((await verificationOf(server, callback)).state, 'denied')
  })

  test('a failed unsubscribe leaves the subscription; the admin API deletes one', async () => {
    const callback = `${sub.url}/keep`
    await subscribe(server, { 'hub.topic': heraldTopic('keep'), 'hub.callback': callback })
    sub.answer = subscriber({ echo: () => 'no' })
    try {
      await hubRequest(server, {
        'hub.mode': 'unsubscribe',
        'hub.topic': heraldTopic('keep'),
        'hub.callback': callback,
      })
      assert.equal((await verificationOf(server, callback, 'unsubscribe')).state, 'failed')
    } finally {
      sub.answer = subscriber()
    }
    const [subscription] = await subscriptions(server, heraldTopic('keep'))
    assert.ok(subscription, 'still subscribed')
    const id = String(subscription['id'])
    assert.equal(
      (await fetch(`${server.url}/v1/hooks/${id}`, { method: 'DELETE' })).status,
      404,
      'not a webhook',
    )
    assert.equal(
      (await fetch(`${server.url}/v1/websub/subscriptions/${id}`, { method: 'DELETE' })).status,
      204,
    )
    assert.deepEqual(await subscriptions(server, heraldTopic('keep')), [])
    const text = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(text, /herald_websub_verifications_total\{mode="unsubscribe",outcome="failed"\} [1-9]/)
    assert.match(text, /herald_websub_verifications_total\{mode="subscribe",outcome="verified"\} [1-9]/)
  })

  test('requests for one topic and callback are verified in order: a slow subscribe, then an unsubscribe', async () => {
    const callback = `${sub.url}/order`
    sub.answer = (request) => {
      const answer = subscriber()(request, 0)
      // The subscribe's verification answers slowly; the unsubscribe's at once.
      return query(request).get('hub.mode') === 'subscribe' ? { ...answer, delayMs: 400 } : answer
    }
    try {
      const fields = { 'hub.topic': heraldTopic('order'), 'hub.callback': callback }
      assert.equal((await hubRequest(server, { 'hub.mode': 'subscribe', ...fields })).status, 202)
      assert.equal((await hubRequest(server, { 'hub.mode': 'unsubscribe', ...fields })).status, 202)
      assert.equal((await verificationOf(server, callback, 'unsubscribe')).state, 'verified')
      assert.equal((await verificationOf(server, callback, 'subscribe')).state, 'verified')
    } finally {
      sub.answer = subscriber()
    }
    assert.deepEqual(await subscriptions(server, heraldTopic('order')), [], 'the later unsubscribe wins')
  })

  test('a failing subscription is not disabled: it is retried until its lease ends', async () => {
    const callback = `${sub.url}/failing`
    await subscribe(server, { 'hub.topic': heraldTopic('failing'), 'hub.callback': callback })
    sub.answer = (request) => (request.method === 'POST' ? { status: 500 } : subscriber()(request, 0))
    try {
      await publish(server.url, 'failing', { type: 'note' })
      // Past --disable-after (100 ms) of continuous failure, and still attempted.
      await sub.waitFor(4, (r) => r.method === 'POST' && r.url === '/failing')
    } finally {
      sub.answer = subscriber()
    }
    const [subscription] = await subscriptions(server, heraldTopic('failing'))
    assert.equal(subscription!['state'], 'active')
    await publish(server.url, 'failing', { type: 'note' })
    await sub.waitFor(1, (r) => r.method === 'POST' && r.url === '/failing' && JSON.parse(r.body).seq === 2)
  })
})

describe('WebSub hub: access with HERALD_API_KEY', () => {
  test('the hub asks for the key, unless --websub-public', async () => {
    const sub = await startReceiver(subscriber())
    const closed = await startTestServer({ apiKey: 'k', allowPrivateTargets: true, publicUrl: PUBLIC_URL })
    const open = await startTestServer({
      apiKey: 'k',
      allowPrivateTargets: true,
      publicUrl: PUBLIC_URL,
      websubPublic: true,
    })
    try {
      const fields = {
        'hub.mode': 'subscribe',
        'hub.topic': heraldTopic('k'),
        'hub.callback': `${sub.url}/k`,
      }
      const refused = await hubRequest(closed, fields)
      assert.equal(refused.status, 401)
      assert.match(refused.headers.get('content-type') ?? '', /^text\/plain/)
      const keyed = await fetch(`${closed.url}/websub`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Bearer k' },
        body: form(fields),
      })
      assert.equal(keyed.status, 202)
      assert.equal((await hubRequest(open, fields)).status, 202)
    } finally {
      await closed.close()
      await open.close()
      await sub.close()
    }
  })
})

describe('WebSub hub: the SSRF guard covers verification and distribution', () => {
  let server: TestServer
  let sub: Receiver
  before(async () => {
    sub = await startReceiver(subscriber())
    server = await startTestServer({ allowPrivateTargets: false, publicUrl: PUBLIC_URL })
  })
  after(async () => {
    await server.close()
    await sub.close()
  })

  test('a loopback callback is refused outright', async () => {
    const response = await hubRequest(server, {
      'hub.mode': 'subscribe',
      'hub.topic': heraldTopic('x'),
      'hub.callback': `${sub.url}/cb`,
    })
    assert.equal(response.status, 400)
    assert.match(await response.text(), /loopback/)
  })

  test('a callback host name resolving to 127.0.0.1 is refused when the hub connects', async (t) => {
    const name = await loopbackHostName()
    if (name === undefined) {
      t.skip(NO_LOOPBACK_NAME)
      return
    }
    const callback = `http://${name}:${sub.port}/cb`
    assert.equal(
      (
        await hubRequest(server, {
          'hub.mode': 'subscribe',
          'hub.topic': heraldTopic('x'),
          'hub.callback': callback,
        })
      ).status,
      202,
    )
    const verification = await verificationOf(server, callback)
    assert.equal(verification.state, 'failed')
    assert.match(verification.error ?? '', /loopback/)
    assert.equal(sub.received.length, 0, 'the verification GET never reached it')
  })
})

describe('WebSub hub: a publish ping whose topic cannot be fetched', () => {
  test('a refused connection is logged as a warning and distributes nothing; no error is logged', async () => {
    const lines: Array<{ level: number; msg: string }> = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) })
    const sub = await startReceiver(subscriber())
    const server = await startTestServer({ allowPrivateTargets: true, publicUrl: PUBLIC_URL }, logger)
    try {
      const topic = 'http://127.0.0.1:9/feed' // a closed port: the fetch is refused at once
      await subscribe(server, { 'hub.topic': topic, 'hub.callback': `${sub.url}/refused` })
      const ping = await hubRequest(server, { 'hub.mode': 'publish', 'hub.url': topic })
      assert.equal(ping.status, 202)
      await until('the failed fetch to be logged', () =>
        lines.some((line) => line.msg.includes('could not be fetched')) ? true : undefined,
      )
      assert.deepEqual(
        lines.filter((line) => line.level >= 50),
        [],
        'the hub logged an error for what is an outcome of the ping',
      )
      assert.equal(posts(sub, '/refused').length, 0)
    } finally {
      await server.close()
      await sub.close()
    }
  })
})
