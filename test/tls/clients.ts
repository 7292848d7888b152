import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { type ClientHttp2Session, type ClientHttp2Stream, connect as h2connect } from 'node:http2'
import { request as httpsRequest, type RequestOptions } from 'node:https'
import { join } from 'node:path'
import { after, before } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { tempDir } from '../helpers.ts'

export const OPENSSL = '/usr/bin/openssl'

export interface TestCert {
  certFile: string
  keyFile: string
  cert: Buffer
  fingerprint: string
}

/** A self-signed P-256 certificate for localhost and 127.0.0.1, valid a day, made by openssl. */
export function makeCert(dir: string, name = 'server'): TestCert {
  const certFile = join(dir, `${name}.crt`)
  const keyFile = join(dir, `${name}.key`)
  execFileSync(
    OPENSSL,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ],
    { stdio: 'ignore' },
  )
  const cert = readFileSync(certFile)
  return { certFile, keyFile, cert, fingerprint: new X509Certificate(cert).fingerprint256 }
}

/** In a describe block: a certificate made before its tests, in a directory removed after them. */
export function certFixture(): { readonly cert: TestCert } {
  let dir: string | undefined
  let cert: TestCert | undefined
  before(async () => {
    dir = await tempDir()
    cert = makeCert(dir)
  })
  after(() => (dir === undefined ? undefined : rm(dir, { recursive: true, force: true })))
  return {
    get cert() {
      if (cert === undefined) throw new Error('certFixture: used before its before() hook ran')
      return cert
    },
  }
}

/** The fingerprint of the certificate a new TLS handshake with `url` sees, and the protocol ALPN chose. */
export async function handshake(url: string): Promise<{ fingerprint: string; alpn: string | false }> {
  const { hostname, port } = new URL(url)
  const socket = tlsConnect({
    host: hostname,
    port: Number(port),
    rejectUnauthorized: false,
    ALPNProtocols: ['h2', 'http/1.1'],
  })
  await once(socket, 'secureConnect')
  const result = {
    fingerprint: socket.getPeerX509Certificate()!.fingerprint256,
    alpn: socket.alpnProtocol ?? false,
  }
  socket.destroy()
  return result
}

export function h2session(url: string, ca: Buffer): ClientHttp2Session {
  const session = h2connect(url, { ca, servername: 'localhost' })
  session.on('error', () => undefined)
  return session
}

export interface Answer {
  status: number
  headers: Record<string, unknown>
  body: string
}

/** One HTTP/2 request, read whole. */
export async function h2fetch(
  session: ClientHttp2Session,
  path: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const stream = session.request({ ':method': init.method ?? 'GET', ':path': path, ...init.headers })
  if (init.body !== undefined) stream.end(init.body)
  else stream.end()
  const [headers] = (await once(stream, 'response')) as [Record<string, unknown>]
  let body = ''
  stream.setEncoding('utf8')
  for await (const chunk of stream) body += chunk
  return { status: Number(headers[':status']), headers, body }
}

/** One HTTP/1.1 request over TLS (node:https, the test CA trusted), read whole. */
export async function h1fetch(
  url: string,
  ca: Buffer,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer & { alpn: string | false | null; httpVersion: string }> {
  const request = httpsRequest(url, {
    method: init.method ?? 'GET',
    headers: init.headers,
    ca,
    servername: 'localhost',
    agent: false,
    // As a browser that speaks HTTP/1.1 only asks (node's https client sends no ALPN by default).
    ALPNProtocols: ['http/1.1'],
  } as RequestOptions)
  request.end(init.body)
  const [response] = (await once(request, 'response')) as [import('node:http').IncomingMessage]
  let body = ''
  response.setEncoding('utf8')
  for await (const chunk of response) body += chunk
  return {
    status: response.statusCode!,
    headers: response.headers,
    body,
    alpn: (response.socket as import('node:tls').TLSSocket).alpnProtocol,
    httpVersion: response.httpVersion,
  }
}

/** A streaming answer (SSE, NDJSON) read as it comes, over HTTP/2 or HTTP/1.1. */
export class TextStream {
  text = ''
  status = 0
  headers: Record<string, unknown> = {}
  ended = false
  private waiters: Array<() => void> = []
  readonly close: () => void

  constructor(source: NodeJS.ReadableStream, close: () => void) {
    this.close = close
    source.setEncoding('utf8')
    source.on('data', (chunk: string) => {
      this.text += chunk
      this.wake()
    })
    const end = () => {
      this.ended = true
      this.wake()
    }
    source.on('end', end)
    source.on('close', end)
    source.on('error', end)
  }

  private wake() {
    for (const wake of this.waiters.splice(0)) wake()
  }

  async until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out; received so far:\n${this.text.slice(-2000)}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  /** The SSE frames with data: their id and parsed data. */
  sse(): Array<{ id: string | undefined; data: { seq: number; data: unknown } }> {
    return this.text
      .split('\n\n')
      .slice(0, -1)
      .flatMap((frame) => {
        const lines = frame.split('\n')
        const data = lines.find((line) => line.startsWith('data: '))
        if (data === undefined) return []
        const id = lines.find((line) => line.startsWith('id: '))?.slice(4)
        return [{ id, data: JSON.parse(data.slice(6)) as { seq: number; data: unknown } }]
      })
  }

  ndjson(): Array<{ seq: number; data: unknown }> {
    return this.text
      .split('\n')
      .slice(0, -1)
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as { seq: number; data: unknown })
      .filter((event) => typeof event.seq === 'number')
  }
}

export async function h2stream(
  session: ClientHttp2Session,
  path: string,
  headers: Record<string, string>,
): Promise<TextStream & { stream: ClientHttp2Stream }> {
  const stream = session.request({ ':path': path, ...headers })
  stream.end()
  const [answer] = (await once(stream, 'response')) as [Record<string, unknown>]
  const reader = new TextStream(stream, () => stream.close()) as TextStream & { stream: ClientHttp2Stream }
  reader.stream = stream
  reader.status = Number(answer[':status'])
  reader.headers = answer
  return reader
}

export async function h1stream(
  url: string,
  ca: Buffer,
  headers: Record<string, string>,
): Promise<TextStream> {
  const request = httpsRequest(url, { headers, ca, servername: 'localhost', agent: false })
  request.end()
  const [response] = (await once(request, 'response')) as [import('node:http').IncomingMessage]
  const reader = new TextStream(response, () => request.destroy())
  reader.status = response.statusCode!
  reader.headers = response.headers
  return reader
}
