// Ingest on PostgreSQL (issue 11): durable publish throughput over HTTP with Herald on PostgreSQL,
// side by side in one run with Herald on SQLite, the bare Fastify route and a naive pg service.
//   npm run bench:ingest:postgres
//
// Environment, with defaults:
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test   the PostgreSQL to use; every
//                      target that stores gets a fresh schema bench_<target>_<random>, dropped after
//   BENCH_SECONDS=10   per measurement, after a warm-up of 3 s
//   BENCH_ROUNDS=3     rounds; the targets are measured in turn in each round, rows are the median
//   BENCH_TARGETS=bare,naive,naive-seq,pg,sqlite,bare-batch,naive-batch,naive-seq-batch,pg-batch,
//                      sqlite-batch   (and
//                      before-pg, before-pg-batch with BENCH_BEFORE) which targets, in this order
//   BENCH_BEFORE=<a checkout of another commit, with its node_modules>: that Herald on PostgreSQL is
//                      measured too (targets before-pg, before-pg-batch, added by default), in the
//                      same rounds, so a change's effect is seen side by side
//   BENCH_NAIVE_POOL=16   the naive service's pg Pool size
//
// Targets (each its own process, started fresh for each measurement, on loopback):
//   bare     the bare Fastify route (bench/peers/bare-fastify.ts): parses the body, answers 201,
//            stores nothing; the HTTP cost nobody goes below
//   naive    a naive pg service (bench/peers/naive-pg.ts): a Fastify route, one transaction per
//            request on a Pool of 16 (BEGIN; advance the topic's counter row … RETURNING; INSERT …
//            RETURNING; COMMIT, each awaited in turn); synchronous_commit on, as Herald
//   naive-seq  the same service in its simplest form: one autocommitted INSERT … RETURNING per
//            request, seq from a sequence (no per-topic order, gaps on rollback: weaker than Herald)
//   pg       Herald with HERALD_DATABASE_URL (group commit, src/store/postgres/writer.ts)
//   sqlite   Herald on SQLite at its defaults (sync=full)
// Single events from 64 connections; batches of 100 events from 16 (the `-batch` targets). Besides
// requests/s: the server's CPU per request (its process, all threads) and, for the PostgreSQL
// targets, the CPU per request of the database backends serving it (found by the server's TCP
// connections after the warm-up; the WAL writer, shared by everyone on the server, is not counted).
import { rm } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import {
  cpuSeconds,
  median as medianOf,
  post,
  ROOT,
  round,
  startBareFastify,
  startHerald,
  startProcess,
  type Target,
  table,
} from './lib.ts'
import { backendPids, DATABASE_URL, describeServer, dropSchema, load, schemaName } from './postgres.ts'

const env = process.env
const SECONDS = Number(env['BENCH_SECONDS'] ?? 10)
const ROUNDS = Number(env['BENCH_ROUNDS'] ?? 3)
const WARMUP = Math.min(3, SECONDS)
const BEFORE = env['BENCH_BEFORE']
const NAIVE_POOL = Number(env['BENCH_NAIVE_POOL'] ?? 16)
const TOPIC = 'bench'
const PATH = `/v1/topics/${TOPIC}/events`

const single = JSON.stringify({ type: 'order.created', data: { order: 12345, total: 99.5, currency: 'EUR' } })
const batch = JSON.stringify(
  Array.from({ length: 100 }, (_, i) => ({
    type: 'order.created',
    data: { order: i, total: 99.5, currency: 'EUR' },
  })),
)

interface Running {
  target: Target
  /** Drops what the target stored (its schema, its directory). */
  cleanup(): Promise<void>
}

interface Scenario {
  key: string
  name: string
  start: () => Promise<Running>
  body: string
  connections: number
  eventsPerRequest: number
  /** Whether the database backends serving it are metered. */
  postgres: boolean
}

async function heraldOnPostgres(root?: string): Promise<Running> {
  const schema = schemaName('herald')
  try {
    const target = await startHerald([], root, {
      HERALD_DATABASE_URL: DATABASE_URL,
      HERALD_DATABASE_SCHEMA: schema,
    })
    return {
      target,
      cleanup: async () => {
        await rm(target.dataDir, { recursive: true, force: true })
        await dropSchema(schema)
      },
    }
  } catch (error) {
    await dropSchema(schema)
    throw error
  }
}

async function heraldOnSqlite(): Promise<Running> {
  const target = await startHerald()
  return { target, cleanup: () => rm(target.dataDir, { recursive: true, force: true }) }
}

async function naive(seq: 'counter' | 'sequence'): Promise<Running> {
  const schema = schemaName('naive')
  try {
    const target = await startProcess(
      'naive pg',
      [join(ROOT, 'bench/peers/naive-pg.ts')],
      (line) => {
        const port = (JSON.parse(line) as { port?: number }).port
        return port ? `http://127.0.0.1:${port}` : undefined
      },
      {
        ...env,
        BENCH_DATABASE_URL: DATABASE_URL,
        NAIVE_SCHEMA: schema,
        NAIVE_POOL: String(NAIVE_POOL),
        NAIVE_SEQ: seq,
      },
    )
    return { target, cleanup: () => dropSchema(schema) }
  } catch (error) {
    await dropSchema(schema)
    throw error
  }
}

