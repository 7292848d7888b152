// The publish path below HTTP, in process: body bytes → parse → prepare → append plan → SQLite group
// commit (sync=full) → the batch's answer, for 100-event batches, 11 requests per group commit (what
// 16 connections give over HTTP). With BENCH_BEFORE=<another checkout>, that checkout's path runs in
// the same process, alternating with this one round by round, and the result is the median of the
// rounds' ratios of CPU time per event: on a shared machine, far steadier than requests/s over HTTP.
//   BENCH_BEFORE=/path/to/checkout BENCH_ROUNDS=7 node bench/ingest-path.ts
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { EventInput, NewEvent } from '../src/core/event.ts'
import type { AppendResult } from '../src/store/store.ts'

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7)
const GROUPS = Number(process.env['BENCH_GROUPS'] ?? 150)
const PER_GROUP = 11
const EVENTS = 100
const BEFORE = process.env['BENCH_BEFORE']

interface Path {
  name: string
  /** One request: its body's bytes in, its answer out. */
  publish: (body: Buffer) => Promise<string>
  close: () => Promise<void>
  dataDir: string
}

async function load(name: string, root: string): Promise<Path> {
  const event = await import(join(root, 'src/core/event.ts'))
  const { SqliteStore } = await import(join(root, 'src/store/sqlite/sqlite-store.ts'))
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-ingest-path-'))
  const store = new SqliteStore({ dataDir, synchronous: 'full', firstDeliveryDelayMs: 0 })
  // A checkout from before prepareEvents prepares event by event.
  const prepare: (topic: string, inputs: EventInput[], now: Date) => NewEvent[] =
    event.prepareEvents ??
    ((topic, inputs, now) => inputs.map((input) => event.prepareEvent(topic, input, now)))
  return {
    name,
    dataDir,
    close: () => store.close(),
    publish: async (body) => {
      const { inputs } = event.parseEventBody(event.parseJsonBytes(body), false)
      const now = new Date()
      const result: AppendResult = await store.append('bench', prepare('bench', inputs, now), {
        now: now.getTime(),
      })
      return `[${result.events.map((stored) => stored.json).join(',')}]`
    },
  }
}

const body = Buffer.from(
  JSON.stringify(
    Array.from({ length: EVENTS }, (_, i) => ({
      type: 'order.created',
      data: { order: i, total: 99.5, currency: 'EUR' },
    })),
  ),
)

/** CPU and wall µs per event over `groups` group commits of PER_GROUP requests. */
async function run(path: Path, groups: number): Promise<{ cpu: number; wall: number }> {
  const cpu = process.cpuUsage()
  const started = performance.now()
  for (let g = 0; g < groups; g++) {
    await Promise.all(Array.from({ length: PER_GROUP }, () => path.publish(body)))
  }
  const used = process.cpuUsage(cpu)
  const events = groups * PER_GROUP * EVENTS
  return { cpu: (used.user + used.system) / events, wall: (1000 * (performance.now() - started)) / events }
}

const paths = [await load('this checkout', join(import.meta.dirname, '..'))]
if (BEFORE !== undefined) paths.push(await load(BEFORE, BEFORE))
for (const path of paths) await run(path, 30)
const ratios: number[] = []
for (let round = 1; round <= ROUNDS; round++) {
  const results = []
  for (const path of paths) results.push(await run(path, GROUPS))
  const parts = results.map(
    (result, i) => `${paths[i]!.name} ${result.cpu.toFixed(2)} CPU µs/event (wall ${result.wall.toFixed(2)})`,
  )
  if (results.length === 2) ratios.push(results[0]!.cpu / results[1]!.cpu)
  process.stdout.write(
    `round ${round}: ${parts.join(', ')}${results.length === 2 ? `, ratio ${ratios.at(-1)!.toFixed(3)}` : ''}\n`,
  )
}
if (ratios.length > 0) {
  const sorted = [...ratios].sort((a, b) => a - b)
  process.stdout.write(
    `CPU per event, this checkout / ${BEFORE}: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(3)} (rounds ${sorted[0]!.toFixed(3)}–${sorted.at(-1)!.toFixed(3)})\n`,
  )
}
for (const path of paths) {
  await path.close()
  rmSync(path.dataDir, { recursive: true, force: true })
}
