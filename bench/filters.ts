// Filtered fan-out: 1,000 SSE subscribers on one topic holding no filter, then 10 distinct
// CloudEvents filters (100 subscribers each), in the same run and the same rounds.
//   npm run bench:filters     (BENCH_SUBSCRIBERS=1000, BENCH_EVENTS=2000, BENCH_ROUNDS=3)
//
// Scenarios, each on a fresh Herald (SQLite, sync=normal), subscribers connected before publishing:
//   - none: no filter; every subscriber gets every event (the baseline);
//   - 10 filters, all matching: ten distinct filters over `type` and `data.<path>`, each of which every
//     event matches, so every subscriber gets every event, as in the baseline: the difference is what
//     evaluating filters costs (target: ≥ 90% of the baseline's events/s per subscriber);
//   - 10 filters, 1 in 10 matching: each filter takes the events of one region of ten, so each
//     subscriber gets a tenth of them (Herald skips the rest, with a bare `id:` block now and then).
// The publisher sends BENCH_EVENTS events in batches of 100 as fast as the server takes them; the
// time runs from the first publish to the moment every subscriber has its last event. Subscribers
// count `data:` lines (no JSON parsing: the client must not be the bottleneck on 2 cores).
import { Agent, request } from 'node:http'
import os from 'node:os'
import { median, round, startHerald, type Target, table } from './lib.ts'

const SUBSCRIBERS = Number(process.env['BENCH_SUBSCRIBERS'] ?? 1000)
const EVENTS = Number(process.env['BENCH_EVENTS'] ?? 2000)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3)
const BATCH = 100
const TOPIC = 'bench'
const TIMEOUT_MS = 300_000

interface Scenario {
  name: string
  /** The filter of subscriber `i` (undefined: none). */
  filterOf: (i: number) => unknown
  /** How many of the events subscriber `i` gets. */
  expected: (i: number) => number
}

/** Ten distinct filters that every bench event matches (type, data fields, combinations). */
const MATCHING = [
  { exact: { type: 'order.created' } },
  { prefix: { type: 'order.' } },
  { suffix: { type: '.created' } },
  { exact: { 'data.currency': 'EUR' } },
  { prefix: { 'data.customer.tier': 'g' } },
  { not: { exact: { 'data.currency': 'USD' } } },
  { any: [{ exact: { 'data.currency': 'EUR' } }, { exact: { 'data.currency': 'GBP' } }] },
  { all: [{ prefix: { type: 'order' } }, { suffix: { 'data.customer.tier': 'old' } }] },
  { exact: { source: `/v1/topics/${TOPIC}` } },
  [{ prefix: { subject: 'orders/' } }, { exact: { 'data.customer.tier': 'gold' } }],
]

const SCENARIOS: Scenario[] = [
  { name: 'no filter (baseline)', filterOf: () => undefined, expected: () => EVENTS },
  {
    name: '10 distinct filters, every event matches',
    filterOf: (i) => MATCHING[i % 10],
    expected: () => EVENTS,
  },
  {
    name: '10 distinct filters, 1 event in 10 matches',
    filterOf: (i) => ({ exact: { 'data.region': `r${i % 10}` } }),
    expected: (i) => Math.floor(EVENTS / 10) + (i % 10 < EVENTS % 10 ? 1 : 0),
  },
]

function eventAt(n: number) {
  return {
    type: 'order.created',
    subject: `orders/${n}`,
    data: { order: n, currency: 'EUR', region: `r${n % 10}`, customer: { tier: 'gold' }, total: 99.5 },
  }
}

/** One SSE subscriber: counts `data:` lines, resolves when it has `expected` of them. */
function subscribe(
  agent: Agent,
  url: string,
  filter: unknown,
  expected: number,
): { connected: Promise<void>; done: Promise<number>; close(): void } {
  const path = `/v1/topics/${TOPIC}/events?after=0${filter === undefined ? '' : `&filter=${encodeURIComponent(JSON.stringify(filter))}`}`
  let count = 0
  let tail = ''
  let finish: (at: number) => void = () => {}
  const done = new Promise<number>((resolve) => {
    finish = resolve
  })
  let req: ReturnType<typeof request> | undefined
  const connected = new Promise<void>((resolve, reject) => {
    req = request(`${url}${path}`, { agent, headers: { accept: 'text/event-stream' } }, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`subscribe: ${response.statusCode}`))
        return
      }
      resolve()
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        const text = tail + chunk
        let at = text.indexOf('\ndata:')
        while (at !== -1) {
          count++
          at = text.indexOf('\ndata:', at + 6)
        }
        tail = text.slice(-6)
        if (count >= expected) finish(performance.now())
      })
    })
    req.on('error', reject)
    req.end()
  })
  return { connected, done, close: () => req?.destroy() }
}

