// The fan-out baseline for Server-Sent Events: `GET /stream` keeps the response open, and
// `POST /publish` writes `id: N` + `data: <body>` to every open stream. No topics, no storage, no
// heartbeats, no backpressure handling: the least work a node:http SSE broadcast can do.
// With BARE_TLS_CERT and BARE_TLS_KEY (PEM files) it serves the same over TLS, HTTP/2 and HTTP/1.1 on
// one port (node:http2's compatibility API, as Herald's TLS listener): bench/h2.ts's baseline.
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import { createSecureServer, type Http2ServerRequest } from 'node:http2'
import { readBody, reportListening } from './peer-util.ts'

/** What the loop uses of a response, node:http's or node:http2's (their types do not unite). */
interface Response {
  writeHead(status: number, headers?: Record<string, string>): unknown
  flushHeaders(): void
  write(chunk: string): unknown
  end(): unknown
  on(event: 'close', listener: () => void): unknown
}
const streams = new Set<Response>()
let seq = 0

async function handle(request: IncomingMessage | Http2ServerRequest, response: Response) {
  if (request.method === 'GET' && request.url?.startsWith('/stream')) {
    response.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    })
    // send the headers now, so the subscriber knows it is subscribed before the first event
    response.flushHeaders()
    streams.add(response)
    response.on('close', () => streams.delete(response))
    return
  }
  if (request.method === 'POST' && request.url === '/publish') {
    const body = await readBody(request)
    seq += 1
    // one string for all streams: the frame is built once, as a broadcast loop would
    const frame = `id: ${seq}\ndata: ${body.toString()}\n\n`
    for (const stream of streams) stream.write(frame)
    response.writeHead(204)
    response.end()
    return
  }
  response.writeHead(404)
  response.end()
}

const cert = process.env['BARE_TLS_CERT']
const key = process.env['BARE_TLS_KEY']
const server =
  cert && key
    ? createSecureServer(
        {
          cert: readFileSync(cert),
          key: readFileSync(key),
          allowHTTP1: true,
          settings: { maxConcurrentStreams: 256 },
        },
        (request, response) => handle(request, response as unknown as Response),
      )
    : createServer((request, response) => handle(request, response))
server.listen(0, '127.0.0.1', () => reportListening(server))
