import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { startHerald } from '../src/app.ts'
import type { LocalBus } from '../src/bus/local.ts'
import { loadConfig } from '../src/config/config.ts'
import { BIN, publish, readAll, runCli, startTestServer, type TestServer, tempDir } from './helpers.ts'

const run = promisify(execFile)

function tailLines(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args])
  const lines: Array<{ seq: number; type: string }> = []
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line)))
  return { lines, stop: () => child.kill('SIGTERM') }
}

async function waitFor(check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function herald(args: string[], input?: string) {
  return runCli(args, input === undefined ? {} : { input })
}

describe('CLI', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer()
  })
  after(() => server.close())

  test('herald --help and herald serve --help list the commands and every option', async () => {
    const help = await herald(['--help'])
    assert.equal(help.code, 0)
    for (const command of ['serve', 'publish', 'tail'])
      assert.match(help.stdout, new RegExp(`\\b${command}\\b`))
    const serve = await herald(['serve', '--help'])
    assert.equal(serve.code, 0)
    for (const name of [
      '--port',
      'HERALD_PORT',
      '--host',
      '--data',
      'HERALD_API_KEY',
      'HERALD_PUBLIC_URL',
      'HERALD_RETRY_SCHEDULE',
      'HERALD_HEARTBEAT',
      'HERALD_ALLOW_PRIVATE_TARGETS',
      'HERALD_DATABASE_URL',
      'HERALD_BUS_URL',
    ]) {
      assert.ok(serve.stdout.includes(name), `serve --help mentions ${name}`)
    }
  })

  test('unknown commands and bad options fail with exit 1 and a message', async () => {
    const unknown = await herald(['launch'])
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /unknown command "launch"/)
    const badPort = await herald(['serve', '--port', 'eighty'])
    assert.equal(badPort.code, 1)
    assert.match(badPort.stderr, /Invalid --port/)
    const noType = await herald(['publish', 'orders', '--url', server.url])
    assert.equal(noType.code, 1)
    assert.match(noType.stderr, /--type is required/)
  })

  test('publish with --data, and with data from stdin', async () => {
    const first = await herald([
      'publish',
      'cli',
      '--type',
      'order.created',
      '--data',
      '{"n":1}',
      '--url',
      server.url,
    ])
    assert.equal(first.code, 0, first.stderr)
    const event = JSON.parse(first.stdout)
    assert.deepEqual([event.topic, event.seq, event.type, event.data], ['cli', 1, 'order.created', { n: 1 }])
    const piped = await herald(['publish', 'cli', '--type', 'piped', '--url', server.url], '{"from":"stdin"}')
    assert.equal(piped.code, 0, piped.stderr)
    assert.deepEqual(JSON.parse(piped.stdout).data, { from: 'stdin' })
    const rejected = await herald(['publish', 'bad topic', '--type', 't', '--url', server.url])
    assert.equal(rejected.code, 1)
    assert.match(rejected.stderr, /400 Invalid topic name/)
    assert.equal((await readAll(server.url, 'cli')).length, 2)
  })

  test('tail prints each new event as a JSON line, from the head (SSE by default)', async () => {
    const child = spawn(process.execPath, [BIN, 'tail', 'tailed', '--url', server.url])
    const lines = createInterface({ input: child.stdout })
    const received: Array<{ seq: number; type: string }> = []
    const gotTwo = new Promise<void>((resolve) =>
      lines.on('line', (line) => {
        received.push(JSON.parse(line))
        if (received.length === 2) resolve()
      }),
    )
    try {
      // Publish only once tail has read the head and holds its first long poll.
      const bus = server.herald.log.bus as LocalBus
      for (let i = 0; i < 200 && bus.size === 0; i++) await new Promise((resolve) => setTimeout(resolve, 25))
      assert.equal(bus.size, 1, 'tail holds a long poll')
      await publish(server.url, 'tailed', { type: 'one' })
      await publish(server.url, 'tailed', [{ type: 'two' }])
      await gotTwo
      assert.deepEqual(
        received.map((e) => [e.seq, e.type]),
        [
          [1, 'one'],
          [2, 'two'],
        ],
      )
    } finally {
      child.kill('SIGTERM')
    }
  })

  test('tail --after 0 starts from the oldest retained event', async () => {
    await publish(server.url, 'replayed', [{ type: 'a' }, { type: 'b' }])
    const child = spawn(process.execPath, [BIN, 'tail', 'replayed', '--after', '0', '--url', server.url])
    const lines = createInterface({ input: child.stdout })
    const types: string[] = []
    await new Promise<void>((resolve) =>
      lines.on('line', (line) => {
        types.push(JSON.parse(line).type)
        if (types.length === 2) resolve()
      }),
    )
    child.kill('SIGTERM')
    assert.deepEqual(types, ['a', 'b'])
  })

  for (const via of ['sse', 'ndjson', 'ws', 'poll']) {
    test(`tail --via ${via}: the backlog after --after, then live events, in order`, async () => {
      const topic = `via-${via}`
      await publish(server.url, topic, [{ type: 'a' }, { type: 'b' }])
      const { lines, stop } = tailLines(['tail', topic, '--via', via, '--after', '0', '--url', server.url])
      try {
        await waitFor(() => lines.length === 2)
        await publish(server.url, topic, { type: 'c' })
        await waitFor(() => lines.length === 3)
        assert.deepEqual(
          lines.map((line) => [line.seq, line.type]),
          [
            [1, 'a'],
            [2, 'b'],
            [3, 'c'],
          ],
        )
      } finally {
        stop()
      }
    })
  }

  for (const via of ['sse', 'ndjson', 'ws', 'poll']) {
    test(`tail --via ${via} --filter: only the events the filter matches`, async () => {
      const topic = `filtered-${via}`
      await publish(server.url, topic, [{ type: 'a' }, { type: 'b' }, { type: 'a' }, { type: 'b' }])
      const filter = '{"exact":{"type":"a"}}'
      const { lines, stop } = tailLines([
        'tail',
        topic,
        '--via',
        via,
        '--after',
        '0',
        '--filter',
        filter,
        '--url',
        server.url,
      ])
      try {
        await waitFor(() => lines.length === 2)
        await publish(server.url, topic, [{ type: 'b' }, { type: 'a' }])
        await waitFor(() => lines.length === 3)
        await new Promise((resolve) => setTimeout(resolve, 200))
        assert.deepEqual(
          lines.map((line) => [line.seq, line.type]),
          [
            [1, 'a'],
            [3, 'a'],
            [6, 'a'],
          ],
        )
      } finally {
        stop()
      }
    })
  }

  test('tail --filter that is no filter is a usage error, before any request', async () => {
    const answer = await herald(['tail', 'x', '--filter', '{"sql":"true"}', '--url', server.url])
    assert.equal(answer.code, 1)
    assert.match(answer.stderr, /--filter: .*CESQL/)
  })

  test('tail resumes after the server restarts: nothing missed, nothing printed twice', async () => {
    const dataDir = await tempDir()
    const config = (port: string) =>
      loadConfig({ port, data: dataDir, 'log-level': 'silent', 'shutdown-timeout': '1s' }, {})
    const first = await startHerald(config('0'))
    const port = new URL(first.url).port
    await publish(first.url, 'resumed', [{ type: 'a' }])
    const { lines, stop } = tailLines(['tail', 'resumed', '--via', 'ws', '--after', '0', '--url', first.url])
    let second: Awaited<ReturnType<typeof startHerald>> | undefined
    try {
      await waitFor(() => lines.length === 1)
      await first.close()
      second = await startHerald(config(port))
      await publish(second.url, 'resumed', [{ type: 'b' }, { type: 'c' }])
      await waitFor(() => lines.length === 3)
      await new Promise((resolve) => setTimeout(resolve, 200))
      assert.deepEqual(
        lines.map((line) => line.seq),
        [1, 2, 3],
      )
    } finally {
      stop()
      await second?.close()
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  test('bin/herald.js hands over to the project Node when started by an older one', async (t) => {
    const candidates = ['/usr/bin/node', '/usr/local/bin/node']
    let older: string | undefined
    for (const path of candidates) {
      try {
        const { stdout } = await run(path, ['--version'])
        if (Number(stdout.trim().slice(1).split('.')[0]) < 24) older = path
      } catch {
        // not there
      }
    }
    if (!older) {
      t.skip('no Node older than 24 on this machine (looked in /usr/bin and /usr/local/bin)')
      return
    }
    const { stdout } = await run(older, [BIN, '--help'])
    assert.match(stdout, /Usage: herald <command>/)
  })
})
