// Fan-out: one publisher, many subscribers on one topic, over SSE and WebSocket, side by side in one
// run with a bare node:http SSE loop, a bare `ws` broadcast loop, Socket.IO and Pushpin.
//   npm run bench:fanout
//
// Pushpin comes from Debian's packages (condure and zurl come with it); without it the Pushpin rows
// are skipped with a note:
//   apt-get update && apt-get install -y pushpin
//
// Environment, with defaults:
//   BENCH_TARGETS=bare-sse,bare-ws,socketio,pushpin,herald   which targets, in this order
//   BENCH_PROTOCOLS=sse,ws                 also ndjson (Herald only); bare-sse is SSE only, bare-ws and
//                                          Socket.IO WebSocket only
//   BENCH_BASE_ROOT                        another checkout of Herald (e.g. a `git archive` of the branch
//                                          point, with a node_modules symlink): adds the target herald-base,
//                                          Herald from there, to compare two commits in one run
//   BENCH_PHASES=memory,throughput,latency
//   BENCH_SUBSCRIBERS=10000                subscribers for throughput and latency
//   BENCH_IDLE_CONNECTIONS=15000           idle connections for the memory measurement
//   BENCH_SECONDS=10                       throughput measurement
//   BENCH_LATENCY_SECONDS=15, BENCH_LATENCY_RATE=10   latency measurement, events/s
//   BENCH_INFLIGHT=8, BENCH_WINDOW=50000/BENCH_SUBSCRIBERS (at least 2)
//                                          publisher flow control (see publishAsFastAsDelivered)
//   BENCH_CONNECTIONS_PER_CLIENT=2500      connections per subscriber process (bench/fanout-client.ts)
//   BENCH_SAMPLE_EVERY=50                  one connection in this many parses events, for latency
//   BENCH_CONNECT_CONCURRENCY=10           connections each subscriber process opens at once
//
// For each target and protocol, on a fresh server each time (memory on one, fan-out on another):
//   - preflight: one subscriber and one event; a target whose endpoint is not there is skipped with a
//     note (Herald's stream endpoints, before they existed);
//   - memory: VmRSS of the server's process tree (/proc) before and after opening the idle connections;
//   - throughput: events received by all subscribers per second while the publisher keeps up with the
//     slowest sampled subscriber; then every event must arrive, or the difference is reported lost;
//   - latency: BENCH_LATENCY_RATE events/s; receive time minus the publisher's timestamp, both
//     performance.timeOrigin + performance.now() on the same machine.
// Subscribers run in several processes (a process may hold at most ~20,000 files) and each process
// connects from its own loopback address (127.0.1.1, 127.0.1.2, …) so no address runs out of ports.
// They share the machine's cores with the server, and receiving an event costs them about as much
// as sending it costs the server: on 2 cores the absolute figures are the machine's, the ratios
// between targets are what to compare.
import { type ChildProcess, fork } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import type { ClientCommand, ClientOptions, ClientReport, SubscriberSpec } from './fanout-client.ts'
import { processTree, ROOT, round, rssKb, startHerald, startPeer, type Target, table } from './lib.ts'
import { startPushpin } from './peers/pushpin.ts'

type Protocol = 'sse' | 'ndjson' | 'ws'
type Phase = 'memory' | 'throughput' | 'latency'

const env = process.env
const list = (value: string | undefined, fallback: string) =>
  (value ?? fallback)
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean)
const BASE_ROOT = env['BENCH_BASE_ROOT']
const TARGET_NAMES = list(
  env['BENCH_TARGETS'],
  `bare-sse,bare-ws,socketio,pushpin,${BASE_ROOT ? 'herald-base,' : ''}herald`,
)
const PROTOCOLS = list(env['BENCH_PROTOCOLS'], 'sse,ws') as Protocol[]
const PHASES = list(env['BENCH_PHASES'], 'memory,throughput,latency') as Phase[]
const SUBSCRIBERS = Number(env['BENCH_SUBSCRIBERS'] ?? 10_000)
const IDLE_CONNECTIONS = Number(env['BENCH_IDLE_CONNECTIONS'] ?? 15_000)
const SECONDS = Number(env['BENCH_SECONDS'] ?? 10)
const LATENCY_SECONDS = Number(env['BENCH_LATENCY_SECONDS'] ?? 15)
const LATENCY_RATE = Number(env['BENCH_LATENCY_RATE'] ?? 10)
const INFLIGHT = Number(env['BENCH_INFLIGHT'] ?? 8)
// about 50,000 deliveries queued at most: enough to keep every target busy, few enough that the
// latency measured under this load is not just the queue
const WINDOW = Number(env['BENCH_WINDOW'] ?? Math.max(2, Math.round(50_000 / SUBSCRIBERS)))
const CONNECTIONS_PER_CLIENT = Number(env['BENCH_CONNECTIONS_PER_CLIENT'] ?? 2_500)
const SAMPLE_EVERY = Number(env['BENCH_SAMPLE_EVERY'] ?? 50)
const CONNECT_CONCURRENCY = Number(env['BENCH_CONNECT_CONCURRENCY'] ?? 10)

