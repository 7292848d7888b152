import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Browser } from 'playwright-core'
import { mintToken } from '../../src/access/tokens.ts'
import { chromiumMissing, launchChromium } from '../chromium.ts'
import { publish, startTestServer, type TestServer } from '../helpers.ts'

// A real browser's EventSource and WebSocket against Herald. .ci/run installs Debian's chromium;
// without it this suite is skipped, loudly.
const missing = chromiumMissing
if (missing) process.stderr.write(`\n*** browser tests ${missing} ***\n\n`)

describe('in headless Chromium', { skip: missing }, () => {
  let server: TestServer
  let browser: Browser
  before(async () => {
    server = await startTestServer()
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await server?.close()
  })

  test('an EventSource gets the backlog, then live events', async () => {
    await publish(server.url, 'browser', [{ type: 'a' }, { type: 'b' }])
    const page = await browser.newPage()
    await page.goto(`${server.url}/healthz`) // a page of Herald's own origin
    await page.evaluate(() => {
      const w = globalThis as unknown as { seen: number[]; source: EventSource }
      w.seen = []
      w.source = new EventSource('/v1/topics/browser/events?after=0')
      w.source.onmessage = (message) => w.seen.push(JSON.parse(message.data).seq)
    })
    await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 2)
    await publish(server.url, 'browser', { type: 'c' })
    await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 3)
    assert.deepEqual(await page.evaluate(() => (globalThis as unknown as { seen: number[] }).seen), [1, 2, 3])
    await page.close()
  })

  test('an EventSource with a filter takes the bare id after skipped events as its Last-Event-ID', async () => {
    await publish(server.url, 'browser-filter', [{ type: 'a' }, { type: 'b' }, { type: 'b' }])
    // What each request for the stream asked to resume from (a listener beside Fastify's only reads).
    const resumedFrom: Array<string | undefined> = []
    const onRequest = (request: import('node:http').IncomingMessage) => {
      if (request.url?.startsWith('/v1/topics/browser-filter/')) {
        resumedFrom.push(request.headers['last-event-id'] as string | undefined)
      }
    }
    server.herald.server.server.on('request', onRequest)
    const page = await browser.newPage()
    try {
      await page.goto(`${server.url}/healthz`)
      const filter = encodeURIComponent(JSON.stringify({ exact: { type: 'a' } }))
      await page.evaluate((url) => {
        const w = globalThis as unknown as { seen: number[]; source: EventSource }
        w.seen = []
        w.source = new EventSource(url)
        w.source.onmessage = (message) => w.seen.push(JSON.parse(message.data).seq)
      }, `/v1/topics/browser-filter/events?after=0&filter=${filter}`)
      await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 1)
      // Close the stream from the server's side: the browser reconnects with its last event ID.
      const listed = (await (await fetch(`${server.url}/v1/connections`)).json()) as {
        connections: Array<{ id: string; topics: string[] }>
      }
      const stream = listed.connections.find((c) => c.topics.includes('browser-filter'))!
      await new Promise((resolve) => setTimeout(resolve, 200)) // the bare id is on its way
      assert.equal(
        (await fetch(`${server.url}/v1/connections/${stream.id}`, { method: 'DELETE' })).status,
        204,
      )
      for (let i = 0; i < 100 && resumedFrom.length < 2; i++) await new Promise((r) => setTimeout(r, 100))
      assert.deepEqual(resumedFrom, [undefined, '3'], 'resumed past the skipped events 2 and 3')
      await publish(server.url, 'browser-filter', [{ type: 'b' }, { type: 'a' }])
      await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 2)
      assert.deepEqual(await page.evaluate(() => (globalThis as unknown as { seen: number[] }).seen), [1, 5])
    } finally {
      server.herald.server.server.off('request', onRequest)
      await page.close()
    }
  })

  test('a WebSocket subscribes, receives, and publishes', async () => {
    const page = await browser.newPage()
    await page.goto(`${server.url}/healthz`)
    const published = await page.evaluate(async () => {
      const socket = new WebSocket(
        `ws://${(globalThis as unknown as { location: { host: string } }).location.host}/v1/ws`,
        'herald.v1',
      )
      const messages: Array<Record<string, unknown>> = []
      ;(globalThis as unknown as { messages: typeof messages }).messages = messages
      socket.onmessage = (message) => messages.push(JSON.parse(message.data))
      await new Promise((resolve) => {
        socket.onopen = resolve
      })
      socket.send(JSON.stringify({ op: 'subscribe', topic: 'browser-ws', after: 0, ref: 1 }))
      socket.send(
        JSON.stringify({
          op: 'publish',
          topic: 'browser-ws',
          type: 'from.browser',
          data: { ok: true },
          ref: 2,
        }),
      )
      // The reply to the publish and the event it produced may come in either order.
      const arrived = () => ['published', 'event'].every((op) => messages.some((m) => m['op'] === op))
      for (let i = 0; i < 200 && !arrived(); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      return { protocol: socket.protocol, messages }
    })
    assert.equal(published.protocol, 'herald.v1')
    const ops = published.messages.map((m) => m['op'])
    assert.ok(ops.includes('subscribed') && ops.includes('published') && ops.includes('event'), ops.join())
    const event = published.messages.find((m) => m['op'] === 'event')!['event'] as {
      type: string
      seq: number
    }
    assert.deepEqual([event.type, event.seq], ['from.browser', 1])
    await page.close()
  })
})

