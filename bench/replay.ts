// Catch-up replay (issue 17): events/s of reading a topic of 200,000 stored events from seq 0 over SSE,
// NDJSON and short polls, each against the raw scan of the same rows in Herald's own SQLite file, in
// one run.
//   npm run bench:replay
//
// Environment, with defaults:
//   BENCH_EVENTS=200000   events in the topic
//   BENCH_ROUNDS=5        rounds; the targets are read in turn in each round
//   BENCH_TARGETS=scan,scan-lean,sse,ndjson,polls   which targets, in this order:
//                scan    node:sqlite in this process, Herald's file opened read-only: the read statement
//                        Herald had when issue 17 was measured (SELECT seq, id, body FROM events WHERE
//                        topic_id = (SELECT id FROM topics WHERE name = ?) AND seq > ? ORDER BY seq
//                        LIMIT 1000), page after page: the yardstick every % is of
//                scan-lean  the same without id, as Herald reads since it stopped fetching it (886da18):
//                        its "% of the scan" says how much faster a scan of only what Herald reads is
//                sse     GET /v1/topics/bench/events?after=0, Accept: text/event-stream, read until
//                        the event of seq BENCH_EVENTS, every `id:` checked to follow the one before
//                ndjson  the same with Accept: application/x-ndjson, every event's data.order checked
//                polls   GET /v1/topics/bench/events?after=N&limit=1000, paging by `next` (one
//                        keep-alive connection), every event's data.order checked
//   BENCH_COMPARE=<dir>  another checkout (e.g. `git archive main | tar -x -C <dir>` with a
//                        node_modules link): a second Herald from it, filled the same way, and its sse,
//                        ndjson and polls read in the same rounds (before/after in one run)
//
// Herald runs with --sqlite-sync normal, filled once through its API (batches of 1,000 events, one
// request at a time, so that data.order is seq - 1). Every target is read once unmeasured first. Each round reads every target in
// turn; the table gives the median events/s, its % of the median scan, and the median of the per-round
// ratios to the scan of the same round (paired: the load that drifts between rounds cancels out).
// Server CPU µs/event is from /proc (Herald's process, all threads); "scan / client CPU µs/event" is
// this process's (process.cpuUsage): the scan itself, or the client reading and checking the events.
import { Agent, request } from 'node:http'
import os from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { cpuSeconds, median, ROOT, round, table } from './lib.ts'
import { checkOrders, type FilledHerald, readReplay, startFilled } from './replay-common.ts'

const env = process.env
const EVENTS = Number(env['BENCH_EVENTS'] ?? 200_000)
const ROUNDS = Number(env['BENCH_ROUNDS'] ?? 5)
const TARGET_NAMES = (env['BENCH_TARGETS'] ?? 'scan,scan-lean,sse,ndjson,polls')
  .split(',')
  .map((name) => name.trim())
const COMPARE = env['BENCH_COMPARE']
const TOPIC = 'bench'
const FILL_BATCH = 1000
const FILL_IN_FLIGHT = 1 // in order: an event's data.order is its seq - 1, which NDJSON and polls check
const PAGE = 1000

interface Reading {
  seconds: number
  bytes: number
  serverCpuUs: number
  /** This process's CPU µs per event: the scan itself, or the client reading and checking. */
  clientCpuUs: number
  load: string
}

/** A filled Herald, and which checkout it runs (`this checkout`, or BENCH_COMPARE's path). */
type Herald = FilledHerald & { label: string }

const load = () => os.loadavg()[0]!.toFixed(2)

async function startLabelled(root: string, label: string, notes: string[]): Promise<Herald> {
  const herald = await startFilled({
    args: ['--sqlite-sync', 'normal'],
    root,
    topic: TOPIC,
    events: EVENTS,
    batch: FILL_BATCH,
    inFlight: FILL_IN_FLIGHT,
  })
  const seconds = herald.fillSeconds
  notes.push(
    `Fill (${label}): ${round(EVENTS)} events in ${round(seconds, 2)} s (${round(EVENTS / seconds)} events/s, ` +
      `batches of ${FILL_BATCH}, ${FILL_IN_FLIGHT} in flight).`,
  )
  return { ...herald, label }
}

