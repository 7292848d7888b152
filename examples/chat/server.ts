// The chat example: Herald in-process, and a tiny backend that serves the page and mints tokens.
// Run it with `npm run chat` (or `node examples/chat/server.ts`), then open the printed URL in two windows.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mintToken } from '../../src/access/tokens.ts'
import { type Herald, startHerald } from '../../src/app.ts'
import { loadConfig } from '../../src/config/config.ts'

export interface ChatOptions {
  /** The page's port (default 3000; 0 picks a free one). */
  port?: number
  /** Herald's port (default 8080; 0 picks a free one). */
  heraldPort?: number
  /** Where Herald keeps its SQLite store (default: a temporary directory, removed on close). */
  dataDir?: string
  /** Token lifetime in seconds (default 600). */
  tokenTtlSeconds?: number
  logLevel?: string
}

export interface Chat {
  /** The chat page. */
  url: string
  /** Herald's base URL. */
  heraldUrl: string
  herald: Herald
  /** The root API key Herald was started with (generated). */
  rootKey: string
  close(): Promise<void>
}

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/chat.js': { file: 'chat.js', type: 'text/javascript; charset=utf-8' },
  '/chat.css': { file: 'chat.css', type: 'text/css; charset=utf-8' },
}
/** Names and rooms: short, and safe as a topic segment. */
const NAME = /^[A-Za-z0-9_-]{1,32}$/

export async function startChat(options: ChatOptions = {}): Promise<Chat> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'herald-chat-')))
  const rootKey = randomBytes(24).toString('base64url')
  const secret = randomBytes(32).toString('base64url')
  const ttlSeconds = options.tokenTtlSeconds ?? 600
  let heraldUrl = ''

  const backend = createServer(async (request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname
    try {
      if (request.method === 'POST' && path === '/token') {
        const body = JSON.parse(await readBody(request)) as { name?: unknown; room?: unknown }
        const { name, room } = body
        if (typeof name !== 'string' || typeof room !== 'string' || !NAME.test(name) || !NAME.test(room)) {
          response.writeHead(400, { 'content-type': 'application/json' })
          response.end(JSON.stringify({ error: 'name and room: 1-32 letters, digits, - or _' }))
          return
        }
        // The room's messages and its typing topic: read and write both, nothing else.
        const topics = [`chat/${room}`, `typing/${room}`]
        const token = await mintToken(secret, { sub: name, publish: topics, subscribe: topics, ttlSeconds })
        response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        response.end(JSON.stringify({ token }))
        return
      }
      if (request.method === 'GET' && path === '/config.json') {
        response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
        response.end(JSON.stringify({ heraldUrl }))
        return
      }
      const served = request.method === 'GET' ? FILES[path] : undefined
      if (served === undefined) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
        return
      }
      const ws = heraldUrl.replace(/^http/, 'ws')
      response.writeHead(200, {
        'content-type': served.type,
        'cache-control': 'no-cache',
        // No inline script anywhere: the page's code is chat.js, the client comes from Herald.
        'content-security-policy': `default-src 'self'; script-src 'self' ${heraldUrl}; connect-src 'self' ${heraldUrl} ${ws}`,
      })
      response.end(await readFile(join(import.meta.dirname, served.file)))
    } catch (error) {
      if (!response.headersSent) response.writeHead(400, { 'content-type': 'text/plain' })
      response.end(String((error as Error).message))
    }
  })
  await listen(backend, options.port ?? 3000)
  const url = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`

  let herald: Herald
  try {
    const config = loadConfig(
      {
        host: '127.0.0.1',
        port: String(options.heraldPort ?? 8080),
        data: dataDir,
        'log-level': options.logLevel ?? 'warn',
        'cors-origins': url,
        'shutdown-timeout': '1s',
      },
      { HERALD_API_KEY: rootKey, HERALD_JWT_SECRET: secret },
    )
    herald = await startHerald(config)
  } catch (error) {
    backend.close()
    throw error
  }
  heraldUrl = herald.url

  return {
    url,
    heraldUrl,
    herald,
    rootKey,
    async close() {
      backend.closeAllConnections()
      await new Promise((resolve) => backend.close(resolve))
      await herald.close()
      if (options.dataDir === undefined) await rm(dataDir, { recursive: true, force: true })
    },
  }
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve())
  })
}

async function readBody(request: IncomingMessage): Promise<string> {
  let body = ''
  for await (const chunk of request) {
    body += chunk
    if (body.length > 4096) throw new Error('body too large')
  }
  return body
}

if (import.meta.main) {
  const chat = await startChat({
    port: Number(process.env['CHAT_PORT'] ?? 3000),
    heraldPort: Number(process.env['HERALD_PORT'] ?? 8080),
    dataDir: process.env['CHAT_DATA'],
  })
  process.stdout.write(`Chat:   ${chat.url}  (open it in two windows)\nHerald: ${chat.heraldUrl}\n`)
  const stop = async () => {
    await chat.close()
    process.exit(0)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
