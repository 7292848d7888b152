// One subscriber process of the fan-out benchmark: bench/fanout.ts forks several, each holding a few
// thousand connections from its own loopback source address, and talks to them over IPC.
//
// Cheap on purpose, so that the server and not the subscribers is what gets measured: every
// connection only counts its events (SSE `data:` lines, NDJSON lines, WebSocket messages); only one connection in
// `sampleEvery` parses the payload, for latency and for the publisher's flow control.
import { request } from 'node:http'
import { StringDecoder } from 'node:string_decoder'
import { io, type ManagerOptions, type SocketOptions } from 'socket.io-client'
import WebSocket from 'ws'

/** SSE counts `data:` lines; NDJSON counts lines that are not empty (empty ones are keep-alives). */
interface HttpStreamSpec {
  url: string
  headers: Record<string, string>
  /** When set, a response of another Content-Type is a failure (the endpoint is not there yet). */
  contentType?: string
}

/** How to subscribe, decided by bench/fanout.ts for each target and protocol. */
export type SubscriberSpec =
  | ({ kind: 'sse' } & HttpStreamSpec)
  | ({ kind: 'ndjson' } & HttpStreamSpec)
  | {
      kind: 'ws'
      url: string
      /** Sent once open (Herald's `{"op":"subscribe",…}`). */
      subscribe?: string
      /** When set, the connection is subscribed once a message containing this arrives. */
      readyMarker?: string
      /** When set, only messages containing this are counted as events. */
      eventMarker?: string
    }
  | { kind: 'socketio'; url: string; event: string }

export interface ClientOptions {
  spec: SubscriberSpec
  connections: number
  localAddress: string
  sampleEvery: number
  /** Connections being opened at once. */
  connectConcurrency: number
}

/** Parent → child. */
export type ClientCommand = { op: 'mark' } | { op: 'snapshot' } | { op: 'close' }

/** Child → parent. */
export type ClientReport =
  | { type: 'connected'; open: number; failed: number; firstError?: string }
  | { type: 'marked' }
  | {
      type: 'snapshot'
      /** Events received since the last mark, over all connections. */
      events: number
      /** Fewest and most events one connection received since the last mark. */
      minEvents: number
      maxEvents: number
      /** Connections still open. */
      open: number
      /** Why the first connection that closed after subscribing closed. */
      firstClose?: string
      /** Publish-to-receive latencies (ms) seen on the sampled connections since the last mark. */
      latencies: Float64Array
    }
  /** The highest event number that every sampled connection has received: the publisher's window. */
  | { type: 'progress'; seen: number }

const CONNECT_TIMEOUT_MS = 15_000
const PROGRESS_INTERVAL_MS = 20

/** The publisher's payload: its timestamp (ms, performance.timeOrigin + performance.now()) and number. */
interface Payload {
  t: number
  n: number
}

/** Peers deliver `{t,n}` itself; Herald wraps it in a CloudEvent (`.data`), over WebSocket in `.event`. */
function payloadOf(value: unknown): Payload | undefined {
  const object = value as { t?: unknown; data?: unknown; event?: { data?: unknown } }
  const candidate = (typeof object?.t === 'number' ? object : (object?.event?.data ?? object?.data)) as
    | Payload
    | undefined
  return typeof candidate?.t === 'number' ? candidate : undefined
}

const now = () => performance.timeOrigin + performance.now()

/** A frame that is not JSON is not the publisher's: skip it rather than end the process. */
function parse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const DATA_LINE = Buffer.from('\ndata:')

/**
 * Counts SSE events in a byte stream as the number of lines that start with `data:`, so that
 * `retry:` lines and `: heartbeat` comments are not counted. Works across chunk boundaries without
 * copying: `partial` is how much of "\ndata:" the previous chunk ended with.
 */
export class DataLineCounter {
  // the stream starts at the start of a line, as if after a "\n"
  private partial = 1

