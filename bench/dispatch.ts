// Dispatch: webhook delivery throughput, Herald's dispatcher side by side in one run with a bare
// undici POST loop to the same receiver (the limit).
//   npm run bench:dispatch
//
// Environment, with defaults:
//   BENCH_EVENTS=10000   events published; every hook gets each of them
//   BENCH_HOOKS=10       hooks (Herald) and sequential POST loops (the bare loop)
//   BENCH_ROUNDS=3       rounds; the targets are measured in turn in each round, rows are the median
//   BENCH_TARGETS=loop,signed-loop,herald,herald-normal,herald-pg   which targets, in this order:
//                        loop           the bare undici loop (the limit; the percentages need it)
//                        signed-loop    the same, each request HMAC-signed (the cost of signing alone)
//                        herald         Herald at its defaults (sync=full: every commit fsynced)
//                        herald-normal  Herald with --sqlite-sync normal (no fsync per commit)
//                        herald-pg      Herald on PostgreSQL (HERALD_DATABASE_URL=BENCH_DATABASE_URL, default
//                                       the machine's, 127.0.0.1:5432/test; a fresh schema
//                                       bench_dispatch_<random> per measurement, dropped after it;
//                                       synchronous_commit as the server has it, on by default)
//   BENCH_CPU_PROF=<dir>     Herald runs with node --cpu-prof, its profiles written to <dir>
//   BENCH_HERALD_ARGS=       more `herald serve` options, space-separated (e.g. --sqlite-sync normal)
//
// One receiver process for the whole run (bench/peers/webhook-receiver.ts): node:http on loopback,
// 200 at once, counting the POSTs per path and checking that each path got seqs 1..events exactly
// once and in order. The senders, each in its own process, so that the receiver's CPU is nobody's:
//   - bare undici loop (bench/peers/undici-loop.ts): one sequential POST loop per hook, all at once,
//     each POSTing the events' bodies (the bytes Herald delivers, about 300) to /hook/<n> on one
//     keep-alive undici Agent; optionally signed per Standard Webhooks with node:crypto's HMAC;
//   - Herald: a fresh server (empty data directory, `--allow-private-targets true`, every other option
//     at its default: sync=full, dispatch concurrency 64), one hook per receiver path on the topic,
//     ordered (the default). The hooks are paused, the events published in batches of 100, and only
//     then are the hooks resumed (PATCH state active, all at once): the measurement is dispatch alone,
//     from the first PATCH to the receiver counting the last of hooks × events deliveries. Every
//     delivery is signed, and its attempt is written to the attempts log (SQLite, group-committed).
// Seconds are the same for all: from the start (the loop's first POST; the first PATCH) to the
// arrival of the last POST at the receiver (one clock: performance.timeOrigin + performance.now()).
// CPU per delivery, for the sender (the loop's process; Herald's, all its threads) and the receiver:
// user + system time from /proc/<pid>/stat over the same window, divided by the deliveries. On 2 cores
// shared by the sender and the receiver, it shows where the time goes better than seconds alone.
// Herald on PostgreSQL also has the CPU of the database backends serving it (by its TCP connections;
// the WAL writer, shared with everyone on the server, is not counted): SQLite's work is in Herald's.
// After each Herald measurement the run also checks its books: herald_deliveries{state="delivered"}
// reaches hooks × events (the time that takes after the last arrival is reported), no attempt other
// than a first, successful one, and each hook's newest attempt is the last event, answered 200.
// A path that misses a seq fails the run; duplicates and out-of-order arrivals are reported and make
// the run exit non-zero.
import { type ChildProcess, fork } from 'node:child_process'
import { rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { cpuSeconds, ROOT, round, startHerald, table } from './lib.ts'
import { publishedEvent, TOPIC } from './peers/dispatch-events.ts'
import type { LoopCommand, LoopMessage } from './peers/undici-loop.ts'
import type { ReceiverCommand, ReceiverMessage, ReceiverStats } from './peers/webhook-receiver.ts'
import { backendPids, DATABASE_URL, dropSchema, schemaName } from './postgres.ts'

const env = process.env
const EVENTS = Number(env['BENCH_EVENTS'] ?? 10_000)
const HOOKS = Number(env['BENCH_HOOKS'] ?? 10)
const ROUNDS = Number(env['BENCH_ROUNDS'] ?? 3)
const TARGET_NAMES = (env['BENCH_TARGETS'] ?? 'loop,signed-loop,herald,herald-normal,herald-pg')
  .split(',')
  .map((name) => name.trim())
  .filter(Boolean)
const CPU_PROF = env['BENCH_CPU_PROF']
const HERALD_ARGS = (env['BENCH_HERALD_ARGS'] ?? '').split(' ').filter(Boolean)
const TOTAL = EVENTS * HOOKS
const BATCH = 100
const TARGET_PERCENT = 60
/** Issue 11's target for Herald on PostgreSQL. */
const TARGET_PERCENT_POSTGRES = 50
/** The longest a measurement may take: no target here is slower than 500 deliveries/s. */
const MEASURE_TIMEOUT_MS = Math.max(120_000, (TOTAL / 500) * 1000)
const BOOKS_TIMEOUT_MS = 60_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const now = () => performance.timeOrigin + performance.now()
const log = (line: string) => process.stderr.write(`${line}\n`)

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Forks a peer with an IPC channel; it dies with this process. */
function forkPeer(script: string): ChildProcess {
  const child = fork(join(ROOT, 'bench/peers', script), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const kill = () => child.kill('SIGKILL')
  process.once('exit', kill)
  child.once('exit', () => process.off('exit', kill))
  return child
}

/**
 * CPU the PostgreSQL backends serving a process spend per delivery over a measurement: the backends
 * found at its start, and those opened since, found again at its end (counted from zero).
 */
async function databaseMeter(pid: number | undefined): Promise<() => Promise<number>> {
  const start = new Map((await backendPids(pid)).map((each) => [each, cpuSeconds(each)]))
  return async () => {
    let seconds = 0
    for (const each of new Set([...start.keys(), ...(await backendPids(pid))])) {
      const used = cpuSeconds(each) - (start.get(each) ?? 0)
      if (!Number.isNaN(used)) seconds += used
    }
    return (seconds * 1e6) / TOTAL
  }
}

/** CPU a process spends per delivery over a measurement: read once at its start, once at its end. */
function cpuMeter(pid: number | undefined): () => number {
  const start = cpuSeconds(pid)
  return () => ((cpuSeconds(pid) - start) * 1e6) / TOTAL
}

function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type']): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: T) => {
      if (message.type !== type) return
      cleanup()
      resolve(message)
    }
    const onExit = (code: number | null) => {
      cleanup()
      reject(new Error(`${child.spawnargs.at(-1)} exited (${code}) while waiting for "${type}"`))
    }
    const cleanup = () => {
      child.off('message', onMessage)
      child.off('exit', onExit)
    }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

// ---------------------------------------------------------------------------------------------
// The receiver

interface Receiver {
  url: string
  pid: number | undefined
  /** Starts counting afresh; resolves with the arrival time of the `total`-th POST. */
  expect(total: number): Promise<{ at: number; stats: ReceiverStats }>
  stats(): Promise<ReceiverStats>
  stop(): void
}

async function startReceiver(): Promise<Receiver> {
  const child = forkPeer('webhook-receiver.ts')
  const { port } = await nextMessage<Extract<ReceiverMessage, { type: 'listening' }>>(child, 'listening')
  const send = (command: ReceiverCommand) => child.send(command)
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    expect(total) {
      const done = nextMessage<Extract<ReceiverMessage, { type: 'done' }>>(child, 'done')
      send({ type: 'expect', events: EVENTS, total })
      return done
    },
    async stats() {
      const answer = nextMessage<Extract<ReceiverMessage, { type: 'stats' }>>(child, 'stats')
      send({ type: 'stats' })
      return (await answer).stats
    },
    stop: () => child.kill('SIGTERM'),
  }
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Measurement {
  seconds: number
  deliveriesPerSecond: number
  duplicates: number
  outOfOrder: number
  missing: number
  bodyBytes: number
  /** CPU µs per delivery of the sending process (Herald: all its threads) over the measurement. */
  senderCpuUs: number
  /** CPU µs per delivery of the receiver over the measurement. */
  receiverCpuUs: number
  /** Herald on PostgreSQL: CPU µs per delivery of the database backends serving it. */
  databaseCpuUs?: number
  /** Herald: seconds from the last arrival until its delivery table counted every delivery. */
  booksSeconds?: number
  /** Herald: seconds to publish the events (hooks paused). */
  publishSeconds?: number
}

function summarize(
  stats: ReceiverStats,
  startedAt: number,
  doneAt: number,
  cpu: { senderCpuUs: number; receiverCpuUs: number },
): Measurement {
  let duplicates = 0
  let outOfOrder = 0
  let missing = 0
  let unexpected = 0
  let bytes = 0
  for (let hook = 0; hook < HOOKS; hook++) {
    const path = stats.paths[`/hook/${hook}`]
    missing += EVENTS - (path?.unique ?? 0)
    duplicates += path?.duplicates ?? 0
    outOfOrder += path?.outOfOrder ?? 0
    unexpected += path?.unexpected ?? 0
    bytes += path?.bytes ?? 0
  }
  const strays = Object.keys(stats.paths).filter((path) => !/^\/hook\/\d+$/.test(path))
  if (unexpected > 0 || strays.length > 0) {
    throw new Error(`receiver: ${unexpected} POSTs without a known seq, POSTs to ${strays.join(', ') || '-'}`)
  }
  const seconds = (doneAt - startedAt) / 1000
  return {
    seconds,
    deliveriesPerSecond: stats.unique / seconds,
    duplicates,
    outOfOrder,
    missing,
    bodyBytes: bytes / stats.total,
    ...cpu,
  }
}

/** Waits for the receiver to count `total` POSTs; on a timeout, says what is missing where. */
async function arrivals(
  receiver: Receiver,
  done: Promise<{ at: number; stats: ReceiverStats }>,
  what: string,
) {
  try {
    return await withTimeout(done, MEASURE_TIMEOUT_MS, `${what}: ${TOTAL} deliveries`)
  } catch (error) {
    const stats = await receiver.stats()
    const counts = Object.entries(stats.paths).map(([path, s]) => `${path}: ${s.count}`)
    throw new Error(`${(error as Error).message} (received ${stats.total}; ${counts.join(', ')})`)
  }
}

async function measureLoop(receiver: Receiver, signed: boolean): Promise<Measurement> {
  const child = forkPeer('undici-loop.ts')
  try {
    await nextMessage<LoopMessage>(child, 'ready')
    const done = receiver.expect(TOTAL)
    const finished = nextMessage<Extract<LoopMessage, { type: 'finished' }>>(child, 'finished')
    const senderCpu = cpuMeter(child.pid)
    const receiverCpu = cpuMeter(receiver.pid)
    child.send({
      type: 'run',
      url: receiver.url,
      hooks: HOOKS,
      events: EVENTS,
      signed,
    } satisfies LoopCommand)
    const { at, stats } = await arrivals(receiver, done, 'bare undici loop')
    const cpu = { senderCpuUs: senderCpu(), receiverCpuUs: receiverCpu() }
    const result = await finished
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`bare undici loop: ${result.non2xx} non-2xx answers and ${result.errors} errors`)
    }
    return summarize(stats, result.startedAt, at, cpu)
  } finally {
    child.kill('SIGTERM')
  }
}

