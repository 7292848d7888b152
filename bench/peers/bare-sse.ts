// The fan-out baseline for Server-Sent Events: `GET /stream` keeps the response open, and
// `POST /publish` writes `id: N` + `data: <body>` to every open stream. No topics, no storage, no
// heartbeats, no backpressure handling: the least work a node:http SSE broadcast can do.
import { createServer, type ServerResponse } from 'node:http'
import { readBody, reportListening } from './peer-util.ts'

const streams = new Set<ServerResponse>()
let seq = 0

const server = createServer(async (request, response) => {
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
    response.writeHead(204).end()
    return
  }
  response.writeHead(404).end()
})
server.listen(0, '127.0.0.1', () => reportListening(server))
