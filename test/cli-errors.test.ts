import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, test } from 'node:test'
import { BIN, type CliRun, runCli, startTestServer, type TestServer } from './helpers.ts'

/** Runs `herald …` to its exit, killed after `timeoutMs` (a command that should fail but hangs or retries). */
function herald(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<CliRun & { timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
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

/** One line on stderr, exit 1, no stack trace. */
function assertOneLineFailure(run: CliRun & { timedOut: boolean }, pattern: RegExp): void {
  assert.equal(run.timedOut, false, `it exits:\n${run.stderr}`)
  assert.equal(run.code, 1, run.stderr)
  assert.match(run.stderr, pattern)
  assert.equal(run.stderr.trimEnd().split('\n').length, 1, `one line:\n${run.stderr}`)
  assert.doesNotMatch(run.stderr, /\n\s+at |TypeError/, 'no stack trace')
}

describe('CLI: an API key that HTTP cannot carry', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: 'good-key' })
  })
  after(() => server.close())

  const commands = [
    ['publish', 'keys', '--type', 'k', '--data', '1'],
    ['tail', 'keys'],
    ['tail', 'keys', '--after', '0', '--via', 'ws'],
    ['tail', 'keys', '--after', '0', '--via', 'sse'],
    ['hooks', 'list'],
  ]
  for (const args of commands) {
    test(`herald ${args.join(' ')}: a clear error, from HERALD_API_KEY or --api-key`, async () => {
      const fromEnv = await herald([...args, '--url', server.url], { HERALD_API_KEY: 'kéy€' })
      assertOneLineFailure(
        fromEnv,
        /^herald \w+: the API key \(HERALD_API_KEY\) cannot be sent: the key has a non-ASCII character \(at position 2\)/,
      )
      assert.ok(!fromEnv.stderr.includes('kéy€'), 'the key is not printed')
      const fromFlag = await herald([...args, '--url', server.url, '--api-key', 'two words'])
      assertOneLineFailure(fromFlag, /the API key \(--api-key\) cannot be sent: the key has a space/)
    })
  }

  test('the same key, sent right, works', async () => {
    const run = await runCli(['publish', 'keys', '--type', 'k', '--url', server.url], {
      env: { HERALD_API_KEY: 'good-key' },
    })
    assert.equal(run.code, 0, run.stderr)
  })
})
