// SSE over HTTP/2 beside SSE over HTTP/1.1, both over TLS, on the same Herald (issue 17):
//   npm run bench:h2     (BENCH_IDLE=5000, BENCH_SUBSCRIBERS=1000, BENCH_EVENTS=2000, BENCH_ROUNDS=3)
//
// - memory: the server's RSS (its process tree, /proc) before and after opening BENCH_IDLE idle,
//   subscribed SSE streams: over HTTP/2 as streams of few sessions (250 per session, under the
//   server's 256), over HTTP/1.1 as one TLS connection each; Herald beside the bare node:http2 SSE
//   loop (bench/peers/bare-sse.ts with a certificate: HTTP/2 and HTTP/1.1 on one port). A fresh
//   server for each.
// - fan-out: BENCH_SUBSCRIBERS SSE subscribers on one topic (HTTP/2: 250 per session; HTTP/1.1: one
//   connection each), BENCH_EVENTS events published in batches of 100; the time from the first publish
//   to the last subscriber's last event, in rounds, the two protocols in turn (a fresh server each),
//   and how many streams the server cut as slow consumers.
// The certificate is made by openssl for the run. Subscribers count `data:` lines (no JSON parsing).
import { mkdtempSync, rmSync } from 'node:fs'
import http2 from 'node:http2'
import { Agent, request } from 'node:https'
import os from 'node:os'
import { join } from 'node:path'
import { makeCert } from '../test/tls/clients.ts'
import { median, round, rssKb, startHerald, startPeer, type Target, table } from './lib.ts'

const IDLE = Number(process.env['BENCH_IDLE'] ?? 5000)
const SUBSCRIBERS = Number(process.env['BENCH_SUBSCRIBERS'] ?? 1000)
const EVENTS = Number(process.env['BENCH_EVENTS'] ?? 2000)
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3)
const PER_SESSION = 250
const TOPIC = 'bench'
const PATH = `/v1/topics/${TOPIC}/events?after=0`

type Protocol = 'h2' | 'h1'

/** One SSE subscriber: counts `data:` lines; `done` resolves (with the time) at `expected` of them. */
class Subscriber {
  readonly done: Promise<number>
  opened: Promise<void> = Promise.resolve()
  /** Its answer came (HTTP/1.1: a connection that failed before is opened again, see openStreams). */
  connected = false
  finished = false
  private count = 0
  private tail = ''
  private readonly expected: number
  private finish: (at: number) => void = () => {}

  constructor(expected: number) {
    this.expected = expected
    this.done = new Promise<number>((resolve) => {
      this.finish = resolve
    })
    if (expected === 0) this.finish(performance.now())
  }

  readonly onChunk = (chunk: string) => {
    const text = this.tail + chunk
    let at = text.indexOf('\ndata:')
    while (at !== -1) {
      this.count++
      at = text.indexOf('\ndata:', at + 6)
    }
    this.tail = text.slice(-6)
    if (this.count >= this.expected && !this.finished) {
      this.finished = true
      this.finish(performance.now())
    }
  }
}

