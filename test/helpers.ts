import { type ChildProcess, spawn } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Logger } from 'pino'
import { type Herald, startHerald } from '../src/app.ts'
import { type HeraldConfig, loadConfig } from '../src/config/config.ts'

export const ROOT = join(import.meta.dirname, '..')
export const MAIN = join(ROOT, 'src', 'cli', 'main.ts')
/** The installed command, as a user runs it. */
export const BIN = join(ROOT, 'bin', 'herald.js')

export async function tempDir(prefix = 'herald-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix))
}

export interface TestServer {
  herald: Herald
  url: string
  dataDir: string
  close(): Promise<void>
}

/**
 * A real Herald on a free loopback port with its own SQLite directory; `logger` replaces its own
 * (the fuzz suite reads what the server logs).
 */
export async function startTestServer(
  overrides: Partial<HeraldConfig> = {},
  logger?: Logger,
): Promise<TestServer> {
  const dataDir = await tempDir()
  // An empty environment: the developer's own HERALD_* variables must not change the tests.
  const config = {
    ...loadConfig({ port: '0', data: dataDir, 'log-level': 'silent', 'shutdown-timeout': '1s' }, {}),
    // Tests open many connections from loopback at once; test/http/rate-limit.test.ts turns it on.
    connectionRatePerIp: null,
    ...overrides,
  }
  const herald = await startHerald(config, logger)
  return {
    herald,
    url: herald.url,
    dataDir,
    async close() {
      await herald.close()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

export async function publish(
  url: string,
  topic: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${url}/v1/topics/${topic}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

export interface StoredEventJson {
  id: string
  type: string
  topic: string
  seq: number
  data?: unknown
  [key: string]: unknown
}

export async function readAll(url: string, topic: string, headers: Record<string, string> = {}) {
  const events: StoredEventJson[] = []
  let after = 0
  for (;;) {
    const response = await fetch(`${url}/v1/topics/${topic}/events?after=${after}&limit=1000`, { headers })
    if (response.status !== 200) throw new Error(`read failed: ${response.status} ${await response.text()}`)
    const page = (await response.json()) as { events: StoredEventJson[]; next: number }
    events.push(...page.events)
    if (page.events.length === 0) return events
    after = page.next
  }
}

/** Checks that a response is RFC 9457 problem+json with the given status, and returns its body. */
export async function problemOf(response: Response, status: number) {
  const text = await response.text()
  if (response.status !== status) throw new Error(`expected ${status}, got ${response.status}: ${text}`)
  const type = response.headers.get('content-type') ?? ''
  if (!type.startsWith('application/problem+json')) throw new Error(`not problem+json: ${type}`)
  const body = JSON.parse(text) as {
    type: string
    title: string
    status: number
    detail: string
    field?: string
    code?: string
    /** Members some problems add (a schema mismatch's `errors`, …). */
    // biome-ignore lint/suspicious/noExplicitAny: test assertions read them freely
    [member: string]: any
  }
  for (const key of ['type', 'title', 'detail'] as const) {
    if (typeof body[key] !== 'string' || body[key] === '') throw new Error(`problem without ${key}: ${text}`)
  }
  if (body.status !== status) throw new Error(`problem status ${body.status} != ${status}`)
  return body
}

export interface ServerProcess {
  child: ChildProcess
  url: string
  /** Everything the process wrote to stderr and stdout so far. */
  output: () => string
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * `herald serve` as a separate process, as an operator runs it; resolves once it logs that it listens
 * (so the log level must be info or finer).
 */
export function spawnServer(
  args: string[],
  env: Record<string, string> = {},
  /** Another runtime and entry (an older `node` with bin/herald.js), or its own process group. */
  how: { node?: string; entry?: string; detached?: boolean } = {},
): Promise<ServerProcess> {
  const { node = process.execPath, entry = MAIN, detached = false } = how
  const child = spawn(node, [entry, 'serve', '--port', '0', ...args], {
    // Without the connection rate per address (as startTestServer): tests, and nginx in front of a
    // cluster, open many connections from loopback at once. `env` may set it.
    env: { PATH: process.env['PATH'] ?? '', HERALD_CONNECTION_RATE_PER_IP: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  })
  let output = ''
  child.stderr!.on('data', (chunk) => {
    output += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`herald serve did not log "herald is listening" within 60 s:\n${output}`))
      // Generous: three nodes starting at once on a loaded 2-core machine took over 20 s in CI.
    }, 60_000)
    void exited.then(() => clearTimeout(timer))
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      output += `${line}\n`
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string }
        if (entry.msg === 'herald is listening' && entry.url) {
          clearTimeout(timer)
          resolve({ child, url: entry.url, output: () => output, exited })
        }
      } catch {
        // not a log line
      }
    })
    void exited.then(({ code, signal }) =>
      reject(new Error(`herald serve exited (${code ?? signal}) before listening:\n${output}`)),
    )
  })
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

export interface CliRun {
  code: number | null
  stdout: string
  stderr: string
}

/**
 * Runs `herald …` (bin/herald.js) to its exit, with only PATH and `env` in its environment, killed
 * after `timeoutMs` if it is still running then (a command that should fail but hangs or retries
 * shows as `timedOut`).
 */
export function runCliUntilExit(
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<CliRun & { timedOut: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr, timedOut })
    })
  })
}

/** Runs `herald …` (bin/herald.js) to its exit, with only PATH and `env` in its environment. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env['PATH'] ?? '', ...options.env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr!.on('data', (chunk) => {
      stderr += chunk
    })
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
    child.stdin!.end(options.input)
  })
}

/**
 * A host name that DNS resolves to a loopback address (this machine's own name, on most), for the
 * SSRF guard's tests; undefined when there is none, and the test then skips saying so.
 */
export async function loopbackHostName(): Promise<string | undefined> {
  const name = hostname()
  const resolved = await lookup(name, { all: true }).catch(() => [])
  return resolved.some((address) => address.address.startsWith('127.')) ? name : undefined
}

export const NO_LOOPBACK_NAME =
  "SKIPPED: this machine's host name does not resolve to 127.x, so there is no such name to try"

/** Polls `probe` until it returns something other than undefined; throws naming `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** What a raw HTTP/1.1 exchange answered: the status, the headers (lowercased) and the body. */
interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

/**
 * Sends a request exactly as written (request target included: no client normalizes it) and reads
 * the answer up to the end of its Content-Length body, or the close.
 */
export function raw(
  url: string,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body = '',
) {
  const { hostname, port } = new URL(url)
  return new Promise<RawAnswer>((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let text = ''
    const finish = () => {
      socket.destroy()
      const [head = '', ...rest] = text.split('\r\n\r\n')
      const [statusLine = '', ...lines] = head.split('\r\n')
      const answer: RawAnswer = {
        status: Number(statusLine.split(' ')[1]),
        headers: {},
        body: rest.join('\r\n\r\n'),
      }
      for (const line of lines) {
        const colon = line.indexOf(':')
        answer.headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
      }
      resolve(answer)
    }
    socket.setEncoding('utf8')
    socket.on('data', (chunk) => {
      text += chunk
      const end = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: (\d+)/i.exec(text.slice(0, end))
      if (end !== -1 && length && text.length >= end + 4 + Number(length[1])) finish()
    })
    socket.on('end', finish)
    socket.on('error', reject)
    const { host = `${hostname}:${port}`, ...others } = headers
    const extra = Object.entries(others)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')
    socket.write(`${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n${body}`)
  })
}
