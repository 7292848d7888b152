import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { type CliRun, runCli, runCliUntilExit, startTestServer, type TestServer } from './helpers.ts'

/** Runs `herald …` to its exit, killed after `timeoutMs` (a command that should fail but hangs or retries). */
const herald = runCliUntilExit

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

  test('a wrong key: tail stops with the 401 over every protocol (retrying will not help)', async () => {
    for (const via of ['sse', 'ndjson', 'ws', 'poll']) {
      const run = await herald(['tail', 'keys', '--after', '0', '--via', via, '--url', server.url], {
        HERALD_API_KEY: 'wrong-key',
      })
      assertOneLineFailure(run, /^herald tail: .*401/)
    }
  })

  test('the same key, sent right, works', async () => {
    const run = await runCli(['publish', 'keys', '--type', 'k', '--url', server.url], {
      env: { HERALD_API_KEY: 'good-key' },
    })
    assert.equal(run.code, 0, run.stderr)
  })
})

/** A loopback port nothing listens on: bound, then let go. */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

describe('CLI: a server that is down, unknown or silent', () => {
  // Every client command, and tail over each protocol, with and without a start position.
  const commands = [
    ['publish', 'down', '--type', 't', '--data', '1'],
    ['tail', 'down'],
    ['tail', 'down', '--after', '0', '--via', 'sse'],
    ['tail', 'down', '--after', '0', '--via', 'ndjson'],
    ['tail', 'down', '--after', '0', '--via', 'ws'],
    ['tail', 'down', '--after', '0', '--via', 'poll'],
    ['hooks', 'list'],
    ['hooks', 'get', 'hook_1'],
    ['hooks', 'create', '--target-url', 'http://127.0.0.1:9/x', '--topic', 'down'],
    ['hooks', 'update', 'hook_1', '--pause'],
    ['hooks', 'delete', 'hook_1'],
    ['hooks', 'deliveries', 'hook_1'],
    ['hooks', 'retry', 'hook_1', '1'],
    ['hooks', 'replay', 'hook_1', '--after', '0'],
  ]

  test('connection refused: one line naming the URL tried, exit 1, for every client command', async () => {
    const port = await closedPort()
    for (const args of commands) {
      const run = await herald([...args, '--url', `http://127.0.0.1:${port}`])
      assertOneLineFailure(
        run,
        new RegExp(
          `^herald ${args[0]}: cannot reach Herald at (http|ws)://127\\.0\\.0\\.1:${port}/v1/\\S+: connection refused`,
        ),
      )
    }
  })

  test('a host name DNS does not know: one line saying so', async () => {
    // A label of 64 characters is longer than DNS allows (63): the resolver refuses the name itself,
    // without sending a query anywhere (checked with strace), so the test needs no network.
    const host = `${'x'.repeat(64)}.invalid`
    for (const args of [commands[0]!, commands[4]!, commands[6]!]) {
      const run = await herald([...args, '--url', `http://${host}:8080`])
      assertOneLineFailure(
        run,
        new RegExp(`cannot reach Herald at (http|ws)://${host}:8080/v1/\\S+: DNS lookup of ${host} failed`),
      )
    }
  })

  test('a server that accepts but never answers: a timeout after --timeout', async () => {
    const sockets = new Set<Socket>()
    const silent: Server = createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    }).listen(0, '127.0.0.1')
    await once(silent, 'listening')
    const { port } = silent.address() as { port: number }
    try {
      for (const args of [commands[0]!, commands[1]!, commands[4]!, commands[6]!]) {
        const run = await herald([...args, '--url', `http://127.0.0.1:${port}`, '--timeout', '1s'])
        assertOneLineFailure(
          run,
          new RegExp(
            `cannot reach Herald at (http|ws)://127\\.0\\.0\\.1:${port}/v1/\\S+: no answer within 1 s \\(timeout\\)`,
          ),
        )
      }
    } finally {
      for (const socket of sockets) socket.destroy()
      silent.close()
    }
  })

  test('--url that is not an http(s) URL, and a --timeout out of range, are refused before any request', async () => {
    const url = await herald(['publish', 'down', '--type', 't', '--url', 'localhost:8080'])
    assertOneLineFailure(url, /^herald publish: --url is not an http\(s\) URL: "localhost:8080"/)
    const fromEnv = await herald(['hooks', 'list'], { HERALD_URL: 'ftp://example.com' })
    assertOneLineFailure(fromEnv, /^herald hooks: HERALD_URL is not an http\(s\) URL/)
    const timeout = await herald(['tail', 'down', '--timeout', 'soon'])
    assertOneLineFailure(timeout, /^herald tail: Invalid --timeout: "soon" is not a duration/)
  })
})

describe('CLI: unknown commands and options suggest the nearest valid one', () => {
  const cases: Array<[string[], RegExp]> = [
    [
      ['pubish', 'orders'],
      /^herald: unknown command "pubish"\. Did you mean "publish"\?\nRun "herald --help"/,
    ],
    [['tial', 'orders'], /^herald: unknown command "tial"\. Did you mean "tail"\?/],
    [['hooks', 'lst'], /^herald hooks: unknown command "lst"\. Did you mean "list"\?/],
    [['hooks', 'delte', 'hook_1'], /^herald hooks: unknown command "delte"\. Did you mean "delete"\?/],
    [
      ['hooks', 'create', '--target-url', 'http://x', '--topik', 'orders'],
      /^herald hooks: unknown option --topik\. Did you mean --topic\? Run "herald hooks create --help"/,
    ],
    [
      ['hooks', 'update', 'hook_1', '--any'],
      /^herald hooks: unknown option --any\. Did you mean --any-topic or --any-event\?/,
    ],
    [['hooks', 'create', '--target', 'http://x'], /unknown option --target\. Did you mean --target-url\?/],
    [['publish', 'orders', '--tpye', 'x'], /^herald publish: unknown option --tpye\. Did you mean --type\?/],
    [['publish', 'orders', '--type=x', '--dat={}'], /unknown option --dat\. Did you mean --data\?/],
    [
      ['tail', 'orders', '--vai', 'ws'],
      /^herald tail: unknown option --vai\. Did you mean --via\? Run "herald tail --help"/,
    ],
    [['serve', '--prot', '9000'], /^herald serve: unknown option --prot\. Did you mean --port\?/],
    [['listen', '--secert', 'whsec_x'], /^herald listen: unknown option --secert\. Did you mean --secret\?/],
  ]
  for (const [args, expected] of cases) {
    test(`herald ${args.join(' ')}`, async () => {
      const run = await herald(args)
      assert.equal(run.code, 1)
      assert.match(run.stderr, expected)
      assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace')
    })
  }

  test('nothing near: no suggestion, and the help or where to find it', async () => {
    const command = await herald(['launch'])
    assert.equal(command.code, 1)
    assert.doesNotMatch(command.stderr, /Did you mean/)
    assert.match(command.stderr, /Usage: herald <command>/)
    const option = await herald(['publish', 'orders', '--zzzzzz'])
    assert.equal(option.code, 1)
    assert.equal(
      option.stderr,
      'herald publish: unknown option --zzzzzz. Run "herald publish --help" for its options.\n',
    )
  })
})