/** Opens `count` SSE streams over `protocol`; returns them and a function that closes them all. */
function openStreams(url: string, path: string, protocol: Protocol, count: number, expected: number) {
  const closers: Array<() => void> = []
  const subscribers: Subscriber[] = []
  const agent = new Agent({
    keepAlive: true,
    maxSockets: Number.POSITIVE_INFINITY,
    rejectUnauthorized: false,
  })
  closers.push(() => agent.destroy())
  let session: http2.ClientHttp2Session | undefined
  for (let i = 0; i < count; i++) {
    const subscriber = new Subscriber(expected)
    if (protocol === 'h2') {
      if (i % PER_SESSION === 0) {
        // A window as large as a browser's (Chromium: 15 MB per connection, 6 MB per stream); node's
        // default, 64 KB, makes 250 hot streams wait on WINDOW_UPDATEs.
        const current = http2.connect(url, {
          rejectUnauthorized: false,
          settings: { initialWindowSize: 6 * 1024 * 1024 },
        })
        current.on('error', () => {})
        current.once('connect', () => current.setLocalWindowSize(15 * 1024 * 1024))
        closers.push(() => current.destroy())
        session = current
      }
      const stream = session!.request({ ':path': path, accept: 'text/event-stream' })
      stream.setEncoding('utf8')
      stream.on('error', () => {})
      stream.on('data', subscriber.onChunk)
      subscriber.opened = new Promise((resolve) => stream.once('response', () => resolve()))
    } else {
      subscriber.opened = new Promise((resolve) => {
        // Thousands of TLS handshakes at once: the odd one is reset before it completes (the listen
        // backlog overflows). The subscriber connects again, as a client would.
        const open = () => {
          const req = request(
            `${url}${path}`,
            { agent, headers: { accept: 'text/event-stream' } },
            (response) => {
              resolve()
              response.setEncoding('utf8')
              response.on('data', subscriber.onChunk)
            },
          )
          req.on('error', () => {
            if (!subscriber.connected) setTimeout(open, 100)
          })
          req.once('response', () => {
            subscriber.connected = true
          })
          req.end()
          closers.push(() => req.destroy())
        }
        open()
      })
    }
    subscribers.push(subscriber)
  }
  return {
    subscribers,
    close: () => {
      for (const close of closers) close()
    },
  }
}

async function startTls(certificate: { cert: string; key: string }): Promise<Target> {
  return startHerald(
    [
      '--sqlite-sync',
      'normal',
      '--max-connections',
      String(Math.max(IDLE, SUBSCRIBERS) + 100),
      '--max-connections-per-ip',
      'none',
    ],
    undefined,
    { HERALD_TLS_CERT: certificate.cert, HERALD_TLS_KEY: certificate.key, NODE_TLS_REJECT_UNAUTHORIZED: '0' },
  )
}