async function api(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${base}${path}`, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  })
  const text = await response.text()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`)
  return text === '' ? undefined : JSON.parse(text)
}

/** The value of one Prometheus sample line, e.g. `herald_deliveries{state="delivered"}`; 0 if absent. */
function sample(metrics: string, name: string): number {
  const line = metrics.split('\n').find((each) => each.startsWith(`${name} `))
  return line ? Number(line.slice(name.length + 1)) : 0
}

async function metricsText(base: string): Promise<string> {
  return (await fetch(`${base}/metrics`)).text()
}

async function measureHerald(
  receiver: Receiver,
  round: number,
  args: string[],
  postgres = false,
): Promise<Measurement> {
  const saved = env['NODE_OPTIONS']
  if (CPU_PROF) env['NODE_OPTIONS'] = `${saved ?? ''} --cpu-prof --cpu-prof-dir=${CPU_PROF}`.trim()
  const schema = postgres ? schemaName('dispatch') : undefined
  const herald = await startHerald(
    ['--allow-private-targets', 'true', ...args, ...HERALD_ARGS],
    undefined,
    schema === undefined ? {} : { HERALD_DATABASE_URL: DATABASE_URL, HERALD_DATABASE_SCHEMA: schema },
  ).catch(async (error: unknown) => {
    if (schema !== undefined) await dropSchema(schema)
    throw error
  })
  if (CPU_PROF) {
    if (saved === undefined) delete env['NODE_OPTIONS']
    else env['NODE_OPTIONS'] = saved
  }
  try {
    const base = herald.url
    const hooks: string[] = []
    for (let hook = 0; hook < HOOKS; hook++) {
      const created = (await api(base, 'POST', '/v1/hooks', {
        target_url: `${receiver.url}/hook/${hook}`,
        topic: TOPIC,
        ordered: true,
      })) as { id: string }
      await api(base, 'PATCH', `/v1/hooks/${created.id}`, { state: 'paused' })
      hooks.push(created.id)
    }
    const publishStart = now()
    for (let first = 1; first <= EVENTS; first += BATCH) {
      const count = Math.min(BATCH, EVENTS - first + 1)
      const batch = Array.from({ length: count }, (_, i) => publishedEvent(first + i))
      await api(base, 'POST', `/v1/topics/${TOPIC}/events`, batch)
    }
    const publishSeconds = (now() - publishStart) / 1000
    const pending = sample(await metricsText(base), 'herald_deliveries{state="pending"}')
    if (pending !== TOTAL)
      throw new Error(`Herald: ${pending} deliveries pending after publishing, not ${TOTAL}`)
    await sleep(1000) // the publish's commits and the machine settle before the clock starts

    const done = receiver.expect(TOTAL)
    const senderCpu = cpuMeter(herald.child.pid)
    const receiverCpu = cpuMeter(receiver.pid)
    const databaseCpu = postgres ? await databaseMeter(herald.child.pid) : undefined
    const startedAt = now()
    await Promise.all(hooks.map((id) => api(base, 'PATCH', `/v1/hooks/${id}`, { state: 'active' })))
    const { at, stats } = await arrivals(receiver, done, `Herald round ${round}`)
    const cpu = { senderCpuUs: senderCpu(), receiverCpuUs: receiverCpu() }
    const measurement = summarize(stats, startedAt, at, cpu)
    if (databaseCpu) measurement.databaseCpuUs = await databaseCpu()

    // The books: every delivery settled as delivered, each by one successful attempt.
    const deadline = Date.now() + BOOKS_TIMEOUT_MS
    let metrics = ''
    for (;;) {
      metrics = await metricsText(base)
      if (sample(metrics, 'herald_deliveries{state="delivered"}') >= TOTAL) break
      if (Date.now() > deadline) {
        throw new Error(
          `Herald: ${sample(metrics, 'herald_deliveries{state="delivered"}')} of ${TOTAL} deliveries settled`,
        )
      }
      await sleep(50)
    }
    measurement.booksSeconds = Math.max(0, (now() - at) / 1000)
    measurement.publishSeconds = publishSeconds
    const attempts = (outcome: string) =>
      sample(metrics, `herald_delivery_attempts_total{outcome="${outcome}"}`)
    const others = ['retry', 'failed', 'gone'].map((outcome) => `${outcome} ${attempts(outcome)}`)
    if (attempts('delivered') !== TOTAL || others.some((each) => !each.endsWith(' 0'))) {
      throw new Error(
        `Herald: attempts delivered ${attempts('delivered')} (of ${TOTAL}), ${others.join(', ')}`,
      )
    }
    for (const id of hooks) {
      const newest = (await api(base, 'GET', `/v1/hooks/${id}/deliveries?limit=1`)) as {
        attempts: Array<{ seq: number; attempt: number; status: number }>
      }
      const last = newest.attempts[0]
      if (last?.seq !== EVENTS || last.attempt !== 1 || last.status !== 200) {
        throw new Error(`Herald: hook ${id}'s newest attempt is ${JSON.stringify(last)}`)
      }
    }
    return measurement
  } finally {
    await herald.stop()
    rmSync(herald.dataDir, { recursive: true, force: true })
    if (schema !== undefined) await dropSchema(schema)
  }
}