const CLIENT_SCRIPT = join(ROOT, 'bench/fanout-client.ts')
const TOPIC = 'bench'
const REQUEST_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 180_000
const SETTLE_TIMEOUT_MS = 30_000
const DRAIN_TIMEOUT_MS = 20_000

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
const now = () => performance.timeOrigin + performance.now()
const log = (line: string) => process.stderr.write(`${line}\n`)

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// ---------------------------------------------------------------------------------------------
// Cleanup: whatever the run started is killed on the way out, even on an error or Ctrl-C.

const killers = new Set<() => void>()

function onExit(): void {
  for (const kill of killers) {
    try {
      kill()
    } catch {}
  }
}

function killOnExit(child: ChildProcess): () => void {
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  killers.add(kill)
  return () => killers.delete(kill)
}

// ---------------------------------------------------------------------------------------------
// Memory of a server: VmRSS summed over its process tree (Pushpin is five processes).

/** CPU time (clock ticks) used so far by a process tree. */
function cpuTicks(pid: number): number {
  let total = 0
  for (const each of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${each}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      total += Number(fields[11]) + Number(fields[12])
    } catch {}
  }
  return total
}

/**
 * Waits until the server uses less than a tenth of a core, at most `maxMs`. Servers go on working
 * after connections open or close (Pushpin's handler needs seconds for 15,000 of them); the next
 * phase must not start while they are busy, or it measures the leftovers.
 */
async function waitUntilIdle(pid: number, maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs
  let previous = cpuTicks(pid)
  let quiet = 0
  while (quiet < 2 && Date.now() < deadline) {
    await sleep(500)
    const ticks = cpuTicks(pid)
    // 100 ticks per second: 5 ticks in 500 ms is a tenth of a core
    quiet = ticks - previous <= 5 ? quiet + 1 : 0
    previous = ticks
  }
}

// ---------------------------------------------------------------------------------------------
// Targets: how to start each one, subscribe to it and publish to it.

interface Payload {
  t: number
  n: number
}

interface RunningTarget {
  /** The server's pid (the root of its process tree). */
  pid: number
  subscriber(protocol: Protocol): SubscriberSpec
  publish(payload: Payload): Promise<void>
  stop(): Promise<void>
}

interface TargetDefinition {
  name: string
  label: string
  protocols: Protocol[]
  start(): Promise<RunningTarget>
}

async function postJson(url: string, body: string): Promise<void> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  await response.arrayBuffer()
  if (!response.ok) throw new Error(`POST ${url}: HTTP ${response.status}`)
}

/** Stops a process started with bench/lib.ts, with SIGKILL if SIGTERM has not ended it in 10 s. */
async function stopProcess(target: Target): Promise<void> {
  const { child } = target
  const running = () => child.exitCode === null && child.signalCode === null
  if (!running()) return
  await Promise.race([target.stop(), sleep(10_000)])
  if (running()) child.kill('SIGKILL')
}

/** A peer of bench/peers/ that prints `{"port":N}` once listening. */
async function startNodePeer(name: string, file: string): Promise<Target> {
  const peer = await startPeer(name, file)
  killOnExit(peer.child)
  return peer
}

function nodePeer(name: string, label: string, file: string, protocol: Protocol): TargetDefinition {
  return {
    name,
    label,
    protocols: [protocol],
    async start() {
      const peer = await startNodePeer(name, file)
      return {
        pid: peer.child.pid!,
        subscriber: () =>
          protocol === 'sse'
            ? {
                kind: 'sse',
                url: `${peer.url}/stream`,
                headers: { accept: 'text/event-stream' },
                contentType: 'text/event-stream',
              }
            : { kind: 'ws', url: peer.url.replace('http:', 'ws:') },
        publish: (payload) => postJson(`${peer.url}/publish`, JSON.stringify(payload)),
        stop: () => stopProcess(peer),
      }
    },
  }
}

