import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest, Http2Session } from 'node:http2'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { chromiumMissing, launchChromium } from '../chromium.ts'
import { sleep, startTestServer, type TestServer } from '../helpers.ts'
import { certFixture, h1fetch } from './clients.ts'

// What HTTP/2 changes for a browser: its EventSources to one origin share one connection, where
// over HTTP/1.1 it holds six connections per origin at most, and a seventh EventSource waits.
const missing = chromiumMissing
if (missing) process.stderr.write(`\n*** browser tests ${missing} ***\n\n`)

const TOPICS = 10

type Seen = { seen: Record<string, number>; opened: number }

/** Opens one EventSource per topic from a page of the server's own origin. */
async function openTen(browser: Browser, url: string, prefix: string): Promise<Page> {
  const page = await browser.newPage()
  await page.goto(`${url}/healthz`)
  await page.evaluate(
    ({ prefix, count }) => {
      const w = globalThis as unknown as Seen & { sources: EventSource[] }
      w.seen = {}
      w.opened = 0
      w.sources = []
      for (let index = 0; index < count; index++) {
        const source = new EventSource(`/v1/topics/${prefix}-${index}/events`)
        source.onopen = () => w.opened++
        source.onmessage = () => {
          w.seen[index] = (w.seen[index] ?? 0) + 1
        }
        w.sources.push(source)
      }
    },
    { prefix, count: TOPICS },
  )
  return page
}

const received = (page: Page) => page.evaluate(() => Object.keys((globalThis as unknown as Seen).seen).length)

describe('in headless Chromium: ten EventSources to one origin', { skip: missing }, () => {
  const made = certFixture()
  let browser: Browser
  before(async () => {
    browser = await launchChromium(['--ignore-certificate-errors'])
  })
  after(async () => {
    await browser?.close()
  })

  test('over HTTPS: all ten get a live event at once, over ONE HTTP/2 session', async () => {
    const server: TestServer = await startTestServer({
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const sessions = new Set<Http2Session>()
    const versions = new Set<string>()
    let sessionsOpened = 0
    server.herald.server.server.on('session', () => sessionsOpened++)
    server.herald.server.server.on('request', (request: Http2ServerRequest) => {
      if (request.method !== 'GET' || !request.url.startsWith('/v1/topics/h2-')) return
      versions.add(request.httpVersion)
      sessions.add(request.stream.session!)
    })
    const page = await openTen(browser, server.url, 'h2')
    try {
      await page.waitForFunction((count) => (globalThis as unknown as Seen).opened === count, TOPICS)
      for (let index = 0; index < TOPICS; index++) {
        const answer = await h1fetch(`${server.url}/v1/topics/h2-${index}/events`, made.cert.cert, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'hello', data: index }),
        })
        assert.equal(answer.status, 201)
      }
      await page.waitForFunction(
        (count) => Object.keys((globalThis as unknown as Seen).seen).length === count,
        TOPICS,
        { timeout: 10_000 },
      )
      assert.equal(await received(page), TOPICS)
      assert.deepEqual([...versions], ['2.0'])
      assert.equal(sessions.size, 1, 'the ten streams share one HTTP/2 connection')
      assert.equal(sessionsOpened, 1, 'the page made one HTTP/2 session in all')
    } finally {
      await page.close()
      await server.close()
    }
  })

  test('over plain HTTP/1.1: only six of the ten are open, and only six get their event', async () => {
    const server: TestServer = await startTestServer()
    const sockets = new Set<unknown>()
    server.herald.server.server.on('request', (request: IncomingMessage) => {
      if (request.method === 'GET' && request.url?.startsWith('/v1/topics/h1-')) sockets.add(request.socket)
    })
    const page = await openTen(browser, server.url, 'h1')
    try {
      await page.waitForFunction(() => (globalThis as unknown as Seen).opened === 6)
      for (let index = 0; index < TOPICS; index++) {
        const answer = await fetch(`${server.url}/v1/topics/h1-${index}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ type: 'hello', data: index }),
        })
        assert.equal(answer.status, 201)
      }
      await page.waitForFunction(
        () => Object.keys((globalThis as unknown as Seen).seen).length === 6,
        undefined,
        { timeout: 10_000 },
      )
      await sleep(1000) // the four others are still waiting for a connection
      assert.equal(await received(page), 6)
      assert.equal(await page.evaluate(() => (globalThis as unknown as Seen).opened), 6)
      assert.equal(sockets.size, 6, 'six connections, one stream each')
    } finally {
      await page.close()
      await server.close()
    }
  })

  test('over HTTPS: a page served over HTTP/2 opens its WebSocket over HTTP/1.1 (wss) and gets events', async () => {
    const server: TestServer = await startTestServer({
      tls: { certFile: made.cert.certFile, keyFile: made.cert.keyFile },
    })
    const upgrades: string[] = []
    server.herald.server.server.on('upgrade', (request: IncomingMessage) =>
      upgrades.push(request.httpVersion),
    )
    const page = await browser.newPage()
    try {
      await page.goto(`${server.url}/healthz`)
      await page.evaluate(
        (url) => {
          const w = globalThis as unknown as { messages: Array<Record<string, unknown>> }
          w.messages = []
          const ws = new WebSocket(url, 'herald.v1')
          ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', topic: 'browser-wss', ref: 1 }))
          ws.onmessage = (message) => w.messages.push(JSON.parse(message.data))
        },
        `${server.url.replace('https', 'wss')}/v1/ws`,
      )
      await page.waitForFunction(() =>
        (globalThis as unknown as { messages: Array<Record<string, unknown>> }).messages.some(
          (m) => m['op'] === 'subscribed',
        ),
      )
      await h1fetch(`${server.url}/v1/topics/browser-wss/events`, made.cert.cert, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'hello', data: 'over wss' }),
      })
      await page.waitForFunction(() =>
        (globalThis as unknown as { messages: Array<Record<string, unknown>> }).messages.some(
          (m) => m['op'] === 'event',
        ),
      )
      assert.deepEqual(upgrades, ['1.1'], 'one upgrade, on an HTTP/1.1 connection')
    } finally {
      await page.close()
      await server.close()
    }
  })
})
