import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** One request a receiver got. */
export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
  at: number
}

/**
 * What the receiver answers: a status (and headers), decided per request. With `trickleMs` the status
 * line goes at once and the body follows one byte every `trickleMs` (until the client hangs up).
 */
export type Answer = (
  request: Received,
  index: number,
) => { status: number; headers?: Record<string, string>; delayMs?: number; body?: string; trickleMs?: number }

export interface Receiver {
  url: string
  port: number
  received: Received[]
  answer: Answer
  /** Waits until `count` requests (that `filter` accepts) have arrived. */
  waitFor(count: number, filter?: (request: Received) => boolean, timeoutMs?: number): Promise<Received[]>
  close(): Promise<void>
}

/** A real webhook receiver on loopback (node:http), recording every request. */
export async function startReceiver(answer: Answer = () => ({ status: 200 }), port = 0): Promise<Receiver> {
  const received: Received[] = []
  const receiver: Receiver = {
    url: '',
    port: 0,
    received,
    answer,
    async waitFor(count, filter = () => true, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const matching = received.filter(filter)
        if (matching.length >= count) return matching
        if (Date.now() > deadline) {
          throw new Error(`receiver: ${matching.length} of ${count} requests after ${timeoutMs} ms`)
        }
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    },
    close: () => close(server),
  }
  const server: Server = createServer((request, response: ServerResponse) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      const entry: Received = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      }
      const index = received.length
      received.push(entry)
      const {
        status,
        headers = {},
        delayMs = 0,
        body = `answer ${status}`,
        trickleMs,
      } = receiver.answer(entry, index)
      if (trickleMs !== undefined) return trickle(response, status, headers, body, trickleMs)
      setTimeout(() => response.writeHead(status, headers).end(body), delayMs).unref()
    })
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  receiver.port = (server.address() as AddressInfo).port
  receiver.url = `http://127.0.0.1:${receiver.port}`
  return receiver
}

function trickle(
  response: ServerResponse,
  status: number,
  headers: Record<string, string>,
  body: string,
  everyMs: number,
): void {
  response.writeHead(status, { ...headers, 'content-length': String(Buffer.byteLength(body)) })
  let sent = 0
  const timer = setInterval(() => {
    response.write(body.slice(sent, ++sent))
    if (sent === body.length) response.end()
  }, everyMs)
  response.on('close', () => clearInterval(timer))
}

function close(server: Server): Promise<void> {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

/** The event a delivery carried. */
export function eventOf(request: Received): {
  id: string
  type: string
  topic: string
  seq: number
  data?: unknown
} {
  return JSON.parse(request.body)
}
