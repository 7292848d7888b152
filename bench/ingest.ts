// Ingest: durable publish throughput over HTTP, side by side with a bare Fastify route in the same run.
//   npm run bench:ingest     (BENCH_SECONDS=10 per measurement, BENCH_ROUNDS=3)
// The targets are measured in turn, round after round, and each row reports the median round, so
// that a slow moment of the machine does not fall on one target only.
import os from 'node:os'
import { SignJWT } from 'jose'
import { runAccessCheck } from './access-check.ts'
import {
  type LoadResult,
  median as medianOf,
  post,
  round,
  startBareFastify,
  startHerald,
  type Target,
  table,
} from './lib.ts'
import { ORDER_SCHEMA, runSchemaCheck } from './schema-check.ts'

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3)
const WARMUP = Math.min(3, SECONDS)
const PATH = '/v1/topics/bench/events'

const single = JSON.stringify({ type: 'order.created', data: { order: 12345, total: 99.5, currency: 'EUR' } })
const batch = JSON.stringify(
  Array.from({ length: 100 }, (_, i) => ({
    type: 'order.created',
    data: { order: i, total: 99.5, currency: 'EUR' },
  })),
)
/**
 * The same batch with a `dataschema` as long as the one Herald stamps on validated events (its port
 * has five digits here): a control with the validated events' size, and no type registered.
 */
const batchWithDataschema = JSON.stringify(
  Array.from({ length: 100 }, (_, i) => ({
    type: 'order.created',
    dataschema: 'http://127.0.0.1:40000/v1/event-types/order.created/versions/1',
    data: { order: i, total: 99.5, currency: 'EUR' },
  })),
)

interface Scenario {
  name: string
  /** The server, and the headers its requests carry (credentials). */
  start: () => Promise<Target & { headers?: Record<string, string> }>
  body: string
  connections: number
  eventsPerRequest: number
}

/**
 * BENCH_BEFORE=<a checkout of another commit, with its node_modules>: that Herald's single-event
 * durable publish is measured too, in the same rounds, so a change's cost is seen side by side
 * rather than across runs on a machine whose speed drifts.
 */
const BEFORE = process.env['BENCH_BEFORE']