  count(chunk: Buffer): number {
    let events = 0
    let from = 0
    if (this.partial > 0) {
      const rest = DATA_LINE.length - this.partial
      const take = Math.min(rest, chunk.length)
      if (chunk.compare(DATA_LINE, this.partial, this.partial + take, 0, take) === 0) {
        if (take < rest) {
          this.partial += take
          return 0
        }
        events += 1
        from = take
      }
      this.partial = 0
    }
    for (let at = chunk.indexOf(DATA_LINE, from); at !== -1; at = chunk.indexOf(DATA_LINE, at + 1)) {
      events += 1
    }
    // a "\ndata:" cut by the end of the chunk: the last "\n" of the final bytes, then a prefix of it
    let newline = -1
    for (let at = chunk.indexOf(10, Math.max(from, chunk.length - DATA_LINE.length + 1)); at !== -1; ) {
      newline = at
      at = chunk.indexOf(10, at + 1)
    }
    if (newline !== -1 && chunk.compare(DATA_LINE, 0, chunk.length - newline, newline) === 0) {
      this.partial = chunk.length - newline
    }
    return events
  }
}

/** Counts NDJSON events in a byte stream: the lines that are not empty (empty lines are keep-alives). */
export class LineCounter {
  // the stream starts at the start of a line
  private lineStart = true

  count(chunk: Buffer): number {
    let events = 0
    let from = 0
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) {
      if (!(at === from && this.lineStart)) events += 1
      this.lineStart = true
      from = at + 1
    }
    if (from < chunk.length) this.lineStart = false
    return events
  }
}

