import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Agent } from 'undici'
import { KeyRing } from '../../src/access/keys.ts'
import { createLogger } from '../../src/app.ts'
import { LocalBus } from '../../src/bus/local.ts'
import { loadConfig } from '../../src/config/config.ts'
import { WebSubHub } from '../../src/delivery/websub-hub.ts'
import { EventTypes } from '../../src/event-types/catalog.ts'
import { createAccess } from '../../src/http/access.ts'
import { buildServer } from '../../src/http/server.ts'
import { TopicLog } from '../../src/log/topic-log.ts'
import { createMetrics } from '../../src/metrics/metrics.ts'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import { Connections } from '../../src/streams/connections.ts'
import { Presence } from '../../src/streams/presence.ts'
import { publish, sleep, spawnServer, startTestServer, type TestServer, tempDir } from '../helpers.ts'

describe('operations', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  test('/healthz and /readyz answer 200 while serving', async () => {
    const health = await fetch(`${server.url}/healthz`)
    assert.deepEqual([health.status, await health.json()], [200, { status: 'ok' }])
    const ready = await fetch(`${server.url}/readyz`)
    assert.deepEqual([ready.status, await ready.json()], [200, { status: 'ready' }])
  })

  test('/metrics exposes herald_ metrics in Prometheus text format', async () => {
    await publish(server.url, 'm', [{ type: 'a' }, { type: 'b' }])
    const held = fetch(`${server.url}/v1/topics/m/events?after=2&wait=5`)
    await sleep(100)
    const response = await fetch(`${server.url}/metrics`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
    const text = await response.text()
    assert.match(text, /^herald_events_published_total 2$/m)
    assert.match(text, /^herald_publish_requests_total\{outcome="created"\} 1$/m)
    assert.match(text, /^herald_publish_duration_seconds_count 1$/m)
    assert.match(text, /^herald_long_polls_open 1$/m)
    assert.match(text, /^herald_process_resident_memory_bytes \d+/m)
    await publish(server.url, 'm', { type: 'c' })
    await held
    const later = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(later, /^herald_long_polls_open 0$/m)
    assert.match(
      later,
      /^herald_http_requests_total\{route="\/v1\/topics\/\*",method="POST",status="201"\} 2$/m,
    )
  })
})

describe('graceful shutdown', () => {
  test('SIGTERM answers held long polls, refuses new work, keeps the data and exits 0', async () => {
    const dataDir = await tempDir()
    const server = await spawnServer(['--data', dataDir, '--log-level', 'info'])
    assert.equal((await publish(server.url, 'drain', { type: 'before' })).status, 201)
    const held = fetch(`${server.url}/v1/topics/drain/events?after=1&wait=60`)
    await sleep(200)
    const started = Date.now()
    server.child.kill('SIGTERM')
    const response = await held
    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), { events: [], next: 1 })
    const { code } = await server.exited
    assert.equal(code, 0)
    assert.ok(Date.now() - started < 10_000, 'the held poll did not keep the server up')
    assert.match(server.output(), /herald stopped/)
    await assert.rejects(fetch(`${server.url}/healthz`), 'no longer listening')
    const again = await spawnServer(['--data', dataDir])
    try {
      const read = (await (await fetch(`${again.url}/v1/topics/drain/events`)).json()) as {
        events: unknown[]
      }
      assert.equal(read.events.length, 1)
    } finally {
      again.child.kill('SIGTERM')
      await again.exited
    }
  })

  test('/readyz is 503 problem+json while starting and while draining', async () => {
    const config = loadConfig({ 'log-level': 'silent' }, {})
    for (const [draining, detail] of [
      [false, /starting/],
      [true, /draining/],
    ] as const) {
      const controller = new AbortController()
      if (draining) controller.abort()
      const store = new SqliteStore({ dataDir: await tempDir() })
      const metrics = createMetrics()
      const log = new TopicLog(store, new LocalBus(), metrics)
      const agent = new Agent()
      const app = buildServer(
        {
          config,
          access: createAccess(),
          log,
          metrics,
          connections: new Connections({
            maxConnections: 1,
            heartbeatMs: 60_000,
            stallTimeoutMs: 60_000,
            metrics,
          }),
          presence: new Presence({ store, nodeId: 'node-ops', logger: createLogger(config), maxMembers: 10 }),
          draining: controller.signal,
          eventTypes: new EventTypes(store, config.publicUrl),
          notReady: async () => (draining ? 'The server is draining.' : 'The server is starting.'),
          hooks: { policy: { allowPrivateTargets: false, secretGraceMs: 0, agent }, wake: () => {}, store },
          websub: new WebSubHub({
            log,
            store,
            nodeId: 'node-ops',
            agent,
            logger: createLogger(config),
            publicUrl: config.publicUrl,
            allowPrivateTargets: false,
            lease: config.websubLease,
            fetchLimitBytes: 1024,
            timeoutMs: 1000,
            onVerification: () => {},
          }),
          cluster: { store: store.kind, bus: 'local', nodes: () => store.nodes() },
          keys: { store, ring: new KeyRing(store) },
          audit: async () => {},
        },
        createLogger(config),
      )
      const response = await app.inject({ method: 'GET', url: '/readyz' })
      assert.equal(response.statusCode, 503)
      assert.match(response.headers['content-type'] as string, /^application\/problem\+json/)
      assert.match(response.json().detail, detail)
      await app.close()
      await store.close()
    }
  })
})
