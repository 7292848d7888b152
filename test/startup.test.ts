import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts'
import { BIN, problemOf, publish, readAll, runCliUntilExit, spawnServer, tempDir, until } from './helpers.ts'

const run = promisify(execFile)

/** `herald serve …` run to its exit, killed after `timeoutMs` (a start that should fail but hangs). */
function serveUntilExit(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000) {
  return runCliUntilExit(['serve', '--port', '0', ...args], env, timeoutMs)
}

describe('herald serve: the data directory', () => {
  test('a directory that cannot be created (/proc/…) fails at once, naming it', async () => {
    // mkdir under /proc answers ENOENT although /proc exists: Node's recursive mkdir looped on it.
    const run = await serveUntilExit(['--data', '/proc/herald-test/data'])
    assert.equal(run.timedOut, false, `herald serve did not exit:\n${run.stdout}${run.stderr}`)
    assert.equal(run.code, 1)
    assert.match(
      run.stderr,
      /Cannot use the data directory \/proc\/herald-test\/data \(cannot create \/proc\/herald-test:/,
    )
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace')
  })

  test('a data path under a file fails, naming it', async () => {
    const run = await serveUntilExit(['--data', `${BIN}/data`])
    assert.equal(run.code, 1)
    assert.match(run.stderr, /Cannot use the data directory .*bin\/herald\.js\/data/)
  })
})

describe('herald serve: one server per data directory', () => {
  test('a second server on the same --data fails naming the first; after kill -9 of the first, a new one starts', async () => {
    const dataDir = await tempDir()
    const first = await spawnServer(['--data', dataDir, '--log-level', 'info'])
    try {
      assert.equal((await publish(first.url, 'locked', { type: 'before' })).status, 201)
      const second = await serveUntilExit(['--data', dataDir])
      assert.equal(second.code, 1)
      assert.match(second.stderr, /is in use by another Herald/)
      assert.ok(second.stderr.includes(dataDir), second.stderr)
      assert.ok(second.stderr.includes(`pid ${first.child.pid} on ${hostname()}`), second.stderr)
      assert.ok(second.stderr.includes(`listening on ${first.url}`), second.stderr)
      assert.match(second.stderr, /started \d{4}-\d\d-\d\dT/)
      assert.doesNotMatch(second.stderr, /\n\s+at /, 'no stack trace')
      assert.doesNotMatch(second.stdout, /herald is listening/)
      // The first one is untouched.
      assert.equal((await publish(first.url, 'locked', { type: 'during' })).status, 201)

      first.child.kill('SIGKILL')
      await first.exited
      const third = await spawnServer(['--data', dataDir, '--log-level', 'info'])
      try {
        const events = await readAll(third.url, 'locked')
        assert.deepEqual(
          events.map((event) => event.type),
          ['before', 'during'],
        )
        // And it holds the lock in turn.
        const fourth = await serveUntilExit(['--data', dataDir])
        assert.equal(fourth.code, 1)
        assert.ok(fourth.stderr.includes(`pid ${third.child.pid}`), fourth.stderr)
      } finally {
        third.child.kill('SIGTERM')
        await third.exited
      }
    } finally {
      first.child.kill('SIGKILL')
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

/**
 * Makes files immutable (`chattr +i`) or not: the tests run as root, which file modes do not stop,
 * but the immutable attribute does. Resolves false where chattr is missing or not permitted.
 */
async function immutable(on: boolean, ...paths: string[]): Promise<boolean> {
  try {
    await run('chattr', [on ? '+i' : '-i', ...paths])
    return true
  } catch {
    return false
  }
}

const NO_CHATTR =
  'SKIPPED: chattr +i is not available or not permitted here (not root, or a filesystem without it), so there is no read-only store to try'

describe('herald serve: a store that cannot write', () => {
  test('an immutable herald.db fails the start, naming the file', async (t) => {
    const dataDir = await tempDir()
    const database = join(dataDir, 'herald.db')
    await new SqliteStore({ dataDir }).close()
    if (!(await immutable(true, database))) {
      t.skip(NO_CHATTR)
      process.stderr.write(`${NO_CHATTR}\n`)
      await rm(dataDir, { recursive: true, force: true })
      return
    }
    try {
      const run = await serveUntilExit(['--data', dataDir, '--log-level', 'info'])
      assert.equal(run.timedOut, false, 'it does not keep running')
      assert.equal(run.code, 1)
      assert.ok(
        run.stderr.includes(`Cannot write the store ${database}: attempt to write a readonly database`),
        run.stderr,
      )
      assert.doesNotMatch(run.stdout, /herald is listening/)
    } finally {
      await immutable(false, database)
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  test('an immutable data directory fails the start, naming it', async (t) => {
    const dataDir = await tempDir()
    if (!(await immutable(true, dataDir))) {
      t.skip(NO_CHATTR)
      process.stderr.write(`${NO_CHATTR}\n`)
      await rm(dataDir, { recursive: true, force: true })
      return
    }
    try {
      const run = await serveUntilExit(['--data', dataDir])
      assert.equal(run.code, 1)
      assert.ok(
        run.stderr.includes(`Cannot lock the data directory ${dataDir} (${join(dataDir, 'herald.lock')}:`),
        run.stderr,
      )
    } finally {
      await immutable(false, dataDir)
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  test('a store that stops writing while running: publish 503, /readyz 503 until it writes again', async (t) => {
    const dataDir = await tempDir()
    const server = await spawnServer(['--data', dataDir, '--log-level', 'info'])
    const files = [join(dataDir, 'herald.db'), join(dataDir, 'herald.db-wal')]
    try {
      assert.equal((await publish(server.url, 'ro', { type: 'one' })).status, 201)
      assert.equal((await fetch(`${server.url}/readyz`)).status, 200)
      if (!(await immutable(true, ...files))) {
        t.skip(NO_CHATTR)
        process.stderr.write(`${NO_CHATTR}\n`)
        return
      }
      const refused = await problemOf(await publish(server.url, 'ro', { type: 'lost' }), 503)
      assert.match(refused.detail, /The store cannot write/)
      const ready = await problemOf(await fetch(`${server.url}/readyz`), 503)
      assert.match(ready.detail, /The store cannot write/)
      await immutable(false, ...files)
      await until('/readyz to be 200 again', async () =>
        (await fetch(`${server.url}/readyz`)).status === 200 ? true : undefined,
      )
      assert.equal((await publish(server.url, 'ro', { type: 'two' })).status, 201)
      assert.deepEqual(
        (await readAll(server.url, 'ro')).map((event) => [event.seq, event.type]),
        [
          [1, 'one'],
          [2, 'two'],
        ],
      )
    } finally {
      await immutable(false, ...files)
      server.child.kill('SIGTERM')
      await server.exited
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('herald serve: HERALD_API_KEY', () => {
  for (const [key, what] of [
    ['kéy€', 'a non-ASCII character'],
    ['two words', 'a space'],
    ['tab\tkey', 'a control character'],
  ] as const) {
    test(`a key with ${what} is refused at start, without printing it`, async () => {
      const dataDir = await tempDir()
      try {
        const run = await serveUntilExit(['--data', dataDir], { HERALD_API_KEY: key })
        assert.equal(run.code, 1)
        assert.match(run.stderr, new RegExp(`^herald serve: Invalid HERALD_API_KEY: the key has ${what}`))
        assert.ok(!run.stderr.includes(key), 'the key is not printed')
        assert.doesNotMatch(run.stdout, /herald is listening/)
      } finally {
        await rm(dataDir, { recursive: true, force: true })
      }
    })
  }
})