async function publishAll(url: string): Promise<void> {
  for (let start = 0; start < EVENTS; start += 100) {
    const batch = Array.from({ length: Math.min(100, EVENTS - start) }, (_, i) => ({
      type: 'order.created',
      data: { order: start + i, total: 99.5, currency: 'EUR' },
    }))
    const response = await fetch(`${url}/v1/topics/${TOPIC}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(batch),
    })
    if (response.status !== 201) throw new Error(`publish: ${response.status}`)
  }
}

/** The server whose idle streams are counted: Herald, or the bare node:http2 SSE loop (bench/peers). */
type Server = 'herald' | 'bare'

async function memory(certificate: { cert: string; key: string }, server: Server, protocol: Protocol) {
  const target =
    server === 'herald'
      ? await startTls(certificate)
      : await startPeer(
          'bare-sse (TLS)',
          'bare-sse.ts',
          { BARE_TLS_CERT: certificate.cert, BARE_TLS_KEY: certificate.key },
          'https',
        )
  try {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const before = rssKb(target.child.pid!)
    const path = server === 'herald' ? PATH : '/stream'
    const { subscribers, close } = openStreams(target.url, path, protocol, IDLE, 0)
    await Promise.all(subscribers.map((s) => s.opened))
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const after = rssKb(target.child.pid!)
    close()
    return { before, after, perStream: (after - before) / IDLE }
  } finally {
    await target.stop()
  }
}

/** herald_slow_consumer_disconnects_total, all protocols: the streams the server cut. */
async function slowConsumerCuts(url: string): Promise<number> {
  const metrics = await (await fetch(`${url}/metrics`)).text()
  let cuts = 0
  for (const line of metrics.split('\n')) {
    if (line.startsWith('herald_slow_consumer_disconnects_total')) cuts += Number(line.split(' ').at(-1))
  }
  return cuts
}

async function fanOut(certificate: { cert: string; key: string }, protocol: Protocol) {
  const target = await startTls(certificate)
  try {
    const { subscribers, close } = openStreams(target.url, PATH, protocol, SUBSCRIBERS, EVENTS)
    await Promise.all(subscribers.map((s) => s.opened))
    const started = performance.now()
    await publishAll(target.url)
    // A subscriber whose stream the server ended (a slow consumer) never completes: give up after a
    // while and count them.
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), 60_000)
    })
    const ends = await Promise.race([Promise.all(subscribers.map((s) => s.done)), late])
    clearTimeout(timer)
    close()
    if (ends === 'late') {
      const finished = subscribers.filter((s) => s.finished).length
      const cuts = await slowConsumerCuts(target.url)
      throw new Error(
        `${protocol}: ${SUBSCRIBERS - finished} of ${SUBSCRIBERS} subscribers did not get every event in 60 s; the server cut ${cuts} as slow consumers`,
      )
    }
    const seconds = (Math.max(...ends) - started) / 1000
    return { seconds, deliveries: (SUBSCRIBERS * EVENTS) / seconds, cuts: await slowConsumerCuts(target.url) }
  } finally {
    await target.stop()
  }
}

export async function runH2(): Promise<string> {
  // Herald's own fetch calls (publish) go to a self-signed certificate.
  process.env['NODE_TLS_REJECT_UNAUTHORIZED'] = '0'
  const dir = mkdtempSync(join(os.tmpdir(), 'herald-bench-tls-'))
  try {
    const made = makeCert(dir)
    const certificate = { cert: made.certFile, key: made.keyFile }
    const memoryRows: Array<Array<string | number>> = []
    for (const protocol of ['h1', 'h2'] as const) {
      let bare = 0
      for (const server of ['bare', 'herald'] as const) {
        const result = await memory(certificate, server, protocol)
        process.stderr.write(
          `memory ${server} ${protocol}: ${round(result.perStream, 2)} KB per idle stream\n`,
        )
        if (server === 'bare') bare = result.perStream
        memoryRows.push([
          server === 'herald' ? 'Herald' : 'bare node:http2 SSE loop (bench/peers/bare-sse.ts)',
          protocol === 'h2' ? `HTTP/2 (${PER_SESSION} streams per session)` : 'HTTP/1.1 over TLS',
          IDLE,
          round(result.before / 1024, 1),
          round(result.after / 1024, 1),
          round(result.perStream, 2),
          server === 'herald' ? `${round(result.perStream / bare, 2)}×` : '1.00×',
        ])
      }
    }
    const runs: Record<Protocol, Array<{ seconds: number; deliveries: number; cuts: number }>> = {
      h1: [],
      h2: [],
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const protocol of ['h1', 'h2'] as const) {
        const result = await fanOut(certificate, protocol)
        runs[protocol].push(result)
        process.stderr.write(
          `round ${r + 1} ${protocol}: ${round(result.seconds, 2)} s, ${round(result.deliveries)} deliveries/s\n`,
        )
      }
    }
    const paired = median(runs.h2.map((run, i) => run.deliveries / runs.h1[i]!.deliveries))
    return [
      `SSE over HTTP/2 and HTTP/1.1, both over TLS (a self-signed P-256 certificate); ${os.cpus().length} CPUs, Node ${process.version}`,
      '',
      table(
        [
          'server',
          'idle SSE streams over',
          'streams',
          'RSS before MB',
          'RSS after MB',
          'KB per idle stream',
          'vs bare loop',
        ],
        memoryRows,
      ),
      '',
      table(
        [
          'fan-out over',
          'subscribers',
          'events',
          'seconds to the last event (median)',
          'deliveries/s (median)',
          'deliveries/s by round',
          'streams cut as slow consumers',
        ],
        (['h1', 'h2'] as const).map((protocol) => [
          protocol === 'h2' ? `HTTP/2 (${PER_SESSION} streams per session)` : 'HTTP/1.1 over TLS',
          SUBSCRIBERS,
          EVENTS,
          round(median(runs[protocol].map((run) => run.seconds)), 2),
          round(median(runs[protocol].map((run) => run.deliveries))),
          runs[protocol].map((run) => round(run.deliveries)).join(' / '),
          runs[protocol].map((run) => run.cuts).join(' / '),
        ]),
      ),
      '',
      `HTTP/2 fan-out: ${round(100 * paired, 1)}% of HTTP/1.1's deliveries/s (paired round by round).`,
    ].join('\n')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  process.stdout.write(`${await runH2()}\n`)
}
