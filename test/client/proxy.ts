import { createServer, request, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export interface Proxy {
  url: string
  /** Upgrades refused, and SSE too when `blockSse`. */
  refused: { upgrades: number; sse: number }
  close(): Promise<void>
}

/**
 * A loopback HTTP proxy in front of `target` that forwards plain HTTP (streamed both ways) but refuses
 * WebSocket upgrades (403), and with `blockSse` every `Accept: text/event-stream` request too, as some
 * corporate proxies do.
 */
export async function startProxy(target: string, { blockSse = false } = {}): Promise<Proxy> {
  const to = new URL(target)
  const refused = { upgrades: 0, sse: 0 }
  const sockets = new Set<Socket>()
  const server: Server = createServer((incoming, answer) => {
    if (blockSse && String(incoming.headers.accept ?? '').includes('text/event-stream')) {
      refused.sse++
      answer.writeHead(403, { 'content-type': 'text/plain' }).end('streaming is not allowed here')
      return
    }
    const forward = request(
      {
        host: to.hostname,
        port: to.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (response) => {
        answer.writeHead(response.statusCode ?? 502, response.headers)
        response.pipe(answer)
      },
    )
    forward.on('error', () => answer.destroy())
    answer.on('close', () => forward.destroy())
    incoming.pipe(forward)
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.on('upgrade', (_request, socket: Socket) => {
    refused.upgrades++
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    refused,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
