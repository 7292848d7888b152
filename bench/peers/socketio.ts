// Socket.IO for the fan-out comparison: `POST /publish` → `io.emit('event', body)` to every client.
// WebSocket transport only (clients connect with transports: ['websocket']), no compression.
import { createServer } from 'node:http'
import { Server } from 'socket.io'
import { readBody, reportListening } from './peer-util.ts'

// Registered before Socket.IO attaches, so that Socket.IO keeps /socket.io/ requests to itself and
// passes only the others on to this handler.
const server = createServer(async (request, response) => {
  if (request.method === 'POST' && request.url === '/publish') {
    const body = await readBody(request)
    // a string, not the Buffer: Socket.IO would send a Buffer as a separate binary attachment
    io.emit('event', body.toString())
    response.writeHead(204).end()
    return
  }
  response.writeHead(404).end()
})
const io = new Server(server, { transports: ['websocket'], serveClient: false, perMessageDeflate: false })
server.listen(0, '127.0.0.1', () => reportListening(server))