// ---------------------------------------------------------------------------------------------
// The run

interface Target {
  name: string
  measure(receiver: Receiver, round: number): Promise<Measurement>
}

const ALL_TARGETS: Record<string, Target> = {
  loop: { name: 'bare undici loop (the limit)', measure: (receiver) => measureLoop(receiver, false) },
  'signed-loop': {
    name: 'bare undici loop, HMAC-signed',
    measure: (receiver) => measureLoop(receiver, true),
  },
  herald: {
    name: 'Herald: signed, attempts log, ordered (sync=full)',
    measure: (receiver, round) => measureHerald(receiver, round, []),
  },
  'herald-normal': {
    name: 'Herald, the same with sync=normal',
    measure: (receiver, round) => measureHerald(receiver, round, ['--sqlite-sync', 'normal']),
  },
  'herald-pg': {
    name: 'Herald on PostgreSQL: signed, attempts log, ordered',
    measure: (receiver, round) => measureHerald(receiver, round, [], true),
  },
}

const TARGETS = TARGET_NAMES.map((name) => {
  const target = ALL_TARGETS[name]
  if (!target) throw new Error(`BENCH_TARGETS: no target "${name}" (${Object.keys(ALL_TARGETS).join(', ')})`)
  return target
})

function median(results: Measurement[]): Measurement {
  const sorted = [...results].sort((a, b) => a.deliveriesPerSecond - b.deliveriesPerSecond)
  return sorted[Math.floor(sorted.length / 2)]!
}

