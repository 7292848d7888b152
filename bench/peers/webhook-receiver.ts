// The webhook receiver of the dispatch benchmark (bench/dispatch.ts). It runs in its own process
// (forked, with an IPC channel) so that its CPU is not charged to the sender being measured:
// node:http on 127.0.0.1, every request answered 200 with an empty body at once, no signature check.
//
// It counts the POSTs per path and checks each path's order: every body ends in `"seq":N}` (Herald's
// deliveries, and the bare loop's copies of them), and a path must get seqs 1..events exactly once,
// each higher than every seq before it on that path.
//
// IPC, from the benchmark:
//   {type: 'expect', events, total}  forget everything counted so far; then, once `total` distinct
//                                    (path, seq) deliveries have arrived, send {type: 'done', at, stats}
//                                    (`at`: the arrival of the last one, performance.timeOrigin +
//                                    performance.now()); redeliveries are counted, not towards `total`
//   {type: 'stats'}                  answered {type: 'stats', stats}
// and to it, once listening: {type: 'listening', port}.
import { createServer } from 'node:http'

export interface PathStats {
  /** POSTs received on this path. */
  count: number
  /** Body bytes received on this path. */
  bytes: number
  /** Distinct seqs from 1..events received. */
  unique: number
  /** POSTs whose seq this path had already received (an at-least-once redelivery). */
  duplicates: number
  /** First arrivals of a seq lower than one received before it on this path. */
  outOfOrder: number
  /** POSTs without a seq in 1..events. */
  unexpected: number
}

export interface ReceiverStats {
  /** POSTs received, redeliveries included. */
  total: number
  /** Distinct (path, seq) deliveries received. */
  unique: number
  paths: Record<string, PathStats>
}

export type ReceiverCommand = { type: 'expect'; events: number; total: number } | { type: 'stats' }

export type ReceiverMessage =
  | { type: 'listening'; port: number }
  | { type: 'done'; at: number; stats: ReceiverStats }
  | { type: 'stats'; stats: ReceiverStats }

interface PathState extends PathStats {
  highest: number
  seen: Uint8Array
}

const SEQ = Buffer.from('"seq":')

let events = 0
let expected = Number.POSITIVE_INFINITY
let total = 0
let unique = 0
let paths = new Map<string, PathState>()

function stats(): ReceiverStats {
  const out: Record<string, PathStats> = {}
  for (const [path, { count, bytes, unique, duplicates, outOfOrder, unexpected }] of paths) {
    out[path] = { count, bytes, unique, duplicates, outOfOrder, unexpected }
  }
  return { total, unique, paths: out }
}

/** The N of the last `"seq":N` in the body, or 0. */
function seqOf(body: Buffer): number {
  const at = body.lastIndexOf(SEQ)
  if (at < 0) return 0
  let seq = 0
  for (let i = at + SEQ.length; i < body.length; i++) {
    const digit = body[i]! - 48
    if (digit < 0 || digit > 9) break
    seq = seq * 10 + digit
  }
  return seq
}

function record(path: string, body: Buffer): void {
  let state = paths.get(path)
  if (!state) {
    state = {
      count: 0,
      bytes: 0,
      unique: 0,
      duplicates: 0,
      outOfOrder: 0,
      unexpected: 0,
      highest: 0,
      seen: new Uint8Array(events + 1),
    }
    paths.set(path, state)
  }
  state.count++
  total++
  state.bytes += body.length
  const seq = seqOf(body)
  if (seq < 1 || seq > events) state.unexpected++
  else if (state.seen[seq] === 1) state.duplicates++
  else {
    state.seen[seq] = 1
    state.unique++
    unique++
    if (seq < state.highest) state.outOfOrder++
    else state.highest = seq
    if (unique === expected) {
      const at = performance.timeOrigin + performance.now()
      process.send!({ type: 'done', at, stats: stats() } satisfies ReceiverMessage)
    }
  }
}

const server = createServer((request, response) => {
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', () => {
    if (request.method === 'POST') {
      record(request.url ?? '', chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
    }
    response.writeHead(200, { 'content-length': '0' }).end()
  })
})
// Connections stay open between the measurements of a round (Herald's agent and the loop's close
// theirs when they go).
server.keepAliveTimeout = 60_000

process.on('message', (command: ReceiverCommand) => {
  if (command.type === 'expect') {
    events = command.events
    expected = command.total
    total = 0
    unique = 0
    paths = new Map()
  } else if (command.type === 'stats') {
    process.send!({ type: 'stats', stats: stats() } satisfies ReceiverMessage)
  }
})
process.on('disconnect', () => process.exit(0))

server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  process.send!({ type: 'listening', port } satisfies ReceiverMessage)
})
