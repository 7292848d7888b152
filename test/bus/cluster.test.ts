import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { BusTransport, TransportHandlers } from '../../src/bus/cluster.ts'
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