/** Herald from this checkout (`root` ROOT) or from another one (BENCH_BASE_ROOT). */
function heraldTarget(name: string, label: string, root: string): TargetDefinition {
  return {
    name,
    label,
    protocols: ['sse', 'ndjson', 'ws'],
    async start() {
      const maxConnections = String(Math.max(IDLE_CONNECTIONS, SUBSCRIBERS) + 1_000)
      // Each subscriber process connects from its own address with up to CONNECTIONS_PER_CLIENT
      // connections, past the default --max-connections-per-ip (1000).
      const perAddress = String(CONNECTIONS_PER_CLIENT + 10)
      const herald = await withTimeout(
        startHerald(['--max-connections', maxConnections, '--max-connections-per-ip', perAddress], root),
        30_000,
        'herald did not print "herald is listening"',
      )
      killOnExit(herald.child)
      const removeData = () => rmSync(herald.dataDir, { recursive: true, force: true })
      killers.add(removeData)
      const publishUrl = `${herald.url}/v1/topics/${TOPIC}/events`
      const publish = (payload: Payload) =>
        postJson(publishUrl, JSON.stringify({ type: 'bench', data: payload }))
      try {
        // the topic exists from its first event on
        await publish({ t: now(), n: 0 })
      } catch (error) {
        await stopProcess(herald)
        removeData()
        throw error
      }
      return {
        pid: herald.child.pid!,
        subscriber: (protocol) =>
          protocol === 'sse' || protocol === 'ndjson'
            ? {
                kind: protocol,
                url: publishUrl,
                headers: { accept: CONTENT_TYPES[protocol] },
                contentType: CONTENT_TYPES[protocol],
              }
            : {
                kind: 'ws',
                url: `${herald.url.replace('http:', 'ws:')}/v1/ws`,
                subscribe: JSON.stringify({ op: 'subscribe', topic: TOPIC }),
                readyMarker: '"op":"subscribed"',
                eventMarker: '"op":"event"',
              },
        publish,
        stop: async () => {
          await stopProcess(herald)
          removeData()
          killers.delete(removeData)
        },
      }
    },
  }
}

const CONTENT_TYPES = { sse: 'text/event-stream', ndjson: 'application/x-ndjson' } as const

const TARGETS: TargetDefinition[] = [
  nodePeer('bare-sse', 'bare node:http SSE loop', 'bare-sse.ts', 'sse'),
  nodePeer('bare-ws', 'bare ws broadcast loop', 'bare-ws.ts', 'ws'),
  {
    name: 'socketio',
    label: 'Socket.IO 4',
    protocols: ['ws'],
    async start() {
      const peer = await startNodePeer('socketio', 'socketio.ts')
      return {
        pid: peer.child.pid!,
        subscriber: () => ({ kind: 'socketio', url: peer.url, event: 'event' }),
        publish: (payload) => postJson(`${peer.url}/publish`, JSON.stringify(payload)),
        stop: () => stopProcess(peer),
      }
    },
  },
  {
    name: 'pushpin',
    label: 'Pushpin',
    protocols: ['sse', 'ws'],
    async start() {
      const pushpin = await startPushpin()
      const kill = () => process.kill(-pushpin.pid, 'SIGKILL')
      killers.add(kill)
      return {
        pid: pushpin.pid,
        subscriber: (protocol) =>
          protocol === 'sse'
            ? // an HTTP stream (text/plain) carrying SSE frames, which the publisher writes itself
              { kind: 'sse', url: `${pushpin.url}/stream?channel=${TOPIC}`, headers: {} }
            : { kind: 'ws', url: `${pushpin.url.replace('http:', 'ws:')}/ws?channel=${TOPIC}` },
        publish: (payload) => {
          const data = JSON.stringify(payload)
          const item = {
            channel: TOPIC,
            formats: {
              'http-stream': { content: `id: ${payload.n}\ndata: ${data}\n\n` },
              'ws-message': { content: data },
            },
          }
          return postJson(pushpin.publishUrl, JSON.stringify({ items: [item] }))
        },
        stop: async () => {
          await pushpin.stop()
          killers.delete(kill)
        },
      }
    },
  },
  heraldTarget('herald', 'Herald', ROOT),
  ...(BASE_ROOT ? [heraldTarget('herald-base', `Herald at ${BASE_ROOT}`, BASE_ROOT)] : []),
]

// ---------------------------------------------------------------------------------------------
// Subscribers: child processes of bench/fanout-client.ts, a few thousand connections each.

let sourceAddresses = 0

/** A fresh loopback address for every subscriber process of the run: 127.0.1.1, 127.0.1.2, … */
function nextSourceAddress(): string {
  const k = sourceAddresses++
  return `127.0.${1 + Math.floor(k / 254)}.${1 + (k % 254)}`
}

class SubscriberProcess {
  readonly child: ChildProcess
  /** The highest event number all its sampled connections have received. */
  seen = 0
  private readonly waiters = new Map<
    string,
    { resolve(report: ClientReport): void; reject(e: Error): void }
  >()
  private readonly forget: () => void

