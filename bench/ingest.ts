// Ingest: durable publish throughput over HTTP, side by side with a bare Fastify route in the same run.
//   npm run bench:ingest            (BENCH_SECONDS=10 by default)
import os from 'node:os'
import { post, round, startBareFastify, startHerald, table } from './lib.ts'

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10)
const WARMUP = Math.min(3, SECONDS)
const CONNECTIONS = 64
const BATCH_CONNECTIONS = 16

const single = JSON.stringify({ type: 'order.created', data: { order: 12345, total: 99.5, currency: 'EUR' } })
const batch = JSON.stringify(
  Array.from({ length: 100 }, (_, i) => ({
    type: 'order.created',
    data: { order: i, total: 99.5, currency: 'EUR' },
  })),
)

export async function runIngest(): Promise<string> {
  const rows: Array<Array<string | number>> = []
  const measure = async (
    name: string,
    start: () => Promise<{ url: string; stop(): Promise<void> }>,
    path: string,
    body: string,
    connections: number,
    eventsPerRequest: number,
  ) => {
    const target = await start()
    try {
      const result = await post(`${target.url}${path}`, body, {
        connections,
        seconds: SECONDS,
        warmupSeconds: WARMUP,
      })
      if (result.non2xx > 0 || result.errors > 0) {
        throw new Error(`${name}: ${result.non2xx} non-2xx answers and ${result.errors} errors`)
      }
      rows.push([
        name,
        connections,
        eventsPerRequest,
        round(result.requestsPerSecond),
        round(result.requestsPerSecond * eventsPerRequest),
        result.latencyP50Ms,
        result.latencyP99Ms,
      ])
      return result.requestsPerSecond
    } finally {
      await target.stop()
    }
  }
  const path = '/v1/topics/bench/events'
  const bareSingle = await measure(
    'bare Fastify route (baseline)',
    startBareFastify,
    path,
    single,
    CONNECTIONS,
    1,
  )
  const heraldSingle = await measure(
    'Herald, single events (sync=full)',
    () => startHerald(),
    path,
    single,
    CONNECTIONS,
    1,
  )
  const heraldNormal = await measure(
    'Herald, single events (sync=normal)',
    () => startHerald(['--sqlite-sync', 'normal']),
    path,
    single,
    CONNECTIONS,
    1,
  )
  const bareBatch = await measure(
    'bare Fastify route, 100-event body',
    startBareFastify,
    path,
    batch,
    BATCH_CONNECTIONS,
    100,
  )
  const heraldBatch = await measure(
    'Herald, batches of 100 (sync=full)',
    () => startHerald(),
    path,
    batch,
    BATCH_CONNECTIONS,
    100,
  )
  const report = [
    `Ingest (${SECONDS} s per run after ${WARMUP} s warm-up; ${os.cpus().length} CPUs, Node ${process.version})`,
    '',
    table(['target', 'connections', 'events/request', 'requests/s', 'events/s', 'p50 ms', 'p99 ms'], rows),
    '',
    `Herald single-event durable publish (sync=full) = ${round((100 * heraldSingle) / bareSingle, 1)}% of the bare route's requests/s (target ≥ 50%).`,
    `With sync=normal: ${round((100 * heraldNormal) / bareSingle, 1)}%. Batches of 100: ${round((100 * heraldBatch) / bareBatch, 1)}% of the bare route's requests/s with the same body.`,
  ].join('\n')
  return report
}

if (import.meta.main) {
  process.stdout.write(`${await runIngest()}\n`)
}
