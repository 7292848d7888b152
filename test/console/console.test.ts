import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { WebSocket } from 'ws'
import { CONSOLE_DIST } from '../../src/http/routes/console.ts'
import { chromiumMissing, launchChromium } from '../chromium.ts'
import { startReceiver } from '../delivery/receiver.ts'
import { publish, ROOT, startTestServer, type TestServer, until } from '../helpers.ts'

const KEY = 'console-test-root-key-0123456789'
const AUTH = { authorization: `Bearer ${KEY}` }
const SHOTS = join(ROOT, 'docs', 'console')

// The console in a real Chromium against a real Herald and real webhook receivers. .ci/run installs
// Debian's chromium; without it (or without a console build: npm ci makes one) this suite is skipped,
// loudly.
const missing =
  chromiumMissing ??
  (existsSync(join(CONSOLE_DIST, 'index.html'))
    ? undefined
    : 'SKIPPED: web/dist is missing (npm run build:web)')
if (missing) process.stderr.write(`\n*** console tests ${missing} ***\n\n`)

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')

async function api<T>(server: TestServer, path: string, init: { method?: string; body?: unknown } = {}) {
  const response = await fetch(`${server.url}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...AUTH, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`)
  return (text ? JSON.parse(text) : undefined) as T
}

/** axe-core on the page as it is (evaluated over CDP, which the page's CSP does not govern). */
async function assertAccessible(page: Page, name: string): Promise<void> {
  await page.evaluate(AXE)
  const violations = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe
    return (await axe.run()).violations
  })) as Array<{ id: string; impact: string; help: string; nodes: Array<{ target: unknown }> }>
  const grave = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  assert.deepEqual(
    grave.map((v) => `${v.id} (${v.impact}): ${v.help} at ${JSON.stringify(v.nodes.map((n) => n.target))}`),
    [],
    `accessibility of ${name}`,
  )
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false })
}

