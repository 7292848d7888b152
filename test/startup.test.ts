import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { hostname } from 'node:os'
import { describe, test } from 'node:test'
import { BIN, type CliRun, publish, readAll, spawnServer, tempDir } from './helpers.ts'

/**
 * `herald serve …` (bin/herald.js) run to its exit, killed after `timeoutMs` if it is still running
 * then (a start that should fail but hangs shows as `timedOut`).
 */
function serveUntilExit(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<CliRun & { timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, timedOut })
    })
  })
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
