// The fan-out baseline for WebSocket: a `ws` server and an HTTP `POST /publish` whose body is sent,
// as the same Buffer, to every connected client. No topics, no storage, no backpressure handling:
// the least work a Node WebSocket broadcast can do.
import { createServer } from 'node:http'
import { WebSocketServer } from 'ws'
import { readBody, reportListening } from './peer-util.ts'

const server = createServer()
const sockets = new WebSocketServer({ server, perMessageDeflate: false })

server.on('request', async (request, response) => {
  if (request.method === 'POST' && request.url === '/publish') {
    const body = await readBody(request)
    // as text frames, which is what Herald sends
    for (const client of sockets.clients) client.send(body, { binary: false })
    response.writeHead(204).end()
    return
  }
  response.writeHead(404).end()
})
server.listen(0, '127.0.0.1', () => reportListening(server))
