// Catch-up read (issue 11): events/s of an SSE replay from seq 0 of a topic holding 200,000 events,
// with Herald on PostgreSQL, side by side in one run with a bare `pg` paging scan of the same rows
// (the database's limit for this read) and the same SSE replay with Herald on SQLite.
//   npm run bench:catchup
//
// Environment, with defaults:
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test   Herald's schema is
//                      bench_catchup_<random>, dropped at the end
//   BENCH_EVENTS=200000   events in the topic
//   BENCH_ROUNDS=3        rounds; the targets are read in turn in each round, rows are the median
//   BENCH_TARGETS=pg,scan,sqlite   which targets, in this order:
//                        pg      Herald on PostgreSQL: GET /v1/topics/bench/events?after=0 with
//                                Accept: text/event-stream, read until the event of seq BENCH_EVENTS
//                        scan    a bare pg loop on one connection: SELECT seq, id, body FROM events
//                                WHERE topic_id = $1 AND seq > $2 ORDER BY seq LIMIT 1000 (a named,
//                                prepared statement), page after page, over Herald's own rows
//                        sqlite  the same SSE replay from Herald on SQLite (sync=full)
//
// Each Herald is started once and filled through its API before the rounds (batches of 1,000 events
// of the ingest benchmark's shape, 4 requests in flight; the fill's rate is reported too), then every
// target is read once unmeasured (caches warm, connections open), then the rounds. The SSE client is
// this process (node:http, the frames counted in the bytes as they come, each id checked to follow
// the one before: a gap or a duplicate fails the run); so is the scan. CPU per event is reported for
// the server (Herald's process) and for the PostgreSQL backends serving it (or the scan).
import os from 'node:os'
import pg from 'pg'
import { cpuSeconds, round, table } from './lib.ts'
import { backendPids, DATABASE_URL, describeServer, dropSchema, load, schemaName } from './postgres.ts'
import { type FilledHerald, readReplay, startFilled } from './replay-common.ts'

const env = process.env
const EVENTS = Number(env['BENCH_EVENTS'] ?? 200_000)
const ROUNDS = Number(env['BENCH_ROUNDS'] ?? 3)
const TARGET_NAMES = (env['BENCH_TARGETS'] ?? 'pg,scan,sqlite').split(',').map((name) => name.trim())
const TOPIC = 'bench'
const FILL_BATCH = 1000
const FILL_IN_FLIGHT = 4
const SCAN_PAGE = 1000

interface Reading {
  seconds: number
  events: number
  bytes: number
  serverCpuUs: number
  databaseCpuUs: number
  load: string
}

const fill = { topic: TOPIC, events: EVENTS, batch: FILL_BATCH, inFlight: FILL_IN_FLIGHT }

/** The bare paging scan of Herald's own rows in its PostgreSQL schema. */
async function scan(client: pg.Client, topicId: number): Promise<{ seconds: number; bytes: number }> {
  const started = performance.now()
  let after = 0
  let bytes = 0
  let count = 0
  for (;;) {
    const page = await client.query<{ seq: string; id: string; body: string }>({
      name: 'bench-scan',
      text: 'SELECT seq, id, body FROM events WHERE topic_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      values: [topicId, after, SCAN_PAGE],
    })
    for (const row of page.rows) bytes += row.body.length
    count += page.rows.length
    if (page.rows.length < SCAN_PAGE) break
    after = Number(page.rows.at(-1)!.seq)
  }
  if (count !== EVENTS) throw new Error(`scan: ${count} rows, not ${EVENTS}`)
  return { seconds: (performance.now() - started) / 1000, bytes }
}

interface Target {
  name: string
  read(): Promise<Reading>
}

async function meter(
  serverPid: number | undefined,
  databasePids: number[],
  work: () => Promise<{ seconds: number; bytes: number }>,
): Promise<Reading> {
  const cpu = (pids: number[]) => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
  const server = cpuSeconds(serverPid)
  const database = cpu(databasePids)
  const { seconds, bytes } = await work()
  return {
    seconds,
    events: EVENTS / seconds,
    bytes,
    serverCpuUs: serverPid === undefined ? Number.NaN : ((cpuSeconds(serverPid) - server) * 1e6) / EVENTS,
    databaseCpuUs: databasePids.length === 0 ? Number.NaN : ((cpu(databasePids) - database) * 1e6) / EVENTS,
    load: load(),
  }
}