/** Short polls of `PAGE` events from seq 0, paging by `next`, on one keep-alive connection. */
async function polls(url: string, agent: Agent): Promise<{ seconds: number; bytes: number }> {
  const started = performance.now()
  let after = 0
  let expected = 0
  let bytes = 0
  while (after < EVENTS) {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = request(
        `${url}/v1/topics/${TOPIC}/events?after=${after}&limit=${PAGE}`,
        { agent },
        (response) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () =>
            response.statusCode === 200
              ? resolve(Buffer.concat(chunks))
              : reject(new Error(`polls: ${response.statusCode}`)),
          )
          response.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end()
    })
    bytes += body.length
    const nextAt = body.lastIndexOf('"next":')
    const next = Number(body.toString('latin1', nextAt + 7, body.indexOf(125, nextAt)))
    const before = expected
    expected = checkOrders(body.subarray(0, nextAt), expected)
    if (next !== expected || expected - before !== Math.min(PAGE, EVENTS - after)) {
      throw new Error(`polls: after ${after}, ${expected - before} events and next ${next}`)
    }
    after = next
  }
  return { seconds: (performance.now() - started) / 1000, bytes }
}

/**
 * The raw scan on Herald's file, in this process: `columns` 'seq, id, body' (the statement Herald read
 * with when issue 17 was measured, the yardstick) or 'seq, body' (src/store/sqlite/database.ts
 * readEvents now).
 */
function scanner(
  dataDir: string,
  columns: 'seq, id, body' | 'seq, body',
): { read(): { seconds: number; bytes: number }; close(): void } {
  const db = new DatabaseSync(join(dataDir, 'herald.db'), { readOnly: true })
  const statement = db.prepare(
    `SELECT ${columns} FROM events WHERE topic_id = (SELECT id FROM topics WHERE name = ?) AND seq > ? ORDER BY seq LIMIT ?`,
  )
  return {
    read() {
      const started = performance.now()
      let after = 0
      let bytes = 0
      let count = 0
      for (;;) {
        const rows = statement.all(TOPIC, after, PAGE) as Array<{ seq: number; body: string }>
        for (const row of rows) bytes += row.body.length
        count += rows.length
        if (rows.length < PAGE) break
        after = rows.at(-1)!.seq
      }
      if (count !== EVENTS) throw new Error(`scan: ${count} rows, not ${EVENTS}`)
      return { seconds: (performance.now() - started) / 1000, bytes }
    },
    close: () => db.close(),
  }
}

interface Target {
  name: string
  scan: boolean
  read(): Promise<Reading>
}

async function meter(
  pid: number | undefined,
  work: () => Promise<{ seconds: number; bytes: number }> | { seconds: number; bytes: number },
): Promise<Reading> {
  const before = cpuSeconds(pid)
  const client = process.cpuUsage()
  const { seconds, bytes } = await work()
  const used = process.cpuUsage(client)
  return {
    seconds,
    bytes,
    serverCpuUs: pid === undefined ? Number.NaN : ((cpuSeconds(pid) - before) * 1e6) / EVENTS,
    clientCpuUs: (used.user + used.system) / EVENTS,
    load: load(),
  }
}

async function heraldTargets(herald: Herald, stops: Array<() => Promise<void>>): Promise<Target[]> {
  const targets: Target[] = []
  const suffix = herald.label === 'this checkout' ? '' : ` (${herald.label})`
  for (const name of TARGET_NAMES) {
    if (name === 'sse' || name === 'ndjson') {
      await readReplay(herald.url, TOPIC, EVENTS, name)
      targets.push({
        name: `${name === 'sse' ? 'SSE' : 'NDJSON'} replay from seq 0${suffix}`,
        scan: false,
        read: () => meter(herald.pid, () => readReplay(herald.url, TOPIC, EVENTS, name)),
      })
    } else if (name === 'polls') {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      stops.push(async () => agent.destroy())
      await polls(herald.url, agent)
      targets.push({
        name: `short polls, limit=${PAGE}${suffix}`,
        scan: false,
        read: () => meter(herald.pid, () => polls(herald.url, agent)),
      })
    } else if (name !== 'scan' && name !== 'scan-lean') {
      throw new Error(`BENCH_TARGETS: no target "${name}" (scan, scan-lean, sse, ndjson, polls)`)
    }
  }
  return targets
}

