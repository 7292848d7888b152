// What the replay benchmarks (bench/replay.ts, bench/catchup.ts) share: a Herald filled with orders
// through its API, and reading a topic's replay from seq 0 over SSE or NDJSON, checking on the way
// that nothing is lost, doubled or reordered.
import { rm } from 'node:fs/promises'
import { request } from 'node:http'
import { fillTopic, startHerald } from './lib.ts'

/** The event the replay benchmarks fill with: its data.order is its index in the fill. */
export const orderEvent = (i: number) => ({
  type: 'order.created',
  data: { order: i, total: 99.5, currency: 'EUR' },
})

export interface FilledHerald {
  url: string
  pid: number | undefined
  dataDir: string
  /** How long the fill took. */
  fillSeconds: number
  /** Stops it, removes its data directory, then runs the `cleanup` it was started with. */
  stop(): Promise<void>
}

/**
 * Starts a Herald (startHerald's `args`, `root` and `env`) and fills `topic` with `events` orders,
 * `batch` per request, `inFlight` at once (see fillTopic).
 */
export async function startFilled(options: {
  args?: string[]
  root?: string
  env?: NodeJS.ProcessEnv
  topic: string
  events: number
  batch: number
  inFlight: number
  cleanup?: () => Promise<void>
}): Promise<FilledHerald> {
  const { topic, events, batch, inFlight } = options
  const herald = await startHerald(options.args, options.root, options.env)
  const stop = async () => {
    await herald.stop()
    await rm(herald.dataDir, { recursive: true, force: true })
    await options.cleanup?.()
  }
  try {
    const fillSeconds = await fillTopic(herald.url, { topic, events, batch, inFlight, event: orderEvent })
    return { url: herald.url, pid: herald.child.pid, dataDir: herald.dataDir, fillSeconds, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

const ORDER = Buffer.from('"order":')

/**
 * Checks the events in `data` (whole JSON events, in order) by their data.order (seq - 1 in a topic
 * filled by order, as the replay benchmarks fill theirs); returns the next expected order. `from` is
 * where to look from.
 */
export function checkOrders(data: Buffer, expected: number, from = 0): number {
  let at = data.indexOf(ORDER, from)
  while (at !== -1) {
    let value = 0
    let i = at + ORDER.length
    for (let c = data[i]!; c >= 48 && c <= 57; c = data[++i]!) value = value * 10 + c - 48
    if (value !== expected) throw new Error(`order ${value} where ${expected} was expected`)
    expected++
    at = data.indexOf(ORDER, i)
  }
  return expected
}

const ID = Buffer.from('\nid: ')

/**
 * Reads `topic` as a stream (SSE or NDJSON) from seq 0 until seq `events`, checking that every event
 * follows the one before; resolves how long it took and the bytes read.
 */
export function readReplay(
  url: string,
  topic: string,
  events: number,
  format: 'sse' | 'ndjson',
): Promise<{ seconds: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    let expected = format === 'sse' ? 1 : 0 // SSE: ids are seqs; NDJSON: data.order is seq - 1
    const last = format === 'sse' ? events : events - 1
    let bytes = 0
    let tail: Buffer = Buffer.alloc(0)
    const req = request(
      `${url}/v1/topics/${topic}/events?after=0`,
      {
        headers: { accept: format === 'sse' ? 'text/event-stream' : 'application/x-ndjson' },
        agent: false,
      },
      (response) => {
        if (response.statusCode !== 200) {
          reject(new Error(`${format}: ${response.statusCode}`))
          response.destroy()
          return
        }
        response.on('data', (chunk: Buffer) => {
          bytes += chunk.length
          // What followed the last whole frame of the chunk before: a frame cut in two is read whole.
          const data = tail.length === 0 ? chunk : Buffer.concat([tail, chunk])
          let consumed = 0
          try {
            if (format === 'sse') {
              let at = data.indexOf(ID)
              while (at !== -1) {
                const end = data.indexOf(10, at + ID.length)
                if (end === -1) break
                const id = Number(data.toString('latin1', at + ID.length, end))
                if (id !== expected) throw new Error(`id ${id} where ${expected} was expected`)
                expected++
                consumed = end
                at = data.indexOf(ID, end)
              }
              tail = data.subarray(Math.max(consumed, data.length - 32))
            } else {
              const end = data.lastIndexOf(10)
              if (end !== -1) {
                expected = checkOrders(data.subarray(0, end), expected)
                consumed = end + 1
              }
              tail = data.subarray(consumed)
            }
          } catch (error) {
            response.destroy()
            reject(new Error(`${format}: ${(error as Error).message}`))
            return
          }
          if (expected > last) {
            const seconds = (performance.now() - started) / 1000
            response.destroy()
            resolve({ seconds, bytes })
          }
        })
        response.on('error', () => {})
      },
    )
    req.on('error', reject)
    req.end()
  })
}