function main(options: ClientOptions): void {
  const { spec, connections, localAddress, sampleEvery, connectConcurrency } = options
  const events = new Uint32Array(connections)
  const connected = new Uint8Array(connections)
  const closed = new Uint8Array(connections)
  // for the sampled connections: the highest event number seen
  const lastSeen = new Map<number, number>()
  let latencies: number[] = []
  let firstClose: string | undefined

  const send = (report: ClientReport) => process.send!(report)

  function received(index: number, payload: Payload | undefined, at: number): void {
    if (!payload) return
    latencies.push(at - payload.t)
    if (payload.n > (lastSeen.get(index) ?? 0)) lastSeen.set(index, payload.n)
  }

  function onClosed(index: number, why: string): void {
    if (connected[index] && !closed[index]) firstClose ??= why
    closed[index] = 1
    lastSeen.delete(index)
  }

  /** Opens connection `index`; resolves once it is subscribed, rejects (and cleans up) otherwise. */
  function open(index: number): Promise<void> {
    const sampled = index % sampleEvery === 0
    if (sampled) lastSeen.set(index, 0)
    return new Promise<void>((resolve, reject) => {
      let settled = false
      let abort = () => {}
      const fail = (error: Error) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        abort()
        reject(error)
      }
      const succeed = () => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve()
      }
      const timer = setTimeout(() => fail(new Error('timed out connecting')), CONNECT_TIMEOUT_MS)

      if (spec.kind === 'sse' || spec.kind === 'ndjson') {
        const ndjson = spec.kind === 'ndjson'
        const req = request(spec.url, { headers: spec.headers, localAddress, agent: false }, (response) => {
          const type = String(response.headers['content-type'] ?? '')
          if (response.statusCode !== 200 || (spec.contentType && !type.startsWith(spec.contentType))) {
            fail(new Error(`GET ${spec.url}: HTTP ${response.statusCode} (${type || 'no content-type'})`))
            return
          }
          const counter = ndjson ? new LineCounter() : new DataLineCounter()
          const decoder = sampled ? new StringDecoder('utf8') : undefined
          let pending = ''
          response.on('data', (chunk: Buffer) => {
            events[index]! += counter.count(chunk)
            if (!decoder) return
            const at = now()
            const blocks = (pending + decoder.write(chunk)).split(ndjson ? '\n' : '\n\n')
            pending = blocks.pop()!
            for (const block of blocks) {
              if (ndjson) {
                if (block !== '') received(index, payloadOf(parse(block)), at)
                continue
              }
              const line = block.split('\n').find((candidate) => candidate.startsWith('data:'))
              if (line) received(index, payloadOf(parse(line.slice(5))), at)
            }
          })
          response.on('error', () => {})
          response.on('close', () => onClosed(index, 'the server ended the stream'))
          succeed()
        })
        abort = () => req.destroy()
        req.on('error', fail)
        req.end()
        return
      }

      if (spec.kind === 'ws') {
        const socket = new WebSocket(spec.url, { localAddress, perMessageDeflate: false })
        abort = () => socket.terminate()
        let subscribed = false
        socket.on('open', () => {
          if (spec.subscribe) socket.send(spec.subscribe)
          if (!spec.readyMarker) {
            subscribed = true
            succeed()
          }
        })
        socket.on('message', (data: Buffer) => {
          if (!subscribed) {
            if (spec.readyMarker && data.includes(spec.readyMarker)) {
              subscribed = true
              succeed()
            } else fail(new Error(`unexpected first message: ${data.toString().slice(0, 200)}`))
            return
          }
          if (spec.eventMarker && !data.includes(spec.eventMarker)) return
          events[index]! += 1
          if (sampled) received(index, payloadOf(parse(data.toString())), now())
        })
        socket.on('unexpected-response', (_request, response) =>
          fail(new Error(`GET ${spec.url}: HTTP ${response.statusCode}, not a WebSocket upgrade`)),
        )
        socket.on('error', fail)
        socket.on('close', (code, reason) => {
          fail(new Error(`closed while connecting (${code} ${reason.toString()})`))
          onClosed(index, `WebSocket close ${code} ${reason.toString()}`.trim())
        })
        return
      }

      // Socket.IO caches one connection per URL unless forceNew; no reconnection, so a drop shows
      const socketOptions: Partial<ManagerOptions & SocketOptions> & { localAddress: string } = {
        transports: ['websocket'],
        forceNew: true,
        reconnection: false,
        timeout: CONNECT_TIMEOUT_MS,
        localAddress,
      }
      const socket = io(spec.url, socketOptions)
      abort = () => socket.disconnect()
      socket.on('connect', succeed)
      socket.on('connect_error', fail)
      socket.on(spec.event, (body: string) => {
        events[index]! += 1
        if (sampled) received(index, payloadOf(parse(String(body))), now())
      })
      socket.on('disconnect', (reason) => onClosed(index, `Socket.IO disconnect: ${reason}`))
    })
  }

  async function openAll(): Promise<void> {
    let next = 0
    let opened = 0
    let failed = 0
    let firstError: string | undefined
    const worker = async () => {
      while (next < connections) {
        const index = next++
        try {
          await open(index)
          connected[index] = 1
          opened += 1
        } catch (error) {
          failed += 1
          closed[index] = 1
          lastSeen.delete(index)
          firstError ??= error instanceof Error ? error.message : String(error)
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(connectConcurrency, connections) }, worker))
    send({ type: 'connected', open: opened, failed, ...(firstError ? { firstError } : {}) })
  }

  function snapshot(): ClientReport {
    let total = 0
    let min = Number.POSITIVE_INFINITY
    let max = 0
    let stillOpen = 0
    for (let index = 0; index < connections; index++) {
      if (!connected[index]) continue
      const count = events[index]!
      total += count
      if (count < min) min = count
      if (count > max) max = count
      if (!closed[index]) stillOpen += 1
    }
    const report: ClientReport = {
      type: 'snapshot',
      events: total,
      minEvents: Number.isFinite(min) ? min : 0,
      maxEvents: max,
      open: stillOpen,
      latencies: Float64Array.from(latencies),
      ...(firstClose ? { firstClose } : {}),
    }
    latencies = []
    return report
  }

  let lastProgress = -1
  setInterval(() => {
    // with no sampled connection left open, this process no longer holds the publisher back
    let seen = Number.MAX_SAFE_INTEGER
    for (const n of lastSeen.values()) if (n < seen) seen = n
    if (seen !== lastProgress) {
      lastProgress = seen
      send({ type: 'progress', seen })
    }
  }, PROGRESS_INTERVAL_MS)

  process.on('message', (command: ClientCommand) => {
    if (command.op === 'mark') {
      events.fill(0)
      latencies = []
      send({ type: 'marked' })
    } else if (command.op === 'snapshot') {
      send(snapshot())
    } else if (command.op === 'close') {
      process.exit(0)
    }
  })
  // the benchmark went away: the kernel closes every socket with the process
  process.on('disconnect', () => process.exit(0))

  void openAll()
}

if (import.meta.main) {
  main(JSON.parse(process.argv[2]!) as ClientOptions)
}
