import assert from 'node:assert/strict'
import { test } from 'node:test'
import { backends } from './backends.ts'
import { publish, readAll, type StoredEventJson, sleep, spawnServer, until } from './helpers.ts'

for (const backend of await backends()) {
  test(`kill -9 while publishers run: every event that got a 201 survives, seq stays gapless (${backend.name})`, {
    skip: backend.skip,
  }, async () => {
    const data = await backend.open()
    const server = await spawnServer([...data.args, '--log-level', 'info'], data.env)
    const acknowledged = new Map<number, string>()
    let stop = false
    let refused = 0
    const publisher = async (worker: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const body =
            i % 4 === 0 ? [{ type: `w${worker}` }, { type: `w${worker}` }] : { type: `w${worker}`, data: i }
          const response = await publish(server.url, 'crash', body)
          if (response.status !== 201) throw new Error(`unexpected ${response.status}`)
          const stored = (await response.json()) as StoredEventJson | StoredEventJson[]
          for (const event of Array.isArray(stored) ? stored : [stored]) acknowledged.set(event.seq, event.id)
        } catch (error) {
          if (!stop) throw error
          refused++ // the server died under this request: no 201, so no promise was made
        }
      }
    }
    const publishers = Array.from({ length: 8 }, (_, worker) => publisher(worker))
    // Killed once publishes are well under way (a count, not a fixed time: a loaded machine is slower),
    // and while they go on.
    await until(
      'publishers to get 100 events acknowledged',
      () => (acknowledged.size > 100 ? true : undefined),
      60_000,
    )
    await sleep(200)
    server.child.kill('SIGKILL')
    stop = true
    await server.exited
    await Promise.all(publishers)
    assert.ok(acknowledged.size > 100, `publishers made progress (${acknowledged.size} acknowledged)`)

    const restarted = await spawnServer([...data.args, '--log-level', 'info'], data.env)
    try {
      const events = await readAll(restarted.url, 'crash')
      const bySeq = new Map(events.map((event) => [event.seq, event.id]))
      for (const [seq, id] of acknowledged)
        assert.equal(bySeq.get(seq), id, `acknowledged event ${seq} is stored`)
      assert.deepEqual(
        events.map((event) => event.seq),
        Array.from({ length: events.length }, (_, i) => i + 1),
        'gapless from 1',
      )
      // And the topic goes on where it stopped.
      const next = (await (
        await publish(restarted.url, 'crash', { type: 'after' })
      ).json()) as StoredEventJson
      assert.equal(next.seq, events.length + 1)
      process.stderr.write(
        `crash test (${backend.name}): ${acknowledged.size} acknowledged, ${events.length} stored, ${refused} cut off\n`,
      )
    } finally {
      restarted.child.kill('SIGTERM')
      await restarted.exited
      await data.cleanup()
    }
  })
}