async function bare(): Promise<Running> {
  return { target: await startBareFastify(), cleanup: async () => {} }
}

const singles = { body: single, connections: 64, eventsPerRequest: 1 }
const batches = { body: batch, connections: 16, eventsPerRequest: 100 }
const ALL: Scenario[] = [
  { key: 'bare', name: 'bare Fastify route (baseline)', start: bare, postgres: false, ...singles },
  {
    key: 'naive',
    name: `naive pg service (Pool of ${NAIVE_POOL}, a transaction per request, seq from a counter row)`,
    start: () => naive('counter'),
    postgres: true,
    ...singles,
  },
  {
    key: 'naive-seq',
    name: 'naive pg service, one INSERT … RETURNING per request, seq from a sequence',
    start: () => naive('sequence'),
    postgres: true,
    ...singles,
  },
  {
    key: 'pg',
    name: 'Herald on PostgreSQL, single events',
    start: () => heraldOnPostgres(),
    postgres: true,
    ...singles,
  },
  ...(BEFORE === undefined
    ? []
    : [
        {
          key: 'before-pg',
          name: `Herald on PostgreSQL at ${BEFORE}, single events`,
          start: () => heraldOnPostgres(BEFORE),
          postgres: true,
          ...singles,
        },
      ]),
  {
    key: 'sqlite',
    name: 'Herald on SQLite (sync=full), single events',
    start: heraldOnSqlite,
    postgres: false,
    ...singles,
  },
  { key: 'bare-batch', name: 'bare Fastify route, 100-event body', start: bare, postgres: false, ...batches },
  {
    key: 'naive-batch',
    name: 'naive pg service (counter row), 100-event body',
    start: () => naive('counter'),
    postgres: true,
    ...batches,
  },
  {
    key: 'naive-seq-batch',
    name: 'naive pg service (sequence), 100-event body',
    start: () => naive('sequence'),
    postgres: true,
    ...batches,
  },
  {
    key: 'pg-batch',
    name: 'Herald on PostgreSQL, batches of 100',
    start: () => heraldOnPostgres(),
    postgres: true,
    ...batches,
  },
  ...(BEFORE === undefined
    ? []
    : [
        {
          key: 'before-pg-batch',
          name: `Herald on PostgreSQL at ${BEFORE}, batches of 100`,
          start: () => heraldOnPostgres(BEFORE),
          postgres: true,
          ...batches,
        },
      ]),
  {
    key: 'sqlite-batch',
    name: 'Herald on SQLite (sync=full), batches of 100',
    start: heraldOnSqlite,
    postgres: false,
    ...batches,
  },
]

const wanted = env['BENCH_TARGETS']?.split(',').map((key) => key.trim())
const SCENARIOS = wanted ? ALL.filter((scenario) => wanted.includes(scenario.key)) : ALL
for (const key of wanted ?? []) {
  if (!ALL.some((scenario) => scenario.key === key)) {
    throw new Error(`BENCH_TARGETS: no target "${key}" (${ALL.map((scenario) => scenario.key).join(', ')})`)
  }
}

interface Result {
  requestsPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  serverCpuUsPerRequest: number
  databaseCpuUsPerRequest: number
  backends: number
  load: string
}

async function measure(scenario: Scenario): Promise<Result> {
  const { target, cleanup } = await scenario.start()
  try {
    let pids: number[] = []
    let databaseBefore = 0
    const databaseCpu = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
    const result = await post(`${target.url}${PATH}`, scenario.body, {
      connections: scenario.connections,
      seconds: SECONDS,
      warmupSeconds: WARMUP,
      serverPid: target.child.pid,
      beforeMeasure: async () => {
        if (!scenario.postgres) return
        pids = await backendPids(target.child.pid)
        databaseBefore = databaseCpu()
      },
    })
    const databaseSeconds = databaseCpu() - databaseBefore
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`${scenario.name}: ${result.non2xx} non-2xx answers and ${result.errors} errors`)
    }
    return {
      ...result,
      databaseCpuUsPerRequest: scenario.postgres ? (databaseSeconds * 1e6) / result.requests : Number.NaN,
      backends: pids.length,
      load: load(),
    }
  } finally {
    await target.stop()
    await cleanup()
  }
}

