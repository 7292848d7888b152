// Cluster: 1 node against 3 nodes on one PostgreSQL schema, with Redis and with NATS as the bus, side
// by side in one run (alternating rounds, medians).
//   npm run bench:cluster
//
// Needs the machine's PostgreSQL, Redis and NATS (the same as the cluster tests):
//   HERALD_TEST_DATABASE_URL   postgres://postgres@127.0.0.1:5432/test
//   HERALD_TEST_REDIS_URL      redis://127.0.0.1:6379
//   HERALD_TEST_NATS_URL       nats://127.0.0.1:4222
// Each configuration runs on a schema of its own (bench_cl_<pid>_…), dropped afterwards.
//
// Environment, with defaults:
//   BENCH_CONFIGS=redis:1,redis:3,nats:1,nats:3   bus:nodes, measured in this order each round
//   BENCH_ROUNDS=3
//   BENCH_SECONDS=5                 each measurement (latency, publish, fan-out)
//   BENCH_LATENCY_RATE=50           events/s published to node 1 during the latency measurement
//   BENCH_PUBLISH_CONNECTIONS=32    concurrent publishers (autocannon) in the publish measurement
//   BENCH_SUBSCRIBERS=2000          WebSocket subscribers in the fan-out measurement, spread over the nodes
//   BENCH_RATE=25                   events/s published (round robin over the nodes) during the fan-out
//
// Per configuration (fresh nodes, fresh schema):
//   - latency: one WebSocket subscriber on node 1 (the publishing node) and, with several nodes, one
//     on node 2 (the bus hop); events published one at a time to node 1 at BENCH_LATENCY_RATE;
//     publish (before the HTTP request) to receipt, same clock;
//   - publish: autocannon POSTs single events to every node (connections split evenly), no
//     subscriber: publishes/s, the nodes' CPU per publish (/proc, all threads, summed over the
//     nodes), PostgreSQL commits/s (pg_stat_database.xact_commit of the database: shared with
//     whatever else runs on it, hence the load column), bus messages/s (herald_bus_messages_total);
//   - fan-out: BENCH_SUBSCRIBERS WebSocket subscribers (bench/fanout-client.ts, one process per node),
//     BENCH_RATE events/s round robin over the nodes: delivered events/s, events lost after a drain,
//     latency on 1 subscriber in 50, the nodes' CPU per delivered event.
import { type ChildProcess, fork } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os, { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import WebSocket from 'ws'
import type { ClientCommand, ClientOptions, ClientReport, SubscriberSpec } from './fanout-client.ts'
import {
  BENCH_HERALD_ENV,
  cpuSeconds,
  heraldListening,
  post,
  ROOT,
  round,
  startProcess,
  type Target,
  table,
} from './lib.ts'

type Bus = 'redis' | 'nats'
interface Config {
  bus: Bus
  nodes: number
}

const env = process.env
const DATABASE_URL = env['HERALD_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'
const BUS_URLS: Record<Bus, string> = {
  redis: env['HERALD_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379',
  nats: env['HERALD_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222',
}
const CONFIGS: Config[] = (env['BENCH_CONFIGS'] ?? 'redis:1,redis:3,nats:1,nats:3').split(',').map((item) => {
  const [bus, nodes] = item.trim().split(':')
  if ((bus !== 'redis' && bus !== 'nats') || !(Number(nodes) >= 1)) throw new Error(`BENCH_CONFIGS: ${item}`)
  return { bus, nodes: Number(nodes) }
})
const ROUNDS = Number(env['BENCH_ROUNDS'] ?? 3)
const SECONDS = Number(env['BENCH_SECONDS'] ?? 5)
const LATENCY_RATE = Number(env['BENCH_LATENCY_RATE'] ?? 50)
const PUBLISH_CONNECTIONS = Number(env['BENCH_PUBLISH_CONNECTIONS'] ?? 32)
const SUBSCRIBERS = Number(env['BENCH_SUBSCRIBERS'] ?? 2_000)
const RATE = Number(env['BENCH_RATE'] ?? 25)
const SAMPLE_EVERY = 50
const TOPIC = 'bench'
const EVENT_BODY = JSON.stringify({
  type: 'order.created',
  data: { order: 12345, total: 99.5, currency: 'EUR' },
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const now = () => performance.timeOrigin + performance.now()
const log = (line: string) => process.stderr.write(`${line}\n`)
const load = () => os.loadavg()[0]!

// Whatever the run started is killed on the way out, even on an error or Ctrl-C.
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))

async function query<Row extends pg.QueryResultRow>(sql: string): Promise<Row[]> {
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  try {
    return (await client.query<Row>(sql)).rows
  } finally {
    await client.end()
  }
}

async function commitsSoFar(): Promise<number> {
  // a fresh snapshot of the statistics (they are otherwise cached for the transaction)
  const rows = await query<{ commits: string }>(
    'SELECT xact_commit AS commits FROM pg_stat_database WHERE datname = current_database()',
  )
  return Number(rows[0]!.commits)
}

// ---------------------------------------------------------------------------------------------
// The cluster: N `herald serve` processes on one schema and one bus.

interface Cluster {
  nodes: Target[]
  schema: string
  stop(): Promise<void>
}

let schemas = 0

async function startCluster(config: Config): Promise<Cluster> {
  const schema = `bench_cl_${process.pid}_${schemas++}_${config.bus}_${config.nodes}`
  const dataDir = await mkdtemp(join(tmpdir(), 'herald-bench-cluster-'))
  const nodes: Target[] = []
  const stop = async () => {
    await Promise.all(
      nodes.map(async (node) => {
        if (node.child.exitCode !== null || node.child.signalCode !== null) return
        await Promise.race([node.stop(), sleep(10_000)])
        node.child.kill('SIGKILL')
      }),
    )
    await query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await rm(dataDir, { recursive: true, force: true })
  }
  try {
    const started = await Promise.all(
      Array.from({ length: config.nodes }, (_, index) =>
        startProcess(
          `n${index + 1}`,
          [
            join(ROOT, 'src/cli/main.ts'),
            'serve',
            '--port',
            '0',
            '--data',
            dataDir,
            '--max-connections',
            String(SUBSCRIBERS + 1_000),
            '--max-connections-per-ip',
            String(SUBSCRIBERS + 100),
          ],
          heraldListening,
          {
            ...process.env,
            ...BENCH_HERALD_ENV,
            HERALD_DATABASE_URL: DATABASE_URL,
            HERALD_DATABASE_SCHEMA: schema,
            HERALD_BUS_URL: BUS_URLS[config.bus],
            HERALD_NODE_ID: `n${index + 1}`,
          },
        ).then((node) => {
          children.add(node.child)
          nodes.push(node)
          return node
        }),
      ),
    )
    nodes.sort((a, b) => a.name.localeCompare(b.name))
    for (const node of started) {
      for (let tries = 0; ; tries++) {
        const response = await fetch(`${node.url}/readyz`).catch(() => undefined)
        if (response?.status === 200) break
        if (tries > 100) throw new Error(`${node.name} not ready`)
        await sleep(100)
      }
    }
  } catch (error) {
    await stop()
    throw error
  }
  return { nodes, schema, stop }
}

async function publish(node: Target, payload: { t: number; n: number }): Promise<void> {
  const response = await fetch(`${node.url}/v1/topics/${TOPIC}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'bench', data: payload }),
    signal: AbortSignal.timeout(30_000),
  })
  await response.arrayBuffer()
  if (response.status !== 201) throw new Error(`publish to ${node.name}: HTTP ${response.status}`)
}

/** Sums a counter of every node's /metrics (all label sets matching `labels`, e.g. `direction="sent"`). */
async function metric(nodes: Target[], name: string, labels = ''): Promise<number> {
  let total = 0
  for (const node of nodes) {
    const text = await (await fetch(`${node.url}/metrics`)).text()
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue
      const rest = line.slice(name.length)
      if (rest[0] !== ' ' && rest[0] !== '{') continue
      if (labels && !rest.includes(labels)) continue
      total += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
  }
  return total
}

const nodesCpu = (nodes: Target[]) => nodes.reduce((total, node) => total + cpuSeconds(node.child.pid), 0)

function percentile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}

// ---------------------------------------------------------------------------------------------
// Latency: a subscriber on the publishing node, one on another node.

function wsSubscriber(node: Target, onEvent: (payload: { t: number; n: number }, at: number) => void) {
  return new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(`${node.url.replace('http:', 'ws:')}/v1/ws`, { perMessageDeflate: false })
    let subscribed = false
    socket.on('open', () => socket.send(JSON.stringify({ op: 'subscribe', topic: TOPIC })))
    socket.on('message', (data: Buffer) => {
      const at = now()
      const message = JSON.parse(data.toString()) as {
        op?: string
        event?: { data?: { t: number; n: number } }
      }
      if (!subscribed) {
        if (message.op === 'subscribed') {
          subscribed = true
          resolve(socket)
        } else reject(new Error(`unexpected first message: ${data.toString().slice(0, 200)}`))
        return
      }
      if (message.op === 'event' && typeof message.event?.data?.t === 'number')
        onEvent(message.event.data, at)
    })
    socket.on('error', reject)
  })
}

interface LatencyResult {
  samples: { same: number[]; other: number[] }
  lost: { same: number; other: number }
}

async function measureLatency(cluster: Cluster): Promise<LatencyResult> {
  const places = cluster.nodes.length > 1 ? (['same', 'other'] as const) : (['same'] as const)
  const samples = { same: [] as number[], other: [] as number[] }
  const seen = { same: new Set<number>(), other: new Set<number>() }
  const sockets = await Promise.all(
    places.map((place) =>
      wsSubscriber(cluster.nodes[place === 'same' ? 0 : 1]!, (payload, at) => {
        if (payload.n <= 0 || seen[place].has(payload.n)) return
        seen[place].add(payload.n)
        samples[place].push(at - payload.t)
      }),
    ),
  )
  const publisher = cluster.nodes[0]!
  const total = Math.round(SECONDS * LATENCY_RATE)
  const start = now()
  for (let n = 1; n <= total; n++) {
    await sleep(start + (n - 1) * (1000 / LATENCY_RATE) - now())
    await publish(publisher, { t: now(), n })
  }
  const deadline = Date.now() + 5_000
  while (Date.now() < deadline && places.some((place) => seen[place].size < total)) await sleep(20)
  for (const socket of sockets) socket.terminate()
  return {
    samples,
    lost: { same: total - seen.same.size, other: places.length > 1 ? total - seen.other.size : 0 },
  }
}

// ---------------------------------------------------------------------------------------------
// Publish: no subscriber, as fast as PUBLISH_CONNECTIONS publishers go.

interface PublishResult {
  publishesPerSecond: number
  cpuUsPerPublish: number
  commitsPerSecond: number
  busSentPerSecond: number
  busReceivedPerSecond: number
  p99Ms: number
  failures: number
}

async function measurePublish(cluster: Cluster): Promise<PublishResult> {
  const { nodes } = cluster
  const connections = Math.max(1, Math.floor(PUBLISH_CONNECTIONS / nodes.length))
  const run = (seconds: number) =>
    Promise.all(
      nodes.map((node) =>
        post(`${node.url}/v1/topics/${TOPIC}/events`, EVENT_BODY, { connections, seconds }),
      ),
    )
  await run(1) // warm-up
  const before = {
    cpu: nodesCpu(nodes),
    commits: await commitsSoFar(),
    published: await metric(nodes, 'herald_events_published_total'),
    sent: await metric(nodes, 'herald_bus_messages_total', 'direction="sent"'),
    received: await metric(nodes, 'herald_bus_messages_total', 'direction="received"'),
    at: now(),
  }
  const results = await run(SECONDS)
  const cpu = nodesCpu(nodes) - before.cpu
  const elapsed = (now() - before.at) / 1000
  // pg_stat_database is flushed by each backend at most once a second: let the last flush happen
  await sleep(1_100)
  const commits = (await commitsSoFar()) - before.commits
  const published = (await metric(nodes, 'herald_events_published_total')) - before.published
  const sent = (await metric(nodes, 'herald_bus_messages_total', 'direction="sent"')) - before.sent
  const received =
    (await metric(nodes, 'herald_bus_messages_total', 'direction="received"')) - before.received
  return {
    publishesPerSecond: published / elapsed,
    cpuUsPerPublish: (cpu * 1e6) / published,
    commitsPerSecond: commits / elapsed,
    busSentPerSecond: sent / elapsed,
    busReceivedPerSecond: received / elapsed,
    p99Ms: Math.max(...results.map((result) => result.latencyP99Ms)),
    failures: results.reduce((total, result) => total + result.non2xx + result.errors, 0),
  }
}

// ---------------------------------------------------------------------------------------------
// Fan-out: SUBSCRIBERS WebSocket subscribers spread over the nodes, a steady publish rate.

class SubscriberProcess {
  readonly child: ChildProcess
  private readonly waiters = new Map<string, (report: ClientReport) => void>()

  constructor(options: ClientOptions) {
    this.child = fork(join(ROOT, 'bench/fanout-client.ts'), [JSON.stringify(options)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    })
    children.add(this.child)
    this.child.on('error', () => {})
    this.child.on('message', (report: ClientReport) => {
      const waiter = this.waiters.get(report.type)
      this.waiters.delete(report.type)
      waiter?.(report)
    })
  }

  request<T extends ClientReport['type']>(
    type: T,
    command?: ClientCommand,
  ): Promise<Extract<ClientReport, { type: T }>> {
    const answer = new Promise<ClientReport>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`subscriber process: no ${type} in 120 s`)), 120_000)
      this.waiters.set(type, (report) => {
        clearTimeout(timer)
        resolve(report)
      })
    })
    if (command) this.child.send(command)
    return answer as Promise<Extract<ClientReport, { type: T }>>
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve))
      this.child.kill('SIGKILL')
      await exited
    }
    children.delete(this.child)
  }
}

let sourceAddresses = 0

interface FanoutResult {
  subscribers: number
  published: number
  deliveredPerSecond: number
  expectedPerSecond: number
  lost: number
  p50Ms: number
  p99Ms: number
  cpuUsPerEvent: number
  busReceivedPerSecond: number
}

async function measureFanout(cluster: Cluster): Promise<FanoutResult> {
  const { nodes } = cluster
  const processes = nodes.map((node, index) => {
    const k = sourceAddresses++
    const spec: SubscriberSpec = {
      kind: 'ws',
      url: `${node.url.replace('http:', 'ws:')}/v1/ws`,
      subscribe: JSON.stringify({ op: 'subscribe', topic: TOPIC }),
      readyMarker: '"op":"subscribed"',
      eventMarker: '"op":"event"',
    }
    const share = Math.floor(SUBSCRIBERS / nodes.length) + (index < SUBSCRIBERS % nodes.length ? 1 : 0)
    return new SubscriberProcess({
      spec,
      connections: share,
      localAddress: `127.0.${2 + Math.floor(k / 254)}.${1 + (k % 254)}`,
      sampleEvery: SAMPLE_EVERY,
      connectConcurrency: 10,
    })
  })
  try {
    const connected = await Promise.all(processes.map((each) => each.request('connected')))
    const open = connected.reduce((total, report) => total + report.open, 0)
    if (open < SUBSCRIBERS) {
      throw new Error(
        `${SUBSCRIBERS - open} subscribers failed: ${connected.find((r) => r.firstError)?.firstError}`,
      )
    }
    await Promise.all(processes.map((each) => each.request('marked', { op: 'mark' })))
    const before = {
      cpu: nodesCpu(nodes),
      received: await metric(nodes, 'herald_bus_messages_total', 'direction="received"'),
      at: now(),
    }
    const total = Math.round(SECONDS * RATE)
    const start = now()
    const inFlight: Promise<void>[] = []
    for (let n = 1; n <= total; n++) {
      await sleep(start + (n - 1) * (1000 / RATE) - now())
      inFlight.push(publish(nodes[n % nodes.length]!, { t: now(), n }))
    }
    await Promise.all(inFlight)
    await sleep(start + SECONDS * 1000 - now())
    const window = await Promise.all(processes.map((each) => each.request('snapshot', { op: 'snapshot' })))
    const elapsed = (now() - before.at) / 1000
    const cpu = nodesCpu(nodes) - before.cpu
    const received =
      (await metric(nodes, 'herald_bus_messages_total', 'direction="received"')) - before.received
    const inWindow = window.reduce((sum, report) => sum + report.events, 0)
    const latencies = window.flatMap((report) => [...report.latencies])
    // then whatever was still on its way, for the count of lost events
    let delivered = inWindow
    const deadline = Date.now() + 15_000
    while (delivered < total * SUBSCRIBERS && Date.now() < deadline) {
      await sleep(250)
      const reports = await Promise.all(processes.map((each) => each.request('snapshot', { op: 'snapshot' })))
      delivered = reports.reduce((sum, report) => sum + report.events, 0)
      for (const report of reports) latencies.push(...report.latencies)
    }
    return {
      subscribers: open,
      published: total,
      deliveredPerSecond: inWindow / elapsed,
      expectedPerSecond: RATE * SUBSCRIBERS,
      lost: total * SUBSCRIBERS - delivered,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      cpuUsPerEvent: (cpu * 1e6) / inWindow,
      busReceivedPerSecond: received / elapsed,
    }
  } finally {
    await Promise.all(processes.map((each) => each.close()))
  }
}

// ---------------------------------------------------------------------------------------------

interface RoundResult {
  config: Config
  load: [number, number]
  latency: LatencyResult
  publish: PublishResult
  fanout: FanoutResult
}

const label = (config: Config) =>
  `${config.nodes} node${config.nodes > 1 ? 's' : ''}, ${config.bus === 'redis' ? 'Redis' : 'NATS'}`

async function measure(config: Config): Promise<RoundResult> {
  const loadBefore = load()
  const cluster = await startCluster(config)
  try {
    // the topic exists from its first event on
    await publish(cluster.nodes[0]!, { t: now(), n: 0 })
    const latency = await measureLatency(cluster)
    const publishResult = await measurePublish(cluster)
    const fanout = await measureFanout(cluster)
    return { config, load: [loadBefore, load()], latency, publish: publishResult, fanout }
  } finally {
    await cluster.stop()
  }
}

const median = (values: number[]) => percentile(values, 0.5)

function report(rounds: RoundResult[][]): string {
  const lines: string[] = []
  lines.push(
    `Cluster: ${CONFIGS.map(label).join(' / ')}; ${ROUNDS} round(s), medians of each column over the rounds; ` +
      `${os.cpus().length} CPUs, Node ${process.version}; ${SECONDS} s per measurement.`,
  )
  lines.push('')
  const rows = CONFIGS.map((config, index) => {
    const results = rounds.map((each) => each[index]!)
    const m = (pick: (result: RoundResult) => number) => median(results.map(pick))
    const sameP99 = m((r) => percentile(r.latency.samples.same, 0.99))
    const otherP99 = config.nodes > 1 ? m((r) => percentile(r.latency.samples.other, 0.99)) : Number.NaN
    const dash = (value: number, digits = 1) => (Number.isNaN(value) ? '–' : round(value, digits))
    return {
      latency: [
        label(config),
        results.reduce((total, r) => total + r.latency.samples.same.length, 0),
        dash(m((r) => percentile(r.latency.samples.same, 0.5))),
        dash(sameP99),
        dash(config.nodes > 1 ? m((r) => percentile(r.latency.samples.other, 0.5)) : Number.NaN),
        dash(otherP99),
        dash(otherP99 - sameP99),
        results
          .map(
            (r) =>
              `${round(percentile(r.latency.samples.same, 0.99), 1)}/${config.nodes > 1 ? round(percentile(r.latency.samples.other, 0.99), 1) : '–'}`,
          )
          .join(' · '),
        results.reduce((total, r) => total + r.latency.lost.same + r.latency.lost.other, 0),
      ],
      publish: [
        label(config),
        round(m((r) => r.publish.publishesPerSecond)),
        round(
          m((r) => r.publish.cpuUsPerPublish),
          1,
        ),
        round(m((r) => r.publish.commitsPerSecond)),
        round(m((r) => r.publish.busSentPerSecond)),
        round(m((r) => r.publish.busReceivedPerSecond)),
        round(m((r) => r.publish.p99Ms)),
        results.map((r) => round(r.publish.publishesPerSecond)).join(' / '),
        results.reduce((total, r) => total + r.publish.failures, 0),
      ],
      fanout: [
        label(config),
        round(m((r) => r.fanout.subscribers)),
        RATE,
        round(m((r) => r.fanout.deliveredPerSecond)),
        round(RATE * SUBSCRIBERS),
        dash(m((r) => r.fanout.p50Ms)),
        dash(m((r) => r.fanout.p99Ms)),
        round(
          m((r) => r.fanout.cpuUsPerEvent),
          1,
        ),
        round(m((r) => r.fanout.busReceivedPerSecond)),
        results.reduce((total, r) => total + r.fanout.lost, 0),
        results.map((r) => round(r.fanout.deliveredPerSecond)).join(' / '),
      ],
      load: [
        label(config),
        results.map((r) => `${r.load[0].toFixed(2)}→${r.load[1].toFixed(2)}`).join(' · '),
      ],
    }
  })
  lines.push(
    `Latency: ${LATENCY_RATE} events/s published one at a time to node 1; a WebSocket subscriber on node 1 (same node) and on node 2 (other node); publish (before the HTTP request) to receipt.`,
  )
  lines.push('')
  lines.push(
    table(
      [
        'configuration',
        'events (all rounds)',
        'same node p50 ms',
        'same node p99 ms',
        'other node p50 ms',
        'other node p99 ms',
        'other − same p99 ms',
        'p99 same/other by round',
        'lost',
      ],
      rows.map((row) => row.latency),
    ),
  )
  lines.push('')
  lines.push(
    `Publish: ${PUBLISH_CONNECTIONS} autocannon connections split over the nodes, single events, no subscriber. CPU: all nodes' processes (/proc, user + system, all threads) over published events. Commits: pg_stat_database.xact_commit of the whole database.`,
  )
  lines.push('')
  lines.push(
    table(
      [
        'configuration',
        'publishes/s',
        'nodes CPU µs/publish',
        'PostgreSQL commits/s',
        'bus sent/s',
        'bus received/s',
        'p99 ms (worst node)',
        'publishes/s by round',
        'non-2xx',
      ],
      rows.map((row) => row.publish),
    ),
  )
  lines.push('')
  lines.push(
    `Fan-out: ${SUBSCRIBERS} WebSocket subscribers spread evenly over the nodes (one bench/fanout-client.ts process per node), ${RATE} events/s published round robin over the nodes; latency on 1 subscriber in ${SAMPLE_EVERY}. CPU: all nodes over delivered events (publishing included).`,
  )
  lines.push('')
  lines.push(
    table(
      [
        'configuration',
        'subscribers',
        'events/s published',
        'delivered events/s',
        'expected/s',
        'p50 ms',
        'p99 ms',
        'nodes CPU µs/delivered event',
        'bus received/s',
        'lost',
        'delivered/s by round',
      ],
      rows.map((row) => row.fanout),
    ),
  )
  lines.push('')
  lines.push(
    table(
      ['configuration', 'load average (1 min) before→after, by round'],
      rows.map((row) => row.load),
    ),
  )
  return lines.join('\n')
}

async function main(): Promise<void> {
  log(
    `bench:cluster: ${CONFIGS.map(label).join(', ')}; ${ROUNDS} rounds; load ${os
      .loadavg()
      .map((v) => v.toFixed(2))
      .join(' ')}`,
  )
  const rounds: RoundResult[][] = []
  for (let index = 0; index < ROUNDS; index++) {
    const results: RoundResult[] = []
    for (const config of CONFIGS) {
      log(`round ${index + 1}: ${label(config)} (load ${load().toFixed(2)})`)
      results.push(await measure(config))
    }
    rounds.push(results)
  }
  process.stdout.write(`${report(rounds)}\n`)
  log(
    `load at the end: ${os
      .loadavg()
      .map((v) => v.toFixed(2))
      .join(' ')}`,
  )
}

if (import.meta.main) {
  await main()
  process.exit(0)
}