const ALL_SCENARIOS: Scenario[] = [
  {
    name: 'bare Fastify route (baseline)',
    start: startBareFastify,
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  {
    name: 'Herald, single events, sync=full',
    start: () => startHerald(),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  ...(BEFORE === undefined
    ? []
    : [
        {
          name: `Herald at ${BEFORE}, single events, sync=full`,
          start: () => startHerald([], BEFORE),
          body: single,
          connections: 64,
          eventsPerRequest: 1,
        },
      ]),
  // Access control (issue 13): the same publish with the root key, a scoped key and a signed token
  // (sync=normal, see startWithCredentials).
  {
    name: 'Herald, single events, root key, sync=normal',
    start: () => startWithCredentials('root'),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  {
    name: 'Herald, single events, scoped key, sync=normal',
    start: () => startWithCredentials('key'),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  {
    name: 'Herald, single events, JWT (HS256), sync=normal',
    start: () => startWithCredentials('jwt'),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  {
    name: 'Herald, single events, sync=normal',
    start: () => startHerald(['--sqlite-sync', 'normal']),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  // Event types (issue 16): the same publishes with order.created registered, so that every event is
  // checked against its schema and stamped with its dataschema.
  {
    name: 'Herald, single events, schema-validated, sync=normal',
    start: () => startWithSchema(['--sqlite-sync', 'normal']),
    body: single,
    connections: 64,
    eventsPerRequest: 1,
  },
  {
    name: 'bare Fastify route, 100-event body',
    start: startBareFastify,
    body: batch,
    connections: 16,
    eventsPerRequest: 100,
  },
  {
    name: 'Herald, batches of 100, sync=full',
    start: () => startHerald(),
    body: batch,
    connections: 16,
    eventsPerRequest: 100,
  },
  ...(BEFORE === undefined
    ? []
    : [
        {
          name: `Herald at ${BEFORE}, batches of 100, sync=full`,
          start: () => startHerald([], BEFORE),
          body: batch,
          connections: 16,
          eventsPerRequest: 100,
        },
      ]),
  {
    name: 'Herald, batches of 100, dataschema sent, no type registered, sync=full',
    start: () => startHerald(),
    body: batchWithDataschema,
    connections: 16,
    eventsPerRequest: 100,
  },
  {
    name: 'Herald, batches of 100, schema-validated, sync=full',
    start: () => startWithSchema([]),
    body: batch,
    connections: 16,
    eventsPerRequest: 100,
  },
]

async function startWithSchema(args: string[]): Promise<Target> {
  const target = await startHerald(args)
  const response = await fetch(`${target.url}/v1/event-types/order.created`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ schema: ORDER_SCHEMA }),
  })
  if (response.status !== 201)
    throw new Error(`registering the schema: ${response.status} ${await response.text()}`)
  return target
}

const ROOT_KEY = 'bench-root-key-0123456789abcdef'
const JWT_SECRET = 'bench-jwt-secret-0123456789abcdef0123456789'

/**
 * Herald with a root key and a JWT secret; requests carry the root key, a scoped key (publish on
 * `bench`, made through /v1/keys) or an HS256 token (publish on `bench`, an hour long).
 */
async function startWithCredentials(
  kind: 'root' | 'key' | 'jwt',
): Promise<Target & { headers: Record<string, string> }> {
  // sync=normal: no fsync per commit, whose time varies from one commit to the next far more than
  // checking credentials costs; the three differ only in what the requests carry.
  const target = await startHerald(['--sqlite-sync', 'normal'], undefined, {
    HERALD_API_KEY: ROOT_KEY,
    HERALD_JWT_SECRET: JWT_SECRET,
  })
  let token = ROOT_KEY
  if (kind === 'key') {
    const response = await fetch(`${target.url}/v1/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ROOT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench', scopes: [{ actions: ['publish'], topics: ['bench'] }] }),
    })
    if (response.status !== 201)
      throw new Error(`creating the bench key: ${response.status} ${await response.text()}`)
    token = ((await response.json()) as { key: string }).key
  } else if (kind === 'jwt') {
    token = await new SignJWT({ herald: { publish: ['bench'] } })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('bench')
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(JWT_SECRET))
  }
  return { ...target, headers: { authorization: `Bearer ${token}` } }
}

/**
 * BENCH_ONLY=<comma or | list>: only the scenarios whose name contains one of them (e.g.
 * `BENCH_ONLY=root key,scoped key,JWT` compares the credentials alone, in more rounds for less noise).
 */
const ONLY_TEXT = process.env['BENCH_ONLY']
// `|` separates the parts when one of them holds a comma (`sync=normal|schema-validated`).
const ONLY = ONLY_TEXT?.split(ONLY_TEXT.includes('|') ? '|' : ',').filter((part) => part !== '')
const SCENARIOS =
  ONLY === undefined ? ALL_SCENARIOS : ALL_SCENARIOS.filter((s) => ONLY.some((part) => s.name.includes(part)))

async function measure(scenario: Scenario): Promise<LoadResult> {
  const target = await scenario.start()
  try {
    const result = await post(`${target.url}${PATH}`, scenario.body, {
      connections: scenario.connections,
      seconds: SECONDS,
      warmupSeconds: WARMUP,
      serverPid: target.child.pid,
      ...(target.headers === undefined ? {} : { headers: target.headers }),
    })
    if (result.non2xx > 0 || result.errors > 0) {
      throw new Error(`${scenario.name}: ${result.non2xx} non-2xx answers and ${result.errors} errors`)
    }
    return result
  } finally {
    await target.stop()
  }
}

function median(results: LoadResult[]): LoadResult {
  const sorted = [...results].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond)
  return sorted[Math.floor(sorted.length / 2)]!
}

export async function runIngest(): Promise<string> {
  const runs = new Map<Scenario, LoadResult[]>(SCENARIOS.map((scenario) => [scenario, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (const scenario of SCENARIOS) {
      const result = await measure(scenario)
      runs.get(scenario)!.push(result)
      process.stderr.write(
        `round ${r + 1}: ${scenario.name}: ${round(result.requestsPerSecond)} requests/s, ${round(result.serverCpuUsPerRequest, 1)} server CPU µs/request\n`,
      )
    }
  }
  const medians = new Map(SCENARIOS.map((scenario) => [scenario, median(runs.get(scenario)!)]))
  const rps = (index: number) => medians.get(SCENARIOS[index]!)!.requestsPerSecond
  const rows = SCENARIOS.map((scenario) => {
    const result = medians.get(scenario)!
    const all = runs.get(scenario)!.map((run) => round(run.requestsPerSecond))
    return [
      scenario.name,
      scenario.connections,
      scenario.eventsPerRequest,
      round(result.requestsPerSecond),
      round(result.requestsPerSecond * scenario.eventsPerRequest),
      result.latencyP50Ms,
      result.latencyP99Ms,
      round(medianOf(runs.get(scenario)!.map((run) => run.serverCpuUsPerRequest)), 1),
      all.join(' / '),
    ]
  })
  const percent = (a: number, b: number) =>
    a < 0 || b < 0 ? 'not measured' : `${round((100 * rps(a)) / rps(b), 1)}%`
  // Each round measures the targets one after the other: the ratio within a round leaves out the
  // machine's drift from one round to the next.
  const paired = (a: number, b: number) => {
    if (a < 0 || b < 0) return 'not measured'
    const [ra, rb] = [runs.get(SCENARIOS[a]!)!, runs.get(SCENARIOS[b]!)!]
    return `${round(100 * medianOf(ra.map((run, i) => run.requestsPerSecond / rb[i]!.requestsPerSecond)), 1)}%`
  }
  const cpu = (index: number) =>
    index < 0
      ? 'not measured'
      : round(medianOf(runs.get(SCENARIOS[index]!)!.map((run) => run.serverCpuUsPerRequest)), 1)
  const at = (prefix: string) => SCENARIOS.findIndex((scenario) => scenario.name.startsWith(prefix))
  const [bare, full, normal, bareBatch, batch] = [
    at('bare Fastify route (baseline)'),
    at('Herald, single events, sync=full'),
    at('Herald, single events, sync=normal'),
    at('bare Fastify route, 100-event body'),
    at('Herald, batches of 100, sync=full'),
  ]
  return [
    `Ingest: median of ${ROUNDS} rounds, ${SECONDS} s each after ${WARMUP} s of warm-up; ${os.cpus().length} CPUs, Node ${process.version}`,
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
        'requests/s by round',
      ],
      rows,
    ),
    '',
    `Herald single-event durable publish (sync=full): ${percent(full, bare)} of the bare route's requests/s (target ≥ 50%).`,
    `Access control: a scoped key gets ${percent(at('Herald, single events, scoped key'), at('Herald, single events, root key'))} and a JWT ${percent(at('Herald, single events, JWT'), at('Herald, single events, root key'))} of the root key's requests/s (medians; target ≥ 95%); paired round by round (median of each round's ratio): ${paired(at('Herald, single events, scoped key'), at('Herald, single events, root key'))} and ${paired(at('Herald, single events, JWT'), at('Herald, single events, root key'))}; server CPU µs/request: root key ${cpu(at('Herald, single events, root key'))}, scoped key ${cpu(at('Herald, single events, scoped key'))}, JWT ${cpu(at('Herald, single events, JWT'))}.`,
    `With sync=normal: ${percent(normal, bare)}. Batches of 100 (sync=full): ${percent(batch, bareBatch)} of the bare route's requests/s with the same body.`,
    `Schema validation (event types): single events ${percent(at('Herald, single events, schema-validated'), normal)} of the same publish without a registered type (sync=normal; paired round by round: ${paired(at('Herald, single events, schema-validated'), normal)}); batches of 100 ${percent(at('Herald, batches of 100, schema-validated'), batch)} (paired: ${paired(at('Herald, batches of 100, schema-validated'), batch)}), and ${percent(at('Herald, batches of 100, schema-validated'), at('Herald, batches of 100, dataschema sent'))} of the same batch carrying a dataschema as long as the stamped one, no type registered (paired: ${paired(at('Herald, batches of 100, schema-validated'), at('Herald, batches of 100, dataschema sent'))}): the validation alone. Target ≥ 90%.`,
    ...(BEFORE === undefined
      ? []
      : [
          `Herald at ${BEFORE} (sync=full): ${percent(at('Herald at '), bare)} of the bare route's requests/s.`,
          `Batches of 100 (sync=full), this checkout against ${BEFORE}: ${percent(batch, at(`Herald at ${BEFORE}, batches`))} (paired round by round: ${paired(batch, at(`Herald at ${BEFORE}, batches`))}); events/s ${round(rps(batch) * 100)} against ${at(`Herald at ${BEFORE}, batches`) < 0 ? 'not measured' : round(rps(at(`Herald at ${BEFORE}, batches`)) * 100)} (target ≥ 150,000).`,
        ]),
  ].join('\n')
}

if (import.meta.main) {
  process.stdout.write(`${await runIngest()}\n`)
  // With the credentials' end-to-end rows, what checking them costs in process (far less noisy).
  if (SCENARIOS.some((scenario) => scenario.name.includes('key,'))) {
    process.stdout.write(`\n${await runAccessCheck()}\n`)
  }
  // With the validated rows, what the check costs in process, per event.
  if (SCENARIOS.some((scenario) => scenario.name.includes('schema-validated'))) {
    process.stdout.write(`\n${await runSchemaCheck()}\n`)
  }
}