export async function runIngestPostgres(): Promise<string> {
  const server = await describeServer()
  const loadAtStart = os.loadavg().map((each) => round(each, 2))
  const runs = new Map<Scenario, Result[]>(SCENARIOS.map((scenario) => [scenario, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const scenario of SCENARIOS) {
      const result = await measure(scenario)
      runs.get(scenario)!.push(result)
      process.stderr.write(
        `round ${r + 1}: ${scenario.name}: ${round(result.requestsPerSecond)} requests/s, ` +
          `server ${round(result.serverCpuUsPerRequest, 1)} µs/request, database ${round(result.databaseCpuUsPerRequest, 1)} µs/request ` +
          `(${result.backends} backends), load ${result.load}\n`,
      )
    }
  }
  const loadAtEnd = os.loadavg().map((each) => round(each, 2))
  const median = (scenario: Scenario) => {
    const sorted = [...runs.get(scenario)!].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond)
    return sorted[Math.floor(sorted.length / 2)]!
  }
  const byKey = (key: string) => SCENARIOS.find((scenario) => scenario.key === key)
  const rps = (key: string) => {
    const scenario = byKey(key)
    return scenario ? median(scenario).requestsPerSecond : undefined
  }
  const rows = SCENARIOS.map((scenario) => {
    const result = median(scenario)
    const all = runs.get(scenario)!
    return [
      scenario.name,
      scenario.connections,
      scenario.eventsPerRequest,
      round(result.requestsPerSecond),
      round(result.requestsPerSecond * scenario.eventsPerRequest),
      result.latencyP50Ms,
      result.latencyP99Ms,
      round(medianOf(all.map((each) => each.serverCpuUsPerRequest)), 1),
      scenario.postgres ? round(medianOf(all.map((each) => each.databaseCpuUsPerRequest)), 1) : '–',
      all.map((each) => round(each.requestsPerSecond)).join(' / '),
      all.map((each) => each.load).join(' / '),
    ]
  })
  const lines = [
    `Ingest on PostgreSQL: median of ${ROUNDS} rounds, ${SECONDS} s each after ${WARMUP} s of warm-up; ` +
      `${os.cpus().length} CPUs, Node ${process.version}; ${server}`,
    `Load average (1, 5, 15 min) at the start: ${loadAtStart.join(', ')}; at the end: ${loadAtEnd.join(', ')}.`,
    '',
    table(
      [
        'target',
        'connections',
        'events/request',
        'requests/s',
        'events/s',
        'p50 ms',
        'p99 ms',
        'server CPU µs/request (median)',
        'database backends CPU µs/request (median)',
        'requests/s by round',
        '1-min load after each round',
      ],
      rows,
    ),
    '',
  ]
  const ratio = (a?: number, b?: number) => (a && b ? `${round(a / b, 2)}×` : '–')
  const percent = (a?: number, b?: number) => (a && b ? `${round((100 * a) / b, 1)}%` : '–')
  const [bareSingle, naiveSingle, naiveSeq, pgSingle, sqliteSingle] = [
    'bare',
    'naive',
    'naive-seq',
    'pg',
    'sqlite',
  ].map(rps)
  if (pgSingle !== undefined) {
    const met = naiveSingle && bareSingle && pgSingle >= 2 * naiveSingle && pgSingle >= 0.25 * bareSingle
    lines.push(
      `Herald on PostgreSQL, single events: ${ratio(pgSingle, naiveSingle)} the naive pg service (counter row), ` +
        `${ratio(pgSingle, naiveSeq)} its sequence form, ${percent(pgSingle, bareSingle)} of the bare route, ` +
        `${percent(pgSingle, sqliteSingle)} of Herald on SQLite ` +
        `(targets ≥ 2× the naive service and ≥ 25% of the bare route: ${naiveSingle && bareSingle ? (met ? 'met' : 'not met') : '–'}).`,
    )
  }
  const [bareBatch, naiveBatch, naiveSeqBatch, pgBatch, sqliteBatch] = [
    'bare-batch',
    'naive-batch',
    'naive-seq-batch',
    'pg-batch',
    'sqlite-batch',
  ].map(rps)
  if (pgBatch !== undefined) {
    lines.push(
      `Herald on PostgreSQL, batches of 100: ${round(pgBatch * 100)} events/s (target ≥ 100,000: ` +
        `${pgBatch * 100 >= 100_000 ? 'met' : 'not met'}); ${ratio(pgBatch, naiveBatch)} the naive pg service (counter row), ` +
        `${ratio(pgBatch, naiveSeqBatch)} its sequence form, ${percent(pgBatch, bareBatch)} of the bare route with the ` +
        `same body, ${percent(pgBatch, sqliteBatch)} of Herald on SQLite.`,
    )
  }
  if (BEFORE !== undefined) {
    const [before, beforeBatch] = ['before-pg', 'before-pg-batch'].map(rps)
    lines.push(
      `Herald on PostgreSQL at ${BEFORE}: single events ${ratio(before, naiveSingle)} the naive service, ` +
        `${percent(before, bareSingle)} of the bare route; batches ${round((beforeBatch ?? 0) * 100)} events/s. ` +
        `This checkout against it: single ${percent(pgSingle, before)}, batches ${percent(pgBatch, beforeBatch)}.`,
    )
  }
  return lines.join('\n')
}

if (import.meta.main) {
  process.stdout.write(`${await runIngestPostgres()}\n`)
}