async function publishAll(url: string): Promise<void> {
  for (let start = 0; start < EVENTS; start += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, EVENTS - start) }, (_, i) => eventAt(start + i))
    const response = await fetch(`${url}/v1/topics/${TOPIC}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(batch),
    })
    if (response.status !== 201) throw new Error(`publish: ${response.status} ${await response.text()}`)
  }
}

interface Result {
  seconds: number
  /** Events each subscriber got per second (the mean over subscribers of expected / its time). */
  perSubscriber: number
  /** Events delivered per second, all subscribers together. */
  delivered: number
}

async function measure(scenario: Scenario): Promise<Result> {
  const target: Target = await startHerald([
    '--sqlite-sync',
    'normal',
    '--max-connections',
    String(SUBSCRIBERS + 100),
    // Every subscriber and the publisher come from 127.0.0.1.
    '--max-connections-per-ip',
    'none',
  ])
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
  const subscribers = Array.from({ length: SUBSCRIBERS }, (_, i) =>
    subscribe(agent, target.url, scenario.filterOf(i), scenario.expected(i)),
  )
  try {
    await Promise.all(subscribers.map((s) => s.connected))
    const started = performance.now()
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${scenario.name}: not every subscriber got its events in ${TIMEOUT_MS} ms`)),
        TIMEOUT_MS,
      )
    })
    await publishAll(target.url)
    const ends = await Promise.race([Promise.all(subscribers.map((s) => s.done)), timedOut])
    clearTimeout(timer)
    const last = Math.max(...ends)
    const perSubscriber =
      ends.reduce((sum, end, i) => sum + scenario.expected(i) / ((end - started) / 1000), 0) / SUBSCRIBERS
    const total = subscribers.reduce((sum, _, i) => sum + scenario.expected(i), 0)
    return { seconds: (last - started) / 1000, perSubscriber, delivered: total / ((last - started) / 1000) }
  } finally {
    for (const s of subscribers) s.close()
    agent.destroy()
    await target.stop()
  }
}

export async function runFilters(): Promise<string> {
  const runs = new Map<Scenario, Result[]>(SCENARIOS.map((s) => [s, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const scenario of SCENARIOS) {
      const result = await measure(scenario)
      runs.get(scenario)!.push(result)
      process.stderr.write(
        `round ${r + 1}: ${scenario.name}: ${round(result.seconds, 2)} s, ${round(result.perSubscriber)} events/s per subscriber, ${round(result.delivered)} deliveries/s\n`,
      )
    }
  }
  const baseline = runs.get(SCENARIOS[0]!)!
  // Paired: each round's ratio to the baseline measured in the same round, then the median.
  const paired = (scenario: Scenario, pick: (r: Result) => number) =>
    median(runs.get(scenario)!.map((run, i) => pick(run) / pick(baseline[i]!)))
  const rows = SCENARIOS.map((scenario) => {
    const results = runs.get(scenario)!
    return [
      scenario.name,
      round(median(results.map((r) => r.seconds)), 2),
      round(median(results.map((r) => r.perSubscriber))),
      round(median(results.map((r) => r.delivered))),
      `${round(100 * paired(scenario, (r) => r.perSubscriber), 1)}%`,
      results.map((r) => round(r.perSubscriber)).join(' / '),
    ]
  })
  return [
    `Filtered fan-out: ${SUBSCRIBERS} SSE subscribers, ${EVENTS} events in batches of ${BATCH}, median of ${ROUNDS} rounds; ${os.cpus().length} CPUs, Node ${process.version}`,
    '',
    table(
      [
        'subscribers hold',
        'seconds to the last event',
        'events/s per subscriber',
        'deliveries/s (all)',
        'per subscriber vs baseline (paired)',
        'events/s per subscriber by round',
      ],
      rows,
    ),
    '',
    `Target: with 10 distinct filters that every event matches, ≥ 90% of the baseline's events/s per subscriber: ${round(100 * paired(SCENARIOS[1]!, (r) => r.perSubscriber), 1)}%.`,
  ].join('\n')
}

if (import.meta.main) {
  process.stdout.write(`${await runFilters()}\n`)
}
