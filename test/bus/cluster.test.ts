import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { type BusTransport, ClusterBus, type TransportHandlers } from '../../src/bus/cluster.ts'
import { sleep, until } from '../helpers.ts'
import { listen, openCluster } from './contract.ts'

/** A transport the test drives: it says up or down when told, and carries nothing. */
class ScriptedTransport implements BusTransport {
  handlers: TransportHandlers | undefined
  async start(handlers: TransportHandlers): Promise<void> {
    this.handlers = handlers
  }
  send(): void {}
  async close(): Promise<void> {}
}

const scripted = () => {
  const transports: ScriptedTransport[] = []
  return {
    transports,
    backend: {
      kind: 'redis' as const,
      transport: () => transports[transports.push(new ScriptedTransport()) - 1]!,
      sendRaw: () => Promise.reject(new Error('unused')),
    },
  }
}

test('a transport that reports down again and again (ioredis does at each failed retry) does not postpone the down-poll', async () => {
  const { transports, backend } = scripted()
  const cluster = await openCluster(backend, 1, { positionCheckMs: 600_000, downPollMs: 200 })
  const repeat = setInterval(() => transports[0]!.handlers!.down('connection refused'), 100)
  try {
    const heard = listen(cluster.nodes[0]!, 'orders')
    transports[0]!.handlers!.down('connection closed')
    const head = await cluster.append('orders')
    await heard.waitFor(1, 'the head, through the down-poll', 1_000)
    assert.deepEqual(heard.heads, [head])
  } finally {
    clearInterval(repeat)
    await cluster.close()
  }
})

for (const releaseAfterMs of [0, 50]) {
  test(`a reconnect while a position check is reading re-reads after it: that read may predate the subscription (the read ends ${releaseAfterMs === 0 ? 'at once' : `${releaseAfterMs} ms after`})`, async () => {
    const transport = new ScriptedTransport()
    const store = new Map<string, number>()
    let blocked: (() => void) | undefined
    const reads: string[] = []
    const bus = new ClusterBus({
      kind: 'redis',
      transport,
      nodeId: 'node-0',
      logger: pino({ level: 'silent' }),
      timing: { positionCheckMs: 600_000, downPollMs: 50 },
      async heads(topics) {
        const snapshot = new Map([...store].filter(([topic]) => topics.includes(topic)))
        reads.push('read')
        if (reads.length === 1) await new Promise<void>((resolve) => (blocked = resolve))
        return snapshot
      },
    })
    try {
      await bus.start()
      const heard = listen(bus, 'orders')
      transport.handlers!.down('connection closed')
      await until('the down-poll to start reading', () => blocked)
      transport.handlers!.up()
      store.set('orders', 1) // committed by another node, its message sent before this node subscribed again
      // At once: before the reconnect's own check is due; or after it, when it found this read in flight.
      if (releaseAfterMs > 0) await sleep(releaseAfterMs)
      blocked!()
      await heard.waitFor(1, 'the head, read again after the reconnect', 1_000)
    } finally {
      await bus.close()
    }
  })
}
