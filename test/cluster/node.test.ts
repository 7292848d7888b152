import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { test } from 'node:test'
import pino from 'pino'
import { NodeService } from '../../src/cluster/node.ts'
import { ConfigError, loadConfig } from '../../src/config/config.ts'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import type { NodeStore } from '../../src/store/store.ts'
import { sleep, startTestServer } from '../helpers.ts'

/** A NodeStore that records its calls; `failing` makes heartbeats fail. */
function recordingStore(failing = false) {
  const calls: string[] = []
  const store: NodeStore = {
    async joinCluster(nodeId) {
      calls.push(`join ${nodeId}`)
    },
    async heartbeat(nodeId, staleMs) {
      calls.push(`heartbeat ${nodeId} ${staleMs}`)
      if (failing) throw new Error('the store cannot write')
      return 0
    },
    async leaveCluster(nodeId) {
      calls.push(`leave ${nodeId}`)
    },
    async nodes() {
      return []
    },
  }
  return { store, calls }
}

function capturingLogger() {
  const lines: Array<{ level: number; msg: string }> = []
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(JSON.parse(line)) })
  return { logger, lines }
}

test('the node joins, heartbeats with the stale threshold, and leaves when stopped', async () => {
  const { store, calls } = recordingStore()
  const { logger } = capturingLogger()
  const node = new NodeService({ store, nodeId: 'n1', logger, intervalMs: 20 })
  await node.start()
  assert.deepEqual(calls, ['join n1'])
  await sleep(90)
  await node.stop()
  const beats = calls.filter((call) => call === 'heartbeat n1 10000').length
  assert.ok(beats >= 2, `${beats} heartbeats`)
  assert.deepEqual(calls.at(-1), 'leave n1')
  const count = calls.length
  await sleep(50)
  assert.equal(calls.length, count, 'no heartbeat after stop')
})

test('a failing heartbeat is logged as a warning and the node goes on', async () => {
  const { store, calls } = recordingStore(true)
  const { logger, lines } = capturingLogger()
  const node = new NodeService({ store, nodeId: 'n1', logger, intervalMs: 20 })
  await node.start()
  await sleep(70)
  await node.stop()
  assert.ok(calls.filter((call) => call.startsWith('heartbeat')).length >= 2, 'it kept beating')
  assert.ok(lines.length >= 2)
  assert.ok(lines.every((line) => line.level === 40 && line.msg === 'the node heartbeat failed'))
})

test('a node that never joined does not leave', async () => {
  const { store, calls } = recordingStore()
  store.joinCluster = async () => {
    throw new Error('no store')
  }
  const node = new NodeService({ store, nodeId: 'n1', logger: capturingLogger().logger })
  await assert.rejects(node.start(), /no store/)
  await node.stop()
  assert.deepEqual(calls, [])
})

test('--node-id, HERALD_NODE_ID, or a new node-<ulid> at each start', () => {
  assert.equal(loadConfig({ 'node-id': 'edge-1' }, { HERALD_NODE_ID: 'env-1' }).nodeId, 'edge-1')
  assert.equal(loadConfig({}, { HERALD_NODE_ID: 'env-1' }).nodeId, 'env-1')
  const generated = [loadConfig({}, {}).nodeId, loadConfig({}, {}).nodeId]
  assert.match(generated[0]!, /^node-[0-9A-Z]{26}$/)
  assert.notEqual(generated[0], generated[1])
  assert.throws(() => loadConfig({ 'node-id': 'a b' }, {}), ConfigError)
  assert.throws(() => loadConfig({ 'node-id': 'x'.repeat(129) }, {}), ConfigError)
})

test('a server is a node of its store while it runs, and leaves it when it closes', async () => {
  const server = await startTestServer({ nodeId: 'herald-test-node' })
  const dataDir = server.dataDir
  // A second connection to the file, to look (the server holds the data directory's lock, not the file).
  const look = new SqliteStore({ dataDir })
  try {
    assert.deepEqual(
      (await look.nodes()).map((node) => node.id),
      ['herald-test-node'],
    )
    await server.herald.close()
    assert.deepEqual(await look.nodes(), [])
  } finally {
    await look.close()
    await server.close()
    await rm(dataDir, { recursive: true, force: true })
  }
})