describe('the console in headless Chromium', { skip: missing }, () => {
  let server: TestServer
  let browser: Browser
  let page: Page
  const failures: string[] = []

  before(async () => {
    server = await startTestServer({
      apiKey: KEY,
      allowPrivateTargets: true,
      retryScheduleMs: [0, 50, 50],
    })
    browser = await launchChromium()
    page = await browser.newPage({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
    page.on('pageerror', (error) => failures.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy/i.test(message.text()))
        failures.push(message.text())
    })
  })
  after(async () => {
    await browser?.close()
    await server?.close()
  })

  async function open(hash: string): Promise<void> {
    await page.goto(`${server.url}/${hash}`)
  }

  test('GET / serves the console with its CSP; the sign-in refuses a wrong key, then takes the right one', async () => {
    const response = await fetch(`${server.url}/`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-security-policy') ?? '', /script-src 'self'/)
    assert.doesNotMatch(response.headers.get('content-security-policy') ?? '', /unsafe-inline/)
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
    const html = await response.text()
    const script = /src="(\/console\/assets\/[^"]+\.js)"/.exec(html)?.[1]
    assert.ok(script, html)
    const asset = await fetch(`${server.url}${script}`)
    assert.match(asset.headers.get('content-type') ?? '', /javascript/)
    assert.match(asset.headers.get('cache-control') ?? '', /immutable/)

    await open('#/overview')
    await page.getByLabel('API key or token').fill('not-the-key')
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor()
    await assertAccessible(page, 'sign-in')
    await shot(page, 'sign-in')
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused key is not kept')

    await page.getByLabel('API key or token').fill(KEY)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.locator('body[data-ready="in"]').waitFor()
    assert.equal(await page.evaluate(() => document.cookie), '', 'no cookie')
  })

  test('topics, and a published event in the live tail within a second', async (t) => {
    await publish(
      server.url,
      'orders',
      [{ type: 'order.created', data: { id: 1 } }, { type: 'order.paid' }],
      AUTH,
    )
    await open('#/topics')
    await page.getByRole('link', { name: 'orders' }).waitFor()
    await assertAccessible(page, 'topics')
    await shot(page, 'topics')

    await page.getByRole('link', { name: 'orders' }).click()
    await page.getByText('live', { exact: true }).waitFor()
    await page.getByText('order.paid').first().waitFor() // the history
    const started = Date.now()
    await publish(server.url, 'orders', { type: 'order.shipped', data: { id: 1, carrier: 'ups' } }, AUTH)
    await page
      .locator('[data-testid="tail"]')
      .getByText('order.shipped', { exact: true })
      .waitFor({ timeout: 5000 })
    const elapsed = Date.now() - started
    t.diagnostic(`publish to visible in the live tail: ${elapsed} ms`)
    assert.ok(elapsed < 1000, `in the live tail after ${elapsed} ms`)

    // Each event's JSON, and the publish form.
    await page.locator('[data-testid="tail"] summary').first().click()
    await page.locator('[data-testid="tail"] pre').getByText('"carrier": "ups"').waitFor()
    await page.getByLabel('Type').fill('order.from-console')
    await page.getByLabel('Data (JSON)').fill('{"by":"console"}')
    await page.getByRole('button', { name: 'Publish' }).click()
    await page.getByText('Published as #4.').waitFor()
    await page.locator('[data-testid="tail"]').getByText('order.from-console', { exact: true }).waitFor()
    await assertAccessible(page, 'topic')
    await shot(page, 'topic')
  })

  test("a failing hook's delivery shows its attempts with the receiver's status and body; retry redelivers it", async () => {
    const receiver = await startReceiver(() => ({ status: 503, body: 'busy: try later (from the receiver)' }))
    try {
      const hook = await api<{ id: string }>(server, '/v1/hooks', {
        method: 'POST',
        body: {
          target_url: `${receiver.url}/payments`,
          topic: 'payments',
          description: 'payments to the ledger',
        },
      })
      await publish(server.url, 'payments', { type: 'payment.settled', data: { amount: 42 } }, AUTH)
      await receiver.waitFor(3)
      const failed = await until('the delivery fails', async () => {
        const { deliveries } = await api<{ deliveries: Array<{ id: number; state: string }> }>(
          server,
          `/v1/deliveries?hook=${hook.id}&state=failed`,
        )
        return deliveries[0]
      })

      await open('#/hooks')
      await page.getByRole('link', { name: 'payments to the ledger' }).waitFor()
      await page.getByText('failing').first().waitFor()
      await assertAccessible(page, 'hooks')
      await shot(page, 'hooks')

      await page.getByRole('link', { name: 'payments to the ledger' }).click()
      await page.getByRole('link', { name: `#${failed.id}` }).waitFor()
      await assertAccessible(page, 'hook')
      await shot(page, 'hook')

      await page.getByRole('link', { name: `#${failed.id}` }).click()
      await page.getByText('Attempt 3 at').waitFor()
      assert.equal(await page.getByText('HTTP 503').count(), 3)
      assert.equal(await page.getByText('busy: try later (from the receiver)').count(), 3)
      await assertAccessible(page, 'delivery')
      await shot(page, 'delivery')

      receiver.answer = () => ({ status: 200, body: 'thanks' })
      await page.getByRole('button', { name: 'Retry' }).click()
      const [redelivered] = (await receiver.waitFor(4)).slice(3)
      assert.equal(JSON.parse(redelivered!.body).data.amount, 42)
      await page.getByText('HTTP 200').waitFor()
      await page.locator('dd .badge').getByText('delivered').waitFor()
    } finally {
      await receiver.close()
    }
  })

  test('a hook created, paused and resumed from the console', async () => {
    const receiver = await startReceiver()
    try {
      await open('#/hooks')
      await page.getByText('Create a hook').click()
      await page.getByLabel('Target URL').fill(`${receiver.url}/made-in-console`)
      await page.getByLabel('Topic (empty: every topic)').fill('made')
      await page.getByLabel('Description').fill('made in the console')
      // A filter that is not JSON is refused in the page; a bad one by the server (its 400 shown).
      await page.getByLabel(/^Filter/).fill('{"exact":')
      await page.getByRole('button', { name: 'Create' }).click()
      await page.getByText('The filter is not valid JSON.').waitFor()
      await page.getByLabel(/^Filter/).fill('{"sql":"true"}')
      await page.getByRole('button', { name: 'Create' }).click()
      await page.getByText(/CESQL/).waitFor()
      await page.getByLabel(/^Filter/).fill('[{"prefix":{"type":"made."}}]')
      await page.getByRole('button', { name: 'Create' }).click()
      await page.getByText('Its signing secret').waitFor()
      await page.getByRole('link', { name: 'made in the console' }).click()
      await page.getByText('{"prefix":{"type":"made."}}').waitFor()
      await page.getByRole('button', { name: 'Pause' }).click()
      await page.getByRole('button', { name: 'Resume' }).waitFor()
      const { hooks } = await api<{ hooks: Array<{ description: string; state: string }> }>(
        server,
        '/v1/hooks',
      )
      assert.equal(hooks.find((h) => h.description === 'made in the console')?.state, 'paused')
      await page.getByRole('button', { name: 'Resume' }).click()
      await page.getByRole('button', { name: 'Pause' }).waitFor()
      // "Send a test event": the receiver gets one signed herald.test event, the page says its answer.
      receiver.answer = () => ({ status: 202, body: 'test received' })
      await page.getByRole('button', { name: 'Send a test event' }).click()
      const [test] = await receiver.waitFor(1, (r) => r.url === '/made-in-console')
      assert.equal(JSON.parse(test!.body).type, 'herald.test')
      await page.getByText('HTTP 202').waitFor()
      await page.getByText('test received').waitFor()
    } finally {
      await receiver.close()
    }
  })

  test('"retry all failed since" retries exactly the failed ones', async () => {
    const bulk = await startReceiver(() => ({ status: 500, body: 'down' }))
    const fine = await startReceiver(() => ({ status: 200 }))
    try {
      const failing = await api<{ id: string }>(server, '/v1/hooks', {
        method: 'POST',
        body: { target_url: `${bulk.url}/bulk`, topic: 'bulk' },
      })
      await api(server, '/v1/hooks', {
        method: 'POST',
        body: { target_url: `${fine.url}/bulk`, topic: 'bulk' },
      })
      await publish(server.url, 'bulk', [{ type: 'a' }, { type: 'b' }, { type: 'c' }], AUTH)
      await bulk.waitFor(9) // 3 events, 3 attempts each
      await fine.waitFor(3)
      await until('3 failed deliveries', async () => {
        const { deliveries } = await api<{ deliveries: unknown[] }>(
          server,
          `/v1/deliveries?hook=${failing.id}&state=failed`,
        )
        return deliveries.length === 3 ? true : undefined
      })
      // Every failed delivery of the server: these 3 (the payments one was retried and delivered).
      const { deliveries: allFailed } = await api<{ deliveries: unknown[] }>(
        server,
        '/v1/deliveries?state=failed',
      )
      assert.equal(allFailed.length, 3)

      await open('#/deliveries?state=failed')
      await page.getByRole('cell', { name: 'bulk' }).first().waitFor()
      assert.equal(await page.locator('tbody tr').count(), 3)
      await assertAccessible(page, 'deliveries')
      await shot(page, 'deliveries')

      bulk.answer = () => ({ status: 200 })
      const before = { bulk: bulk.received.length, fine: fine.received.length }
      await page.getByRole('button', { name: /Retry all failed since then/ }).click()
      await page.getByText('3 failed deliveries queued again.').waitFor()
      await bulk.waitFor(before.bulk + 3)
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(bulk.received.length, before.bulk + 3, 'each failed one once')
      assert.equal(fine.received.length, before.fine, 'nothing delivered is sent again')
      assert.deepEqual(
        bulk.received
          .slice(before.bulk)
          .map((r) => JSON.parse(r.body).type)
          .sort(),
        ['a', 'b', 'c'],
      )
    } finally {
      await bulk.close()
      await fine.close()
    }
  })

  test('a connection closed from the console is closed', async () => {
    const socket = new WebSocket(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${KEY}`, 'herald.v1')
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
    })
    socket.send(JSON.stringify({ op: 'subscribe', topic: 'orders', ref: 1 }))
    const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)))
    await until('the socket is listed', async () => {
      const { connections } = await api<{ connections: Array<{ topics: string[] }> }>(
        server,
        '/v1/connections',
      )
      return connections.some((c) => c.topics.includes('orders')) ? true : undefined
    })
    await open('#/connections')
    const row = page.locator('tr', { hasText: 'ws' }).filter({ hasText: 'orders' })
    await row.waitFor()
    await assertAccessible(page, 'connections')
    await shot(page, 'connections')
    await row.getByRole('button', { name: /Close/ }).click()
    assert.equal(await closed, 4000)
    await row.waitFor({ state: 'detached' })
  })

  test('the overview: rates, connections, cluster and herald.system', async () => {
    await open('#/overview')
    await page.getByText('leader').waitFor()
    await page.locator('[data-testid="totals"]').waitFor()
    await page.getByText('hook.created').first().waitFor() // the audit trail, over SSE
    await publish(server.url, 'orders', { type: 'order.more' }, AUTH)
    await page.locator('svg.spark').first().waitFor()
    await assertAccessible(page, 'overview')
    await shot(page, 'overview')
  })

  test('WebSub subscriptions and keys', async () => {
    const subscriber = await startReceiver((request) => {
      const challenge = new URL(request.url, 'http://x').searchParams.get('hub.challenge') ?? ''
      return { status: 200, body: challenge }
    })
    try {
      const accepted = await fetch(`${server.url}/websub`, {
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          'hub.mode': 'subscribe',
          'hub.topic': `${server.url}/v1/topics/news`,
          'hub.callback': `${subscriber.url}/news`,
          'hub.lease_seconds': '3600',
        }).toString(),
      })
      assert.equal(accepted.status, 202, await accepted.text())
      await subscriber.waitFor(1)
      // The receiver answered the challenge; the hub records the outcome just after: wait for it
      // so that the page, which loads once, shows the finished verification.
      await until('the verification is recorded', async () => {
        const { verifications } = await api<{ verifications: Array<{ state: string }> }>(
          server,
          '/v1/websub/verifications',
        )
        return verifications.some((v) => v.state === 'verified') ? true : undefined
      })
      await open('#/websub')
      await page.getByText(`${subscriber.url}/news`).first().waitFor()
      await page.getByText('verified').first().waitFor()
      await assertAccessible(page, 'websub')
      await shot(page, 'websub')
    } finally {
      await subscriber.close()
    }

    await open('#/keys')
    await page.getByText('Create a key').click()
    await page.getByLabel('Name').fill('orders reader')
    await page.getByLabel('Topic patterns (comma separated: orders, orders/*, **)').fill('orders')
    await page.getByRole('button', { name: 'Create' }).click()
    const secret = await page.locator('[data-testid="new-key"]').textContent()
    assert.match(secret ?? '', /^hk_/)
    const read = await fetch(`${server.url}/v1/topics/orders/events?after=0`, {
      headers: { authorization: `Bearer ${secret}` },
    })
    assert.equal(read.status, 200, 'the key made in the console reads orders')
    await page.getByRole('cell', { name: /^orders reader/ }).waitFor()
    await assertAccessible(page, 'keys')
    await shot(page, 'keys')
    page.once('dialog', (dialog) => void dialog.accept())
    await page.getByRole('button', { name: 'Revoke key orders reader' }).click()
    await page.getByText('No scoped key').waitFor()
  })

  test('the event-type catalog: register a type, a breaking new version is reported, versions listed', async () => {
    await open('#/types')
    await page.getByText('No event type registered').waitFor()
    await page.getByText('Register a type').click()
    await page.getByLabel('Event type').fill('parcel.sent')
    await page
      .getByLabel('JSON Schema (2020-12)')
      .fill('{"type":"object","properties":{"weight":{"type":"number"}}}')
    await page.getByLabel('Description (optional)').fill('A parcel left the warehouse.')
    await page.getByRole('button', { name: 'Register' }).click()
    await page.locator('[data-testid="registered"]', { hasText: 'version 1' }).waitFor()
    const bad = await publish(server.url, 'parcels', { type: 'parcel.sent', data: { weight: 'heavy' } }, AUTH)
    assert.equal(bad.status, 422, 'the type registered in the console is checked at publish')
    await page.getByRole('link', { name: 'parcel.sent' }).click()
    await page.getByText('A parcel left the warehouse.').waitFor()
    await page.getByText('Register a new version').click()
    await page
      .getByLabel('JSON Schema (2020-12)')
      .fill('{"type":"object","properties":{"weight":{"type":"number"}},"required":["weight"]}')
    await page.getByRole('button', { name: 'Register' }).click()
    const report = page.locator('[data-testid="registered"]', { hasText: 'version 2' })
    await report.waitFor()
    await report.getByText('breaking', { exact: true }).waitFor()
    await report.getByText('"weight" is now required.', { exact: false }).waitFor()
    await page.getByRole('button', { name: 'Version 1' }).waitFor()
    await page.getByRole('button', { name: 'Version 2' }).waitFor()
    await assertAccessible(page, 'types')
    await shot(page, 'types')
  })

  test('on a phone-sized screen in the dark, the nav collapses behind a menu button', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' })
    try {
      await phone.goto(`${server.url}/#/topics`)
      await phone.getByLabel('API key or token').fill(KEY)
      await phone.getByRole('button', { name: 'Sign in' }).click()
      await phone.getByRole('link', { name: 'orders' }).waitFor()
      assert.equal(await phone.getByRole('link', { name: 'Deliveries' }).isVisible(), false)
      await phone.getByRole('button', { name: 'Menu' }).click()
      await phone.getByRole('link', { name: 'Deliveries' }).waitFor()
      await assertAccessible(phone, 'phone, dark')
      await phone.screenshot({ path: join(SHOTS, 'phone-dark.png') })
    } finally {
      await phone.close()
    }
  })

  test('no script error and no CSP violation on any page', () => {
    assert.deepEqual(failures, [])
  })
})
