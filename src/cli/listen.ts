import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { parseArgs } from 'node:util'
import { HeraldError } from '../core/errors.ts'
import { parseSecret, verify } from '../delivery/signing.ts'
import { UsageError } from './publish.ts'

export const LISTEN_HELP = `Usage: herald listen --port <port> [--secret whsec_…] [options]

Runs a local webhook receiver, to point a hook's target_url at while developing. It checks
each POST's Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature)
and prints one line per delivery: time, path, webhook-id, topic#seq, type, outcome, status.
A verified delivery gets --status; a bad signature or a timestamp more than 5 minutes off
gets 401. A REST Hooks handshake (X-Hook-Secret) is answered 200 echoing the header.

Options:
  --port <port>        Port to listen on (0: any free port) (required)
  --host <address>     Address to bind (default 127.0.0.1)
  --secret <whsec_…>   The hook's signing secret; repeat it to accept an old and a new one.
                       Without it, deliveries are printed unverified and answered --status.
  --status <code>      Status for a verified delivery (default 200; e.g. 500 to watch retries)
  --body               Also print each delivery's body
  -h, --help           Show this help.
`

/** Larger than any event Herald stores (its publish limit defaults to 1 MiB). */
const BODY_LIMIT = 8 * 1024 * 1024

interface Receiver {
  secrets: string[]
  status: number
  printBody: boolean
}

export const LISTEN_OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  secret: { type: 'string', multiple: true, default: [] as string[] },
  status: { type: 'string', default: '200' },
  body: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h' },
} as const

export async function listen(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: LISTEN_OPTIONS })
  if (values.help) {
    process.stdout.write(LISTEN_HELP)
    return
  }
  if (values.port === undefined || !/^\d+$/.test(values.port) || Number(values.port) > 65535) {
    throw new UsageError('--port is required: a port number (0 picks a free one).', LISTEN_HELP)
  }
  const status = Number(values.status)
  if (!/^\d{3}$/.test(values.status) || status < 200 || status > 599) {
    throw new UsageError('--status is an HTTP status from 200 to 599.', LISTEN_HELP)
  }
  for (const secret of values.secret) {
    try {
      parseSecret(secret)
    } catch (error) {
      if (error instanceof HeraldError) throw new UsageError(error.message, LISTEN_HELP)
      throw error
    }
  }
  const receiver: Receiver = { secrets: values.secret, status, printBody: values.body }
  const server = createServer((request, response) => {
    receive(request, response, receiver).catch(() => response.destroy())
  })
  server.listen(Number(values.port), values.host)
  await once(server, 'listening')
  const { address, port } = server.address() as AddressInfo
  const host = address.includes(':') ? `[${address}]` : address
  const mode =
    receiver.secrets.length > 0 ? 'verifying signatures' : 'NOT verifying signatures (no --secret given)'
  const stop = () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  }
  // Before the line below: whoever waits for it may signal the moment it appears.
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  process.stderr.write(`herald listen: listening on http://${host}:${port}/, ${mode}\n`)
}

async function receive(
  request: IncomingMessage,
  response: ServerResponse,
  receiver: Receiver,
): Promise<void> {
  if (request.method !== 'POST') {
    response.writeHead(405, { allow: 'POST' }).end()
    return
  }
  const body =
    Number(request.headers['content-length'] ?? 0) > BODY_LIMIT ? undefined : await readBody(request)
  if (body === undefined) {
    response.writeHead(413, { connection: 'close' }).end()
    return
  }
  const header = (name: string) => request.headers[name] as string | undefined
  const time = new Date().toISOString()
  const handshake = header('x-hook-secret')
  if (handshake !== undefined && header('webhook-signature') === undefined) {
    response.writeHead(200, { 'x-hook-secret': handshake }).end()
    process.stdout.write(`${time} ${request.url} handshake: X-Hook-Secret echoed -> 200\n`)
    return
  }
  const id = header('webhook-id')
  let outcome = 'unverified'
  let status = receiver.status
  if (receiver.secrets.length > 0) {
    const verdict = verify({
      id,
      timestamp: header('webhook-timestamp'),
      signature: header('webhook-signature'),
      body,
      secrets: receiver.secrets,
    })
    outcome = verdict.ok ? 'verified' : `INVALID signature (${verdict.reason})`
    if (!verdict.ok) status = 401
  }
  response.writeHead(status).end()
  const line = `${time} ${request.url} ${id ?? '-'} ${summary(body)} ${outcome} -> ${status}\n`
  process.stdout.write(receiver.printBody ? `${line}${body.toString()}\n` : line)
}

/** `topic#seq type` of the delivered event, or dashes for what is not one. */
function summary(body: Buffer): string {
  try {
    const event = JSON.parse(body.toString()) as { topic?: unknown; seq?: unknown; type?: unknown }
    return `${event.topic ?? '-'}#${event.seq ?? '-'} ${event.type ?? '-'}`
  } catch {
    return '-#- -'
  }
}

/** The whole body, or undefined once it passes BODY_LIMIT: a receiver must stay bounded too. */
async function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of request) {
    size += (chunk as Buffer).length
    if (size > BODY_LIMIT) return undefined
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}
