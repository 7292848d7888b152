import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CLIENT_DIST } from '../../src/http/routes/client.ts'
import { ROOT, startTestServer, type TestServer, tempDir, until } from '../helpers.ts'

// Built from the current source (`npm ci` builds it too, in prepare), so that the export and the
// served file are what this checkout holds.
const built = spawnSync(
  process.execPath,
  [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--config', 'src/client/vite.config.ts'],
  { cwd: ROOT, encoding: 'utf8' },
)
if (built.status !== 0 || !existsSync(CLIENT_DIST)) throw new Error(`build:client failed: ${built.stderr}`)

describe('client: the package export, the served bundle, presence, verifyWebhook', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ allowPrivateTargets: true, heartbeatMs: 1000 })
  })
  after(() => server.close())

  test("import { Herald } from 'herald/client' (the package's self-reference) publishes and subscribes", async () => {
    const { Herald } = await import('herald/client')
    const client = new Herald({ url: server.url })
    const got: number[] = []
    try {
      client.subscribe('pkg', (event) => got.push(event.seq), { after: 0 })
      const stored = await client.publish('pkg', { type: 'hello', data: { n: 1 } })
      assert.equal(stored.seq, 1)
      assert.equal(stored.type, 'hello')
      await until('the event', () => (got.length === 1 ? true : undefined), 30_000)
      assert.equal(client.transport, 'ws')
    } finally {
      client.close()
    }
  })

  test('GET /v1/client.js is one ES module that runs in Node (as a <script type=module> would load it)', async () => {
    const response = await fetch(`${server.url}/v1/client.js`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/javascript/)
    const source = await response.text()
    assert.doesNotMatch(source, /node:crypto/, 'no Node-only code in the browser bundle')
    const file = join(await tempDir(), 'client.mjs')
    await writeFile(file, source)
    const { Herald } = (await import(file)) as typeof import('../../src/client/index.ts')
    const client = new Herald({ url: server.url })
    try {
      const got: string[] = []
      client.subscribe('served', (event) => got.push(event.type))
      await until('connected', () => (client.state === 'connected' ? true : undefined), 30_000)
      await client.publish('served', { type: 'a' })
      await until('the event', () => (got.length === 1 ? true : undefined), 30_000)
      assert.deepEqual(got, ['a'])
    } finally {
      client.close()
    }
  })

  test('presence: a member joins over the WebSocket; others see it, by op and over HTTP', async () => {
    const { Herald } = await import('../../src/client/index.ts')
    const ann = new Herald({ url: server.url })
    const bob = new Herald({ url: server.url })
    const http = new Herald({ url: server.url, transport: 'poll' })
    const changes: string[] = []
    try {
      bob.subscribe('room/1', () => {}, {
        onPresence: (change) =>
          changes.push(`${change.op} ${String((change.member.info as { name: string }).name)}`),
      })
      await until('bob connected', () => (bob.state === 'connected' ? true : undefined), 30_000)
      const annSub = ann.subscribe('room/1', () => {}, { presence: { info: { name: 'Ann' } } })
      await until('ann joined', () => (changes.includes('join Ann') ? true : undefined), 30_000)
      const members = await bob.presence('room/1')
      assert.deepEqual(
        members.map((member) => member.info),
        [{ name: 'Ann' }],
      )
      assert.deepEqual(
        (await http.presence('room/1')).map((member) => member.info),
        [{ name: 'Ann' }],
      )
      annSub.unsubscribe()
      await until('ann left', () => (changes.includes('leave Ann') ? true : undefined), 30_000)
    } finally {
      ann.close()
      bob.close()
      http.close()
    }
  })

  test("verifyWebhook accepts Herald's own delivery and refuses a tampered one", async () => {
    const { verifyWebhook } = await import('herald/client/webhooks')
    const secret = `whsec_${randomBytes(32).toString('base64')}`
    const received: Array<{ body: string; headers: Record<string, string | string[] | undefined> }> = []
    const receiver = createServer((request, response) => {
      let body = ''
      request.on('data', (chunk) => (body += chunk))
      request.on('end', () => {
        received.push({ body, headers: request.headers })
        response.writeHead(204).end()
      })
    })
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
    try {
      const target = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`
      const created = await fetch(`${server.url}/v1/hooks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ target_url: target, topic: 'hooked', secret }),
      })
      assert.equal(created.status, 201)
      const { Herald } = await import('../../src/client/index.ts')
      const client = new Herald({ url: server.url })
      await client.publish('hooked', { type: 'signed', data: { x: 1 } })
      client.close()
      await until(
        'the delivery',
        () => (received.some((one) => one.body.includes('signed')) ? true : undefined),
        30_000,
      )
      const delivery = received.find((one) => one.body.includes('signed'))!
      const event = verifyWebhook<{ type: string }>(secret, delivery.body, delivery.headers)
      assert.equal(event.type, 'signed')
      assert.throws(
        () => verifyWebhook(secret, delivery.body.replace('signed', 'forged'), delivery.headers),
        /matches/,
      )
      const other = `whsec_${randomBytes(32).toString('base64')}`
      assert.throws(() => verifyWebhook(other, delivery.body, delivery.headers), /matches/)
      assert.throws(
        () => verifyWebhook(secret, delivery.body, delivery.headers, { now: Date.now() + 3_600_000 }),
        /too far/,
      )
    } finally {
      receiver.close()
    }
  })
})