  constructor(options: ClientOptions, onProgress: () => void) {
    this.child = fork(CLIENT_SCRIPT, [JSON.stringify(options)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    })
    this.forget = killOnExit(this.child)
    // a send racing the child's exit; the exit itself rejects whatever was waiting
    this.child.on('error', () => {})
    this.child.on('message', (report: ClientReport) => {
      if (report.type === 'progress') {
        this.seen = report.seen
        onProgress()
        return
      }
      const waiter = this.waiters.get(report.type)
      this.waiters.delete(report.type)
      waiter?.resolve(report)
    })
    this.child.once('exit', (code, signal) => {
      for (const waiter of this.waiters.values()) {
        waiter.reject(new Error(`subscriber process exited (${code ?? signal})`))
      }
      this.waiters.clear()
    })
  }

  /** Waits for the next report of this type, after sending the command if there is one. */
  request<T extends ClientReport['type']>(
    type: T,
    command?: ClientCommand,
    timeoutMs = REQUEST_TIMEOUT_MS,
  ): Promise<Extract<ClientReport, { type: T }>> {
    if (!this.child.connected) return Promise.reject(new Error(`subscriber process is gone (${type})`))
    const answer = new Promise<ClientReport>((resolve, reject) => this.waiters.set(type, { resolve, reject }))
    if (command) this.child.send(command)
    return withTimeout(answer, timeoutMs, `subscriber process (${type})`) as Promise<
      Extract<ClientReport, { type: T }>
    >
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve))
      if (this.child.connected) this.child.send({ op: 'close' } satisfies ClientCommand)
      await Promise.race([exited, sleep(5_000)])
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
    }
    this.forget()
  }
}

interface FleetSnapshot {
  events: number
  minEvents: number
  maxEvents: number
  open: number
  latencies: number[]
  firstClose: string | undefined
}

class Fleet {
  onProgress: (() => void) | undefined

  private readonly processes: SubscriberProcess[]
  readonly open: number
  readonly failed: number
  readonly firstError: string | undefined

  private constructor(processes: SubscriberProcess[], open: number, failed: number, firstError?: string) {
    this.processes = processes
    this.open = open
    this.failed = failed
    this.firstError = firstError
  }

  static async open(spec: SubscriberSpec, connections: number): Promise<Fleet> {
    const processes: SubscriberProcess[] = []
    let fleet: Fleet | undefined
    const onProgress = () => fleet?.onProgress?.()
    for (let first = 0; first < connections; first += CONNECTIONS_PER_CLIENT) {
      const options: ClientOptions = {
        spec,
        connections: Math.min(CONNECTIONS_PER_CLIENT, connections - first),
        localAddress: nextSourceAddress(),
        sampleEvery: SAMPLE_EVERY,
        connectConcurrency: CONNECT_CONCURRENCY,
      }
      processes.push(new SubscriberProcess(options, onProgress))
    }
    try {
      const reports = await Promise.all(
        processes.map((each) => each.request('connected', undefined, CONNECT_TIMEOUT_MS)),
      )
      const sum = (pick: (report: (typeof reports)[number]) => number) =>
        reports.reduce((total, report) => total + pick(report), 0)
      const firstError = reports.find((report) => report.firstError)?.firstError
      fleet = new Fleet(
        processes,
        sum((report) => report.open),
        sum((report) => report.failed),
        firstError,
      )
      return fleet
    } catch (error) {
      await Promise.all(processes.map((each) => each.close()))
      throw error
    }
  }

  /** The highest event number that every sampled subscriber has received. */
  watermark(): number {
    return Math.min(...this.processes.map((each) => each.seen))
  }

  /** Starts counting from zero. */
  async mark(): Promise<void> {
    await Promise.all(this.processes.map((each) => each.request('marked', { op: 'mark' })))
  }

