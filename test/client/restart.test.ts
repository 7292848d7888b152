import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { test } from 'node:test'
import { Herald, type State } from '../../src/client/index.ts'
import { readAll, sleep, spawnServer, tempDir, until } from '../helpers.ts'

for (const transport of ['ws', 'sse', 'poll'] as const) {
  test(`kill -9 and restart while publishing (${transport}): every subscription gets every acknowledged event once, in order`, async () => {
    const dir = await tempDir()
    const args = ['--data', dir, '--log-level', 'info', '--heartbeat', '1s']
    let server = await spawnServer(args)
    const port = new URL(server.url).port
    const topics = ['r/a', 'r/b', 'r/c']
    const publisher = new Herald({ url: server.url })
    const client = new Herald({ url: server.url, transport, heartbeat: 1000, maxBackoff: 1000 })
    const states: State[] = []
    client.on('state', (state) => states.push(state))
    const got = new Map<string, number[]>(topics.map((topic) => [topic, []]))
    for (const topic of topics)
      client.subscribe(topic, (event) => got.get(topic)!.push(event.seq), { after: 0 })
    const acknowledged = new Map<string, Set<number>>(topics.map((topic) => [topic, new Set()]))
    let stop = false
    const publishing = (async () => {
      for (let i = 0; !stop; i++) {
        const topic = topics[i % topics.length]!
        try {
          const stored = await publisher.publish(topic, { type: 'tick', data: i })
          acknowledged.get(topic)!.add(stored.seq)
        } catch {
          // The server was down for longer than the publish's retries: no acknowledgement, no promise.
        }
        await sleep(5)
      }
    })()
    try {
      const count = () => [...acknowledged.values()].reduce((sum, set) => sum + set.size, 0)
      await until('100 acknowledged', () => (count() > 100 ? true : undefined), 60_000)
      server.child.kill('SIGKILL')
      await server.exited
      await sleep(300)
      server = await spawnServer([...args, '--port', port])
      const before = count()
      await until('publishing resumed', () => (count() > before + 100 ? true : undefined), 60_000)
      stop = true
      await publishing
      for (const topic of topics) {
        // Everything stored (acknowledged or not: a publish whose answer was lost may be stored).
        const events = await readAll(server.url, topic)
        const stored = events.map((event) => event.seq)
        // A publish retried across the restart (one Idempotency-Key per call) is stored once.
        const ticks = events.map((event) => (event as { data?: unknown }).data)
        assert.equal(new Set(ticks).size, ticks.length, `${topic}: no publish stored twice`)
        await until(
          `${topic} caught up`,
          () => (got.get(topic)!.length >= stored.length ? true : undefined),
          60_000,
        )
        assert.deepEqual(got.get(topic), stored, `${topic}: every stored event once, in order`)
        for (const seq of acknowledged.get(topic)!)
          assert.ok(stored.includes(seq), `${topic} ${seq} acknowledged`)
      }
      assert.ok(states.includes('disconnected') && states.at(-1) === 'connected', states.join(' '))
    } finally {
      stop = true
      client.close()
      publisher.close()
      server.child.kill('SIGKILL')
      await server.exited
      await rm(dir, { recursive: true, force: true })
    }
  })
}