export async function runDispatch(): Promise<string> {
  const receiver = await startReceiver()
  const runs = new Map<Target, Measurement[]>(TARGETS.map((target) => [target, []]))
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const target of TARGETS) {
        await sleep(1000)
        const result = await target.measure(receiver, r)
        runs.get(target)!.push(result)
        log(
          `round ${r}: ${target.name}: ${round(result.deliveriesPerSecond)} deliveries/s ` +
            `(${round(result.seconds, 2)} s; duplicates ${result.duplicates}, out of order ${result.outOfOrder}` +
            (result.booksSeconds === undefined
              ? ')'
              : `, all settled ${round(result.booksSeconds, 2)} s after the last arrival)`),
        )
      }
    }
  } finally {
    receiver.stop()
  }
  const medians = new Map(TARGETS.map((target) => [target, median(runs.get(target)!)]))
  const loop = medians.get(ALL_TARGETS['loop']!)?.deliveriesPerSecond
  const percent = (value: number) => (loop ? `${round((100 * value) / loop, 1)}%` : '-')
  const rows = TARGETS.map((target) => {
    const result = medians.get(target)!
    const all = runs.get(target)!
    return [
      target.name,
      round(TOTAL),
      round(result.seconds, 2),
      round(result.deliveriesPerSecond),
      percent(result.deliveriesPerSecond),
      all.map((each) => round(each.deliveriesPerSecond)).join(' / '),
      all.reduce((sum, each) => sum + each.duplicates, 0),
      all.reduce((sum, each) => sum + each.outOfOrder, 0),
      round(result.bodyBytes),
      round(result.senderCpuUs, 1),
      round(result.receiverCpuUs, 1),
      result.databaseCpuUs === undefined ? '–' : round(result.databaseCpuUs, 1),
    ]
  })
  const lines = [
    `Dispatch: ${round(EVENTS)} events to ${HOOKS} hooks (${round(TOTAL)} deliveries) on one local receiver; ` +
      `median of ${ROUNDS} rounds; ${os.cpus().length} CPUs, Node ${process.version}`,
    '',
    table(
      [
        'target',
        'deliveries',
        'seconds',
        'deliveries/s',
        '% of bare loop',
        'deliveries/s by round',
        'duplicates (all rounds)',
        'out of order (all rounds)',
        'body bytes',
        'sender CPU µs per delivery',
        'receiver CPU µs per delivery',
        'database backends CPU µs per delivery',
      ],
      rows,
    ),
    '',
  ]
  const herald = medians.get(ALL_TARGETS['herald']!)
  if (herald && loop) {
    const share = (100 * herald.deliveriesPerSecond) / loop
    lines.push(
      `Herald (signed, durable attempts log, ordered): ${round(share, 1)}% of the bare loop's deliveries/s ` +
        `(target ≥ ${TARGET_PERCENT}% of the bare loop: ${share >= TARGET_PERCENT ? 'met' : 'not met'}).`,
    )
  }
  const onPostgres = medians.get(ALL_TARGETS['herald-pg']!)
  if (onPostgres && loop) {
    const share = (100 * onPostgres.deliveriesPerSecond) / loop
    lines.push(
      `Herald on PostgreSQL: ${round(share, 1)}% of the bare loop's deliveries/s (target ≥ ${TARGET_PERCENT_POSTGRES}%: ` +
        `${share >= TARGET_PERCENT_POSTGRES ? 'met' : 'not met'})` +
        (herald
          ? `, ${round((100 * onPostgres.deliveriesPerSecond) / herald.deliveriesPerSecond, 1)}% of Herald on SQLite.`
          : '.'),
    )
  }
  for (const key of ['herald', 'herald-normal', 'herald-pg']) {
    const each = runs.get(ALL_TARGETS[key]!)
    if (!each) continue
    const seconds = (pick: (m: Measurement) => number | undefined) =>
      each.map((m) => round(pick(m) ?? 0, 2)).join(' / ')
    lines.push(
      `${ALL_TARGETS[key]!.name}: every delivery counted as delivered in its table ` +
        `${seconds((m) => m.booksSeconds)} s after the last arrival; publishing the events ` +
        `(batches of ${BATCH}, hooks paused) took ${seconds((m) => m.publishSeconds)} s (by round).`,
    )
  }
  const disorder = [...runs.values()].flat().some((each) => each.outOfOrder > 0 || each.duplicates > 0)
  if (disorder) process.exitCode = 1
  lines.push(
    disorder
      ? 'ORDER NOT KEPT: some path got a duplicate or an out-of-order delivery (see the table).'
      : 'Every path got every seq exactly once, in order, in every round.',
  )
  return lines.join('\n')
}

if (import.meta.main) {
  process.stdout.write(`${await runDispatch()}\n`)
}
