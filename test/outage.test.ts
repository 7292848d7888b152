import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { test } from 'node:test'
import pg from 'pg'
import { problemOf, publish, readAll, sleep, spawnServer, tempDir, until } from './helpers.ts'
import { skipWithoutPostgres, startPrivatePostgres } from './postgres.ts'
import { StreamReader } from './streams/clients.ts'

const skip = await skipWithoutPostgres()

/**
 * PostgreSQL goes away under load, on a server of this test's own (never the shared one): stopped
 * outright, then Herald's connections killed with pg_terminate_backend. Publishers retry every request
 * that did not get a 201 with the same Idempotency-Key, as docs/api.md tells clients to: so each
 * logical event must end up stored exactly once, whether the failed attempt had committed or not.
 */
test('PostgreSQL stopped and its connections killed under load: 503 with Retry-After, /readyz 503, streams stay open and resume, every event stored exactly once', {
  skip,
}, async () => {
  const database = await startPrivatePostgres()
  const dataDir = await tempDir()
  const server = await spawnServer(['--data', dataDir, '--log-level', 'info', '--heartbeat', '1s'], {
    HERALD_DATABASE_URL: database.url,
  })
  const stream = await StreamReader.open(`${server.url}/v1/topics/outage/events?after=0`, {
    accept: 'text/event-stream',
  })
  const acknowledged = new Map<string, number>()
  const unavailable = { count: 0, withRetryAfter: 0, repeats: 0 }
  let stop = false
  const publisher = async (worker: number) => {
    for (let i = 0; !stop; i++) {
      const key = `w${worker}-${i}`
      // Until it is stored: a 503 is retried with the same key, whatever happened to the first try.
      for (;;) {
        const response = await publish(
          server.url,
          'outage',
          { type: 'load', data: key },
          { 'idempotency-key': key },
        )
        // 201 stored now; 200 a repeat: an earlier try that answered 503 had committed after all.
        if (response.status === 201 || response.status === 200) {
          if (response.status === 200) unavailable.repeats++
          acknowledged.set(key, ((await response.json()) as { seq: number }).seq)
          break
        }
        const problem = (await problemOf(response, 503)) as { code?: string }
        assert.equal(problem.code, 'unavailable', JSON.stringify(problem))
        unavailable.count++
        if (Number(response.headers.get('retry-after')) > 0) unavailable.withRetryAfter++
        await sleep(100)
      }
    }
  }
  // A publisher that fails ends the test at once, not after the waits below time out.
  let failure: unknown
  const publishers = Array.from({ length: 4 }, (_, worker) =>
    publisher(worker).catch((error: unknown) => {
      failure ??= error
      stop = true
    }),
  )
  const readyz = async () => (await fetch(`${server.url}/readyz`)).status
  const progress = (what: string, done: () => boolean | Promise<boolean>) =>
    until(
      what,
      async () => {
        if (failure !== undefined) throw failure
        return (await done()) ? true : undefined
      },
      20_000,
    )
  try {
    await progress('publishes before the outage', () => acknowledged.size >= 50)

    // 1. The server stops (a crash: immediate).
    await database.stop('immediate')
    const before = acknowledged.size
    await progress('a 503 from a publish', () => unavailable.count > 0)
    await progress('/readyz 503', async () => (await readyz()) === 503)
    await sleep(1500)
    assert.ok(
      acknowledged.size - before <= 4,
      'no 201 while the database is down (one per publisher in flight at most)',
    )
    assert.equal(
      await Promise.race([stream.ended().then(() => 'ended'), sleep(10).then(() => 'open')]),
      'open',
    )

    // It comes back: Herald goes on by itself, without a restart.
    await database.start()
    await progress('/readyz 200 again', async () => (await readyz()) === 200)
    const after = acknowledged.size
    await progress('publishes after the restart', () => acknowledged.size >= after + 50)

    // 2. Herald's connections are killed mid-load.
    const admin = new pg.Client({ connectionString: database.url })
    await admin.connect()
    const killed = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'herald'",
    )
    await admin.end()
    assert.ok((killed.rowCount ?? 0) > 0, 'Herald had connections to kill')
    const afterKill = acknowledged.size
    await progress('publishes after the kill', () => acknowledged.size >= afterKill + 50)
  } finally {
    stop = true
    await Promise.all(publishers)
  }
  try {
    if (failure !== undefined) throw failure
    assert.ok(
      unavailable.count > 0 && unavailable.withRetryAfter === unavailable.count,
      'every 503 had Retry-After',
    )
    const events = await readAll(server.url, 'outage')
    assert.deepEqual(
      events.map((event) => event.seq),
      Array.from({ length: events.length }, (_, i) => i + 1),
      'gapless from 1',
    )
    const keys = events.map((event) => (event as unknown as { data: string }).data)
    assert.equal(new Set(keys).size, keys.length, 'no logical event stored twice')
    for (const [key, seq] of acknowledged)
      assert.equal(keys[seq - 1], key, `acknowledged ${key} is stored at ${seq}`)
    // The stream that stayed open through both outages received every event once, in order.
    await stream.until(() => stream.sseEvents().length >= events.length, 20_000)
    assert.deepEqual(
      stream.sseEvents().map((event) => event.data.seq),
      events.map((event) => event.seq),
    )
    // An outage is a state of the server (503, /readyz), logged as warnings: no error-level entry.
    const errors = server
      .output()
      .split('\n')
      .filter((line) => line.includes('"level":50'))
    assert.deepEqual(errors, [], 'no error logged')
    process.stderr.write(
      `outage test: ${acknowledged.size} events, ${unavailable.count} answers 503 retried with their key, ${unavailable.repeats} of them had committed (200 on retry)\n`,
    )
  } finally {
    stream.close()
    server.child.kill('SIGTERM')
    await server.exited
    await database.remove()
    await rm(dataDir, { recursive: true, force: true })
  }
})