  async snapshot(): Promise<FleetSnapshot> {
    const reports = await Promise.all(
      this.processes.map((each) => each.request('snapshot', { op: 'snapshot' })),
    )
    const latencies: number[] = []
    for (const report of reports) for (const value of report.latencies) latencies.push(value)
    return {
      events: reports.reduce((total, report) => total + report.events, 0),
      minEvents: Math.min(...reports.map((report) => report.minEvents)),
      maxEvents: Math.max(...reports.map((report) => report.maxEvents)),
      open: reports.reduce((total, report) => total + report.open, 0),
      latencies,
      firstClose: reports.find((report) => report.firstClose)?.firstClose,
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.processes.map((each) => each.close()))
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

interface MemoryResult {
  connections: number
  beforeKb: number
  afterKb: number
  kbPerConnection: number
}

interface ThroughputResult {
  subscribers: number
  publishesPerSecond: number
  deliveredPerSecond: number
  p50: number
  p99: number
  lost: number
  publishErrors: number
  closed: number
  firstClose: string | undefined
}

interface LatencyResult {
  subscribers: number
  published: number
  samples: number
  p50: number
  p99: number
  max: number
  lost: number
  publishErrors: number
}

interface CellResult {
  target: TargetDefinition
  protocol: Protocol
  notes: string[]
  memory?: MemoryResult
  throughput?: ThroughputResult
  latency?: LatencyResult
}

/** Numbers events across a cell, so that every payload is distinct and the window can follow them. */
class Publisher {
  private sequence = 0
  errors = 0
  published = 0
  firstError: string | undefined

  private readonly target: RunningTarget

  constructor(target: RunningTarget) {
    this.target = target
  }

  /** The number of the last event that a publish attempt went out with. */
  get last(): number {
    return this.sequence
  }

  /** The number of the last event the target accepted. */
  lastAccepted = 0

  async publish(): Promise<void> {
    this.sequence += 1
    const n = this.sequence
    try {
      await this.target.publish({ t: now(), n })
      this.published += 1
      this.lastAccepted = Math.max(this.lastAccepted, n)
    } catch (error) {
      this.errors += 1
      this.firstError ??= error instanceof Error ? error.message : String(error)
    }
  }
}

function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/**
 * Publishes probes until every subscriber has received one (their subscriptions are live), then
 * waits until the sampled subscribers have the last probe and nothing more arrives, so that the
 * next phase starts from a quiet state with the publisher's window open.
 */
async function settle(fleet: Fleet, publisher: Publisher): Promise<boolean> {
  await fleet.mark()
  let deadline = Date.now() + SETTLE_TIMEOUT_MS
  let everyoneHasOne = false
  while (!everyoneHasOne && Date.now() < deadline) {
    await publisher.publish()
    await sleep(250)
    everyoneHasOne = (await fleet.snapshot()).minEvents >= 1
  }
  deadline = Date.now() + SETTLE_TIMEOUT_MS
  let previous = -1
  while (Date.now() < deadline) {
    await sleep(300)
    const { events } = await fleet.snapshot()
    if (events === previous && fleet.watermark() >= publisher.lastAccepted) break
    previous = events
  }
  return everyoneHasOne
}

/** Waits until every subscriber has `expected` events, or until nothing has arrived for 2 s. */
async function drain(fleet: Fleet, expected: number, latencies: number[]): Promise<FleetSnapshot> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS
  let last = await fleet.snapshot()
  let lastChange = Date.now()
  for (const value of last.latencies) latencies.push(value)
  while (last.minEvents < expected && Date.now() < deadline && Date.now() - lastChange < 2_000) {
    await sleep(250)
    const next = await fleet.snapshot()
    for (const value of next.latencies) latencies.push(value)
    if (next.events !== last.events) lastChange = Date.now()
    last = next
  }
  return last
}

/**
 * As fast as the target delivers: at most INFLIGHT publish requests open, and at most WINDOW events
 * ahead of the slowest sampled subscriber, so that a target that accepts events faster than it
 * delivers them measures its delivery rate instead of piling events up in its memory.
 */
function publishAsFastAsDelivered(fleet: Fleet, publisher: Publisher, seconds: number): Promise<void> {
  const deadline = performance.now() + seconds * 1_000
  let inFlight = 0
  return new Promise((resolve) => {
    let done = false
    const pump = () => {
      while (
        inFlight < INFLIGHT &&
        performance.now() < deadline &&
        publisher.last - fleet.watermark() < WINDOW
      ) {
        inFlight += 1
        void publisher.publish().finally(() => {
          inFlight -= 1
          pump()
        })
      }
      if (!done && performance.now() >= deadline && inFlight === 0) {
        done = true
        clearInterval(timer)
        fleet.onProgress = undefined
        resolve()
      }
    }
    fleet.onProgress = pump
    const timer = setInterval(pump, 5)
    pump()
  })
}

async function measureMemory(target: RunningTarget, spec: SubscriberSpec): Promise<MemoryResult> {
  await waitUntilIdle(target.pid, 15_000)
  const beforeKb = rssKb(target.pid)
  const fleet = await Fleet.open(spec, IDLE_CONNECTIONS)
  try {
    if (fleet.failed > 0) log(`  ${fleet.failed} connections failed: ${fleet.firstError}`)
    await waitUntilIdle(target.pid, 30_000)
    await sleep(1_000)
    const afterKb = rssKb(target.pid)
    return {
      connections: fleet.open,
      beforeKb,
      afterKb,
      kbPerConnection: (afterKb - beforeKb) / fleet.open,
    }
  } finally {
    await fleet.close()
  }
}

async function measureThroughput(fleet: Fleet, publisher: Publisher): Promise<ThroughputResult> {
  await fleet.mark()
  const published = publisher.published
  const errors = publisher.errors
  const started = performance.now()
  await publishAsFastAsDelivered(fleet, publisher, SECONDS)
  const atDeadline = await fleet.snapshot()
  const elapsed = (performance.now() - started) / 1_000
  const count = publisher.published - published
  const latencies = [...atDeadline.latencies]
  const final = await drain(fleet, count, latencies)
  latencies.sort((a, b) => a - b)
  return {
    subscribers: fleet.open,
    publishesPerSecond: count / elapsed,
    deliveredPerSecond: atDeadline.events / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    lost: count * fleet.open - final.events,
    publishErrors: publisher.errors - errors,
    closed: fleet.open - final.open,
    firstClose: final.firstClose,
  }
}

async function measureLatency(fleet: Fleet, publisher: Publisher): Promise<LatencyResult> {
  await fleet.mark()
  const published = publisher.published
  const errors = publisher.errors
  const total = Math.round(LATENCY_RATE * LATENCY_SECONDS)
  const interval = 1_000 / LATENCY_RATE
  const started = performance.now()
  const requests: Promise<void>[] = []
  for (let i = 0; i < total; i++) {
    await sleep(started + i * interval - performance.now())
    requests.push(publisher.publish())
  }
  await Promise.all(requests)
  const count = publisher.published - published
  const latencies: number[] = []
  const final = await drain(fleet, count, latencies)
  latencies.sort((a, b) => a - b)
  return {
    subscribers: fleet.open,
    published: count,
    samples: latencies.length,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    max: latencies.at(-1) ?? Number.NaN,
    lost: count * fleet.open - final.events,
    publishErrors: publisher.errors - errors,
  }
}

/** Subscribes one connection and publishes until it receives an event; says what went wrong if not. */
async function preflight(spec: SubscriberSpec, publisher: Publisher): Promise<string | undefined> {
  const probe = await Fleet.open(spec, 1)
  try {
    if (probe.open === 0) return probe.firstError ?? 'could not subscribe'
    if (await settle(probe, publisher)) return undefined
    const why = publisher.firstError ? ` (publish: ${publisher.firstError})` : ''
    return `subscribed, but no event arrived within ${SETTLE_TIMEOUT_MS / 1000} s${why}`
  } finally {
    await probe.close()
  }
}

type Note = (line: string) => void

/**
 * Starts the target, checks with one subscriber and one event that it serves this protocol, runs
 * `measure`, and stops it. False when the target is not available.
 */
async function onFreshServer(
  definition: TargetDefinition,
  protocol: Protocol,
  note: Note,
  measure: (target: RunningTarget, spec: SubscriberSpec, publisher: Publisher) => Promise<void>,
): Promise<boolean> {
  let target: RunningTarget
  try {
    target = await definition.start()
  } catch (error) {
    note(`not available: ${error instanceof Error ? error.message : String(error)}`)
    return false
  }
  try {
    const spec = target.subscriber(protocol)
    const publisher = new Publisher(target)
    const problem = await preflight(spec, publisher)
    if (problem) {
      note(`not available: ${problem}`)
      return false
    }
    await measure(target, spec, publisher)
    if (publisher.errors > 0) note(`${publisher.errors} publishes failed: ${publisher.firstError}`)
    return true
  } finally {
    await target.stop()
  }
}

async function measureFanout(
  target: RunningTarget,
  spec: SubscriberSpec,
  publisher: Publisher,
  result: CellResult,
  note: Note,
  say: Note,
): Promise<void> {
  say(`opening ${SUBSCRIBERS} subscribers`)
  const fleet = await Fleet.open(spec, SUBSCRIBERS)
  try {
    if (fleet.failed > 0)
      note(`${fleet.failed} of ${SUBSCRIBERS} subscribers failed to connect: ${fleet.firstError}`)
    if (fleet.open === 0) return
    await waitUntilIdle(target.pid, 60_000)
    if (!(await settle(fleet, publisher))) {
      note(`some subscribers received no probe within ${SETTLE_TIMEOUT_MS / 1000} s`)
    }
    if (PHASES.includes('throughput')) {
      const throughput = await measureThroughput(fleet, publisher)
      result.throughput = throughput
      say(
        `${round(throughput.deliveredPerSecond)} events/s delivered (${round(throughput.publishesPerSecond)} publishes/s), ${throughput.lost} lost, ${throughput.closed} closed`,
      )
      if (throughput.closed > 0) {
        note(
          `${throughput.closed} subscribers were disconnected during the throughput run (${throughput.firstClose})`,
        )
      }
    }
    if (PHASES.includes('latency')) {
      const latency = await measureLatency(fleet, publisher)
      result.latency = latency
      say(`latency p50 ${round(latency.p50, 1)} ms, p99 ${round(latency.p99, 1)} ms, ${latency.lost} lost`)
      const offered = LATENCY_RATE * fleet.open
      const capacity = result.throughput?.deliveredPerSecond
      if (capacity !== undefined && offered > capacity) {
        note(
          `latency: ${round(offered)} deliveries/s offered is more than the ${round(capacity)}/s this target delivered flat out, so the latency measured is mostly queueing`,
        )
      }
    }
  } finally {
    await fleet.close()
  }
}

/**
 * One target and protocol. Memory is measured on one fresh server, fan-out on another: a server
 * that has just seen 15,000 connections close may still be cleaning up after them (Pushpin's
 * handler keeps WebSocket sessions for a while), which is not what the fan-out should measure.
 */
async function measureCell(definition: TargetDefinition, protocol: Protocol): Promise<CellResult> {
  const result: CellResult = { target: definition, protocol, notes: [] }
  const say: Note = (line) => log(`${definition.name} ${protocol}: ${line}`)
  const note: Note = (line) => {
    result.notes.push(line)
    say(line)
  }
  try {
    if (PHASES.includes('memory')) {
      const available = await onFreshServer(definition, protocol, note, async (target, spec) => {
        say(`opening ${IDLE_CONNECTIONS} idle connections`)
        const memory = await measureMemory(target, spec)
        result.memory = memory
        say(`${round(memory.kbPerConnection, 1)} KB per idle connection (${memory.connections} open)`)
        if (memory.connections < IDLE_CONNECTIONS) {
          note(`memory: only ${memory.connections} of ${IDLE_CONNECTIONS} connections opened`)
        }
      })
      if (!available) return result
    }
    if (PHASES.includes('throughput') || PHASES.includes('latency')) {
      await onFreshServer(definition, protocol, note, (target, spec, publisher) =>
        measureFanout(target, spec, publisher, result, note, say),
      )
    }
  } catch (error) {
    note(`failed: ${error instanceof Error ? error.message : String(error)}`)
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// Report

function ratio(value: number | undefined, base: number | undefined, style: 'percent' | 'times'): string {
  if (value === undefined || base === undefined || !(base > 0) || Number.isNaN(value)) return '–'
  return style === 'percent' ? `${round((100 * value) / base)}%` : `${round(value / base, 2)}×`
}

const ms = (value: number | undefined) => (value === undefined || Number.isNaN(value) ? '–' : round(value, 1))

function report(cells: CellResult[]): string {
  const find = (name: string, protocol: Protocol) =>
    cells.find((cell) => cell.target.name === name && cell.protocol === protocol)
  const bareName = (protocol: Protocol) => (protocol === 'ws' ? 'bare-ws' : 'bare-sse')
  // NDJSON is compared with the bare SSE loop: the same node:http answer that never ends
  const bareProtocol = (protocol: Protocol): Protocol => (protocol === 'ws' ? 'ws' : 'sse')
  const delivered = (cell: CellResult | undefined) => cell?.throughput?.deliveredPerSecond

  const throughputRows = cells
    .filter((cell) => cell.throughput)
    .map((cell) => {
      const t = cell.throughput!
      return [
        cell.target.label,
        cell.protocol,
        round(t.subscribers),
        round(t.publishesPerSecond),
        round(t.deliveredPerSecond),
        ms(t.p50),
        ms(t.p99),
        round(t.lost),
        ratio(
          t.deliveredPerSecond,
          delivered(find(bareName(cell.protocol), bareProtocol(cell.protocol))),
          'percent',
        ),
        ratio(t.deliveredPerSecond, delivered(find('socketio', 'ws')), 'times'),
        ratio(t.deliveredPerSecond, delivered(find('pushpin', cell.protocol)), 'times'),
      ]
    })
  const latencyRows = cells
    .filter((cell) => cell.latency)
    .map((cell) => {
      const l = cell.latency!
      return [
        cell.target.label,
        cell.protocol,
        round(l.subscribers),
        round(l.published),
        round(l.samples),
        ms(l.p50),
        ms(l.p99),
        ms(l.max),
        round(l.lost),
      ]
    })
  const memoryRows = cells
    .filter((cell) => cell.memory)
    .map((cell) => {
      const m = cell.memory!
      const bare = find(bareName(cell.protocol), bareProtocol(cell.protocol))?.memory?.kbPerConnection
      return [
        cell.target.label,
        cell.protocol,
        round(m.connections),
        round(m.beforeKb / 1024, 1),
        round(m.afterKb / 1024, 1),
        round(m.kbPerConnection, 2),
        ratio(m.kbPerConnection, bare, 'times'),
      ]
    })

  const processes = Math.ceil(SUBSCRIBERS / CONNECTIONS_PER_CLIENT)
  const lines = [
    `Fan-out: one publisher, one topic; ${os.cpus().length} CPUs, Node ${process.version}; the subscribers run on ` +
      `the same machine, in ${processes} process${processes === 1 ? '' : 'es'} of up to ${CONNECTIONS_PER_CLIENT} connections.`,
    '',
  ]
  if (throughputRows.length > 0) {
    lines.push(
      `Throughput: ${SECONDS} s, publisher at most ${INFLIGHT} requests in flight and ${WINDOW} events ahead of the slowest sampled subscriber; latency columns are under that load (1 in ${SAMPLE_EVERY} subscribers sampled).`,
      '',
      table(
        [
          'target',
          'protocol',
          'subscribers',
          'publishes/s',
          'delivered events/s',
          'p50 ms',
          'p99 ms',
          'lost',
          'vs bare loop',
          'vs Socket.IO (ws)',
          'vs Pushpin',
        ],
        throughputRows,
      ),
      '',
    )
  }
  if (latencyRows.length > 0) {
    lines.push(
      `Latency: ${LATENCY_RATE} events/s for ${LATENCY_SECONDS} s, publish (before the HTTP request) to receipt, 1 in ${SAMPLE_EVERY} subscribers sampled.`,
      '',
      table(
        ['target', 'protocol', 'subscribers', 'events', 'samples', 'p50 ms', 'p99 ms', 'max ms', 'lost'],
        latencyRows,
      ),
      '',
    )
  }
  if (memoryRows.length > 0) {
    lines.push(
      `Memory: server RSS (VmRSS, summed over its process tree) before and after opening ${IDLE_CONNECTIONS} idle, subscribed connections.`,
      '',
      table(
        [
          'target',
          'protocol',
          'idle connections',
          'RSS before MB',
          'RSS after MB',
          'KB/idle connection',
          'vs bare loop',
        ],
        memoryRows,
      ),
      '',
    )
  }

  const goals: string[] = []
  for (const protocol of PROTOCOLS) {
    const herald = find('herald', protocol)
    if (!herald?.throughput && !herald?.latency && !herald?.memory) continue
    const parts: string[] = []
    if (herald.throughput) {
      // only the comparisons whose baseline was measured in this run
      const against = (name: string, baseProtocol: Protocol, style: 'percent' | 'times', goal: string) => {
        const base = delivered(find(name, baseProtocol))
        if (base !== undefined) parts.push(`${ratio(delivered(herald), base, style)} ${goal}`)
      }
      against(bareName(protocol), bareProtocol(protocol), 'percent', 'of the bare loop (≥ 70%)')
      against('socketio', 'ws', 'times', 'Socket.IO (≥ 2×)')
      against('pushpin', protocol, 'times', 'Pushpin (≥ 1×)')
    }
    if (herald.latency) parts.push(`p99 ${ms(herald.latency.p99)} ms (< 50 ms)`)
    if (herald.memory)
      parts.push(`${round(herald.memory.kbPerConnection, 2)} KB per idle connection (≤ 10 KB)`)
    goals.push(`Herald ${protocol}: ${parts.join('; ')}.`)
  }
  if (goals.length > 0) lines.push('Against the issue targets:', '', ...goals.map((goal) => `- ${goal}`), '')

  const notes = cells.flatMap((cell) =>
    cell.notes.map((note) => `- ${cell.target.label} ${cell.protocol}: ${note}`),
  )
  if (notes.length > 0) lines.push('Notes:', '', ...notes, '')
  return lines.join('\n').trimEnd()
}

export async function runFanout(): Promise<string> {
  const unknown = TARGET_NAMES.filter((name) => !TARGETS.some((target) => target.name === name))
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_TARGETS: unknown ${unknown.join(', ')} (known: ${TARGETS.map((t) => t.name).join(', ')})`,
    )
  }
  const badProtocols = PROTOCOLS.filter((protocol) => !['sse', 'ndjson', 'ws'].includes(protocol))
  const badPhases = PHASES.filter((phase) => !['memory', 'throughput', 'latency'].includes(phase))
  if (badProtocols.length > 0 || badPhases.length > 0) {
    throw new Error(`BENCH_PROTOCOLS or BENCH_PHASES: unknown ${[...badProtocols, ...badPhases].join(', ')}`)
  }
  const onSignal = () => process.exit(130)
  process.on('exit', onExit)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    const cells: CellResult[] = []
    for (const name of TARGET_NAMES) {
      const definition = TARGETS.find((target) => target.name === name)!
      for (const protocol of PROTOCOLS) {
        if (definition.protocols.includes(protocol)) cells.push(await measureCell(definition, protocol))
      }
    }
    return report(cells)
  } finally {
    onExit()
    killers.clear()
    process.off('exit', onExit)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

if (import.meta.main) {
  process.stdout.write(`${await runFanout()}\n`)
}