export async function runCatchup(): Promise<string> {
  const server = await describeServer()
  const loadAtStart = os.loadavg().map((each) => round(each, 2))
  const stops: Array<() => Promise<void>> = []
  const targets: Target[] = []
  const notes: string[] = []
  try {
    const wantsPg = TARGET_NAMES.includes('pg') || TARGET_NAMES.includes('scan')
    let pgHerald: FilledHerald | undefined
    let schema = ''
    if (wantsPg) {
      schema = schemaName('catchup')
      pgHerald = await startFilled({
        ...fill,
        env: { HERALD_DATABASE_URL: DATABASE_URL, HERALD_DATABASE_SCHEMA: schema },
        cleanup: () => dropSchema(schema),
      })
      stops.push(pgHerald.stop)
      notes.push(
        `Fill of Herald on PostgreSQL: ${round(EVENTS)} events in ${round(pgHerald.fillSeconds, 2)} s ` +
          `(${round(EVENTS / pgHerald.fillSeconds)} events/s in batches of ${FILL_BATCH}, ${FILL_IN_FLIGHT} in flight).`,
      )
    }
    let sqliteHerald: FilledHerald | undefined
    if (TARGET_NAMES.includes('sqlite')) {
      sqliteHerald = await startFilled(fill)
      stops.push(sqliteHerald.stop)
      notes.push(
        `Fill of Herald on SQLite: ${round(EVENTS)} events in ${round(sqliteHerald.fillSeconds, 2)} s ` +
          `(${round(EVENTS / sqliteHerald.fillSeconds)} events/s).`,
      )
    }
    for (const name of TARGET_NAMES) {
      if (name === 'pg') {
        const herald = pgHerald!
        await readReplay(herald.url, TOPIC, EVENTS, 'sse') // warm
        const pids = await backendPids(herald.pid)
        targets.push({
          name: 'Herald on PostgreSQL, SSE replay from seq 0',
          read: () => meter(herald.pid, pids, () => readReplay(herald.url, TOPIC, EVENTS, 'sse')),
        })
      } else if (name === 'scan') {
        const client = new pg.Client({ connectionString: DATABASE_URL, options: `-c search_path=${schema}` })
        await client.connect()
        stops.push(() => client.end())
        const topicId = Number(
          (await client.query<{ id: string }>('SELECT id FROM topics WHERE name = $1', [TOPIC])).rows[0]!.id,
        )
        await scan(client, topicId) // warm
        const pids = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows.map(
          (row) => row.pid,
        )
        targets.push({
          name: `bare pg paging scan (LIMIT ${SCAN_PAGE}), same rows`,
          read: () => meter(undefined, pids, () => scan(client, topicId)),
        })
      } else if (name === 'sqlite') {
        const herald = sqliteHerald!
        await readReplay(herald.url, TOPIC, EVENTS, 'sse')
        targets.push({
          name: 'Herald on SQLite, SSE replay from seq 0',
          read: () => meter(herald.pid, [], () => readReplay(herald.url, TOPIC, EVENTS, 'sse')),
        })
      } else {
        throw new Error(`BENCH_TARGETS: no target "${name}" (pg, scan, sqlite)`)
      }
    }
    const runs = new Map<Target, Reading[]>(targets.map((target) => [target, []]))
    for (let r = 1; r <= ROUNDS; r++) {
      for (const target of targets) {
        const reading = await target.read()
        runs.get(target)!.push(reading)
        process.stderr.write(
          `round ${r}: ${target.name}: ${round(reading.events)} events/s (${round(reading.seconds, 2)} s), ` +
            `server ${round(reading.serverCpuUs, 2)} µs/event, database ${round(reading.databaseCpuUs, 2)} µs/event, load ${reading.load}\n`,
        )
      }
    }
    const loadAtEnd = os.loadavg().map((each) => round(each, 2))
    const median = (target: Target) =>
      [...runs.get(target)!].sort((a, b) => a.events - b.events)[Math.floor(ROUNDS / 2)]!
    const scanTarget = targets.find((target) => target.name.startsWith('bare pg'))
    const scanRate = scanTarget && median(scanTarget).events
    const rows = targets.map((target) => {
      const result = median(target)
      const all = runs.get(target)!
      return [
        target.name,
        round(EVENTS),
        round(result.seconds, 2),
        round(result.events),
        scanRate ? `${round((100 * result.events) / scanRate, 1)}%` : '–',
        round(result.bytes / result.seconds / 1e6, 1),
        Number.isNaN(result.serverCpuUs) ? '–' : round(result.serverCpuUs, 2),
        Number.isNaN(result.databaseCpuUs) ? '–' : round(result.databaseCpuUs, 2),
        all.map((each) => round(each.events)).join(' / '),
        all.map((each) => each.load).join(' / '),
      ]
    })
    return [
      `Catch-up read: ${round(EVENTS)} stored events, read from seq 0; median of ${ROUNDS} rounds; ` +
        `${os.cpus().length} CPUs, Node ${process.version}; ${server}`,
      `Load average (1, 5, 15 min) at the start: ${loadAtStart.join(', ')}; at the end: ${loadAtEnd.join(', ')}.`,
      '',
      table(
        [
          'target',
          'events',
          'seconds',
          'events/s',
          '% of the bare scan',
          'MB/s read',
          'server CPU µs/event',
          'database backends CPU µs/event',
          'events/s by round',
          '1-min load after each round',
        ],
        rows,
      ),
      '',
      ...notes,
    ].join('\n')
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {})
  }
}

if (import.meta.main) {
  process.stdout.write(`${await runCatchup()}\n`)
}
