import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { BIN, type CliRun } from './helpers.ts'

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