describe('in headless Chromium, with a signed token', { skip: missing }, () => {
  const ROOT_KEY = 'root-key-0123456789abcdef'
  const SECRET = 'jwt-secret-for-tests-0123456789abcdef'
  let server: TestServer
  let browser: Browser
  before(async () => {
    server = await startTestServer({
      apiKey: ROOT_KEY,
      jwt: { secret: SECRET, publicKeyPem: undefined, audience: undefined },
    })
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await server?.close()
  })

  test('an EventSource with ?access_token=<jwt> streams, and its stream ends at exp (then 401: it gives up)', async () => {
    const root = { authorization: `Bearer ${ROOT_KEY}` }
    await publish(server.url, 'chat/room', [{ type: 'a' }, { type: 'b' }], root)
    const page = await browser.newPage()
    await page.goto(`${server.url}/healthz`)
    // Minted once the page is up, and for long enough that a loaded machine still streams before exp.
    const token = await mintToken(SECRET, { sub: 'browser', subscribe: ['chat/*'], ttlSeconds: 8 })
    const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number
    await page.evaluate((token) => {
      const w = globalThis as unknown as { seen: number[]; errors: number[]; source: EventSource }
      w.seen = []
      w.errors = []
      w.source = new EventSource(`/v1/topics/chat/room/events?after=0&access_token=${token}`)
      w.source.onmessage = (message) => w.seen.push(JSON.parse(message.data).seq)
      w.source.onerror = () => w.errors.push(Date.now())
    }, token)
    await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 2)
    await publish(server.url, 'chat/room', { type: 'c' }, root)
    await page.waitForFunction(() => (globalThis as unknown as { seen: number[] }).seen.length === 3)
    // At exp the server ends the stream; EventSource reconnects with the same token, is refused (401),
    // and closes for good (readyState 2).
    await page.waitForFunction(
      () => (globalThis as unknown as { source: EventSource }).source.readyState === 2,
      undefined,
      {
        timeout: 30_000,
      },
    )
    const { seen, errors } = await page.evaluate(() => {
      const w = globalThis as unknown as { seen: number[]; errors: number[] }
      return { seen: w.seen, errors: w.errors }
    })
    assert.deepEqual(seen, [1, 2, 3])
    assert.ok(
      errors.length > 0 && errors[0]! >= exp * 1000 - 100,
      `the first error came $exp * 1000 - errors[0]!ms before exp`,
    )
    await page.close()
  })
})