export async function runReplay(): Promise<string> {
  const loadAtStart = os.loadavg().map((each) => round(each, 2))
  const stops: Array<() => Promise<void>> = []
  const notes: string[] = []
  try {
    const herald = await startLabelled(ROOT, 'this checkout', notes)
    stops.push(herald.stop)
    const targets: Target[] = []
    for (const [name, columns] of [
      ['scan', 'seq, id, body'],
      ['scan-lean', 'seq, body'],
    ] as const) {
      if (!TARGET_NAMES.includes(name)) continue
      const scan = scanner(herald.dataDir, columns)
      stops.push(async () => scan.close())
      scan.read()
      targets.push({
        name: `raw scan (node:sqlite, pages of ${PAGE}${name === 'scan' ? '' : ', seq and body only'})`,
        // The first scan is the yardstick (see targets.find below).
        scan: name === 'scan',
        read: () => meter(undefined, scan.read),
      })
    }
    targets.push(...(await heraldTargets(herald, stops)))
    if (COMPARE !== undefined) {
      const other = await startLabelled(COMPARE, COMPARE, notes)
      stops.push(other.stop)
      targets.push(...(await heraldTargets(other, stops)))
    }
    const runs = new Map<Target, Reading[]>(targets.map((target) => [target, []]))
    for (let r = 1; r <= ROUNDS; r++) {
      for (const target of targets) {
        const reading = await target.read()
        runs.get(target)!.push(reading)
        process.stderr.write(
          `round ${r}: ${target.name}: ${round(EVENTS / reading.seconds)} events/s (${round(reading.seconds, 2)} s), ` +
            `server ${round(reading.serverCpuUs, 2)} µs/event, this process ${round(reading.clientCpuUs, 2)} µs/event, ` +
            `load ${reading.load}\n`,
        )
      }
    }
    const loadAtEnd = os.loadavg().map((each) => round(each, 2))
    const scanTarget = targets.find((target) => target.scan)
    const rate = (reading: Reading) => EVENTS / reading.seconds
    const scanRates = scanTarget && runs.get(scanTarget)!.map(rate)
    const scanMedian = scanRates && median(scanRates)
    const rows = targets.map((target) => {
      const all = runs.get(target)!
      const rates = all.map(rate)
      const events = median(rates)
      const paired = scanRates && median(rates.map((each, r) => each / scanRates[r]!))
      return [
        target.name,
        round(events),
        scanMedian ? `${round((100 * events) / scanMedian, 1)}%` : '–',
        paired ? `${round(100 * paired, 1)}%` : '–',
        round(median(all.map((each) => each.bytes / each.seconds / 1e6)), 1),
        // No server for a scan (NaN).
        Number.isNaN(all[0]!.serverCpuUs) ? '–' : round(median(all.map((each) => each.serverCpuUs)), 2),
        round(median(all.map((each) => each.clientCpuUs)), 2),
        rates.map((each) => round(each)).join(' / '),
        all.map((each) => each.load).join(' / '),
      ]
    })
    return [
      `Replay: ${round(EVENTS)} stored events (SQLite, --sqlite-sync normal), read from seq 0; ${ROUNDS} rounds; ` +
        `${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), Node ${process.version}`,
      `Load average (1, 5, 15 min) at the start: ${loadAtStart.join(', ')}; at the end: ${loadAtEnd.join(', ')}.`,
      '',
      table(
        [
          'target',
          'events/s (median)',
          '% of the scan (medians)',
          '% of the scan (median of per-round ratios)',
          'MB/s',
          'server CPU µs/event',
          'scan / client CPU µs/event',
          'events/s by round',
          '1-min load after each read',
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
  process.stdout.write(`${await runReplay()}\n`)
}
