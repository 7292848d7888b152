import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { BIN, publish, type ServerProcess, sleep, spawnServer, tempDir, until } from './helpers.ts'
import { StreamReader, WsClient } from './streams/clients.ts'

const run = promisify(execFile)

/** The machine's own Node, when it is older than 24: bin/herald.js then hands over to the project's. */
async function olderNode(): Promise<string | undefined> {
  for (const path of ['/usr/bin/node', '/usr/local/bin/node']) {
    try {
      const { stdout } = await run(path, ['--version'])
      if (Number(stdout.trim().slice(1).split('.')[0]) < 24) return path
    } catch {
      // not there
    }
  }
  return undefined
}

interface Group extends ServerProcess {
  /** Sends a signal to the whole process group, as a terminal's Ctrl-C does. */
  signalGroup(signal: NodeJS.Signals): void
}

/** `node bin/herald.js serve` as the leader of a new process group, as a shell runs a job. */
async function serveInGroup(node: string, dataDir: string): Promise<Group> {
  const server = await spawnServer(
    ['--data', dataDir, '--log-level', 'info', '--shutdown-timeout', '60s'],
    {},
    { node, entry: BIN, detached: true },
  )
  return {
    ...server,
    signalGroup: (signal) => {
      try {
        process.kill(-server.child.pid!, signal)
      } catch {
        // the group is gone: every process in it has exited
      }
    },
  }
}

describe('Ctrl-C on herald serve started by an older Node (bin/herald.js hands over)', () => {
  test('one Ctrl-C drains and exits 0, although both processes get it and the wrapper forwards it', async (t) => {
    const node = await olderNode()
    if (!node) {
      t.skip('no Node older than 24 on this machine (looked in /usr/bin and /usr/local/bin)')
      return
    }
    const dataDir = await tempDir()
    const server = await serveInGroup(node, dataDir)
    try {
      // A long poll held open: a drain answers it; an exit without draining would cut it off.
      const held = fetch(`${server.url}/v1/topics/ctrl-c/events?after=0&wait=60`)
      await until('the long poll to be held', async () => {
        const metrics = await (await fetch(`${server.url}/metrics`)).text()
        return /^herald_long_polls_open 1$/m.test(metrics) ? true : undefined
      })
      server.signalGroup('SIGINT')
      const answer = await held
      assert.equal(answer.status, 200)
      assert.deepEqual(await answer.json(), { events: [], next: 0 })
      const { code } = await server.exited
      assert.equal(code, 0, server.output())
      assert.match(server.output(), /"msg":"draining"/)
      assert.match(server.output(), /herald stopped/)
      assert.doesNotMatch(server.output(), /without draining/)
    } finally {
      server.signalGroup('SIGKILL')
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  test('a deliberate second Ctrl-C, more than a second later, exits at once without draining', async (t) => {
    const node = await olderNode()
    if (!node) {
      t.skip('no Node older than 24 on this machine (looked in /usr/bin and /usr/local/bin)')
      return
    }
    const dataDir = await tempDir()
    const server = await serveInGroup(node, dataDir)
    const { hostname, port } = new URL(server.url)
    // A publish whose body never finishes: in flight, it keeps the drain waiting (--shutdown-timeout 60s).
    const upload = connect(Number(port), hostname)
    upload.on('error', () => {})
    try {
      await new Promise((resolve) => upload.once('connect', resolve))
      upload.write(
        'POST /v1/topics/slow/events HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n' +
          'content-length: 100\r\n\r\n{"type":',
      )
      await sleep(200)
      server.signalGroup('SIGINT')
      await until('the drain to start', () => (/"msg":"draining"/.test(server.output()) ? true : undefined))
      await sleep(1500)
      assert.equal(server.child.exitCode, null, 'still draining: the upload is in flight')
      server.signalGroup('SIGINT')
      const { code } = await server.exited
      assert.equal(code, 1)
      assert.match(server.output(), /second signal: exiting without draining/)
      assert.doesNotMatch(server.output(), /herald stopped/)
    } finally {
      upload.destroy()
      server.signalGroup('SIGKILL')
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('SIGTERM (an orchestrator stopping the node)', () => {
  test('every open stream ends with its reconnect hint, held polls are answered, and the process exits 0', async () => {
    const dataDir = await tempDir()
    const server = await spawnServer(['--data', dataDir, '--log-level', 'info'])
    try {
      assert.equal((await publish(server.url, 'bye', { type: 'a' })).status, 201)
      const events = `${server.url}/v1/topics/bye/events?after=0`
      const sse = await StreamReader.open(events, { accept: 'text/event-stream' })
      const ndjson = await StreamReader.open(events, { accept: 'application/x-ndjson' })
      const ws = await WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws`)
      ws.send({ op: 'subscribe', topic: 'bye', after: 0, ref: 1 })
      await sse.until(() => sse.sseEvents().length === 1)
      await ndjson.until(() => ndjson.ndjsonEvents().length === 1)
      await ws.until(() => ws.events('bye').length === 1)
      const held = fetch(`${server.url}/v1/topics/bye/events?after=1&wait=60`)
      await until('the long poll to be held', async () => {
        const metrics = await (await fetch(`${server.url}/metrics`)).text()
        return /^herald_long_polls_open 1$/m.test(metrics) ? true : undefined
      })
      const closed = once(ws.ws, 'close') as Promise<[number, Buffer]>
      server.child.kill('SIGTERM')
      // SSE: a short retry (EventSource comes back in half a second, with Last-Event-ID).
      await sse.ended()
      assert.match(sse.text, /retry: 500\n\n$/)
      // WebSocket: 1012 (service restart), telling the client to resubscribe from its position.
      const [code, reason] = await closed
      assert.equal(code, 1012)
      assert.match(reason.toString(), /reconnect and resubscribe with after/)
      // NDJSON has no in-band hint: the stream ends after a whole line, the reader resumes from the
      // seq of the last one.
      await ndjson.ended()
      assert.ok(ndjson.text.endsWith('\n'))
      assert.deepEqual(
        ndjson.ndjsonEvents().map((event) => event.seq),
        [1],
      )
      const answer = await held
      assert.deepEqual(await answer.json(), { events: [], next: 1 })
      const { code: exitCode } = await server.exited
      assert.equal(exitCode, 0, server.output())
      assert.match(server.output(), /"signal":"SIGTERM","msg":"draining"/)
      assert.match(server.output(), /this node is no longer the leader: it stops/)
      assert.match(server.output(), /herald stopped/)
    } finally {
      server.child.kill('SIGKILL')
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
