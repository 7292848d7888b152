import assert from 'node:assert/strict'
import { connect } from 'node:net'
import type { TestContext } from 'node:test'
import fc from 'fast-check'
import pino from 'pino'
import type { HeraldConfig } from '../../src/config/config.ts'
import { startTestServer, type TestServer } from '../helpers.ts'

/**
 * What the fuzz suite shares: its seed and budget, one real server per file whose error log is read,
 * a raw HTTP client that sends any bytes, and the checks every answer must pass.
 *
 * Reproducing: every property prints its seed (a test diagnostic) and, on failure, the seed, the
 * counterexample's path and the command that replays it. HERALD_FUZZ_SEED replays a whole file's
 * sequence of inputs; HERALD_FUZZ_PATH (with --test-name-pattern naming the one property) replays one
 * counterexample; HERALD_FUZZ_RUNS asks for that many runs per property, without the time limit.
 */

function envNumber(name: string): number | undefined {
  const text = process.env[name]
  if (text === undefined || text === '') return undefined
  const value = Number(text)
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be a whole number, not "${text}"`)
  return value
}

// fast-check seeds are 32-bit integers: a time in ms is folded into that range.
export const SEED = envNumber('HERALD_FUZZ_SEED') ?? Date.now() % 2 ** 31
const PATH = process.env['HERALD_FUZZ_PATH'] || undefined
const RUNS = envNumber('HERALD_FUZZ_RUNS')

/** A single run that takes longer than this fails (a request the server never answers, a freeze). */
const RUN_TIMEOUT_MS = 15_000

export interface Budget {
  /** Runs of the property; fewer when the time limit comes first. */
  runs: number
  /** Time limit of the whole property, shrinking included, in seconds. */
  seconds: number
  /** Counts of what came up, printed with the seed. */
  outcomes?: Outcomes
  /**
   * The server under test: what it logs is taken per run (assertAlive), and an error it logs between
   * runs (asynchronous work that outlived its run) fails the property after the runs.
   */
  server?: FuzzServer
}

/**
 * Runs an async property with the file's seed and the budget; prints the seed and the runs done, and
 * on failure throws fast-check's report (seed, path, counterexample, the error) with the command that
 * replays it.
 */
export async function checkProperty<Ts>(
  t: TestContext,
  file: string,
  property: fc.IAsyncProperty<Ts>,
  { runs, seconds, outcomes, server }: Budget,
): Promise<void> {
  const stray: string[] = []
  const details = await fc.check(property, {
    seed: SEED,
    numRuns: RUNS ?? runs,
    ...(PATH === undefined ? {} : { path: PATH }),
    plugins: [
      fc.timeout(RUN_TIMEOUT_MS),
      ...(RUNS === undefined ? [fc.interruptAfterTimeLimit(seconds * 1000)] : []),
      // Each run starts with an empty log, so that a run (and its shrinking) answers for its own.
      ...(server === undefined
        ? []
        : [
            fc.beforeEach(() => {
              stray.push(...server.takeErrors())
            }),
          ]),
    ],
  })
  // The test's name as a --test-name-pattern (a regular expression) that matches it, shell-quoted.
  const pattern = `'^${t.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll("'", '.')}$'`
  const replay = `HERALD_FUZZ_SEED=${details.seed} npx node --test --test-name-pattern=${pattern} ${file}`
  t.diagnostic(
    `seed ${details.seed}: ${details.numRuns} runs${details.interrupted ? ' (time limit reached)' : ''}; replay: ${replay}`,
  )
  if (outcomes) t.diagnostic(`outcomes: ${outcomes.summary()}`)
  if (details.failed) {
    const full = (await fc.asyncDefaultReportMessage(details)) ?? ''
    // Counterexamples with very long strings would bury the rest of the report.
    const report = full.length > 6000 ? `${full.slice(0, 6000)}… (${full.length} characters)` : full
    throw new Error(
      `${report}\n\nThe failure: ${String(details.errorInstance).slice(0, 3000)}\n\nReplay this counterexample:\n  HERALD_FUZZ_SEED=${details.seed} HERALD_FUZZ_PATH=${details.counterexamplePath} npx node --test --test-name-pattern=${pattern} ${file}\nor the whole run:\n  ${replay}\n`,
    )
  }
  stray.push(...(server?.takeErrors() ?? []))
  assert.deepEqual(
    stray,
    [],
    `the server logged errors between runs (work that outlived its request); ${replay}`,
  )
}

/** How often each outcome came up, printed with the seed: a property that never reaches past its
 * first check shows here. */
export class Outcomes {
  private readonly counts = new Map<string, number>()
  add(outcome: string | number): void {
    this.counts.set(String(outcome), (this.counts.get(String(outcome)) ?? 0) + 1)
  }
  summary(): string {
    return [...this.counts]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([outcome, count]) => `${outcome} ×${count}`)
      .join(', ')
  }
}

export interface FuzzServer extends TestServer {
  port: number
  /** Lines the server logged at level error or above since the last `takeErrors`. */
  takeErrors(): string[]
}

/** One real Herald for a file, whose error log is kept: an error it logs is a defect the fuzz found. */
export async function startFuzzServer(overrides: Partial<HeraldConfig> = {}): Promise<FuzzServer> {
  let errors: string[] = []
  const logger = pino(
    { level: 'error' },
    {
      write(line: string) {
        errors.push(line)
      },
    },
  )
  const server = await startTestServer(overrides, logger)
  return {
    ...server,
    port: Number(new URL(server.url).port),
    takeErrors() {
      const taken = errors
      errors = []
      return taken
    },
  }
}

export interface Answer {
  status: number
  headers: Record<string, string>
  body: Buffer
  text: string
}

export interface RawRequest {
  method: string
  target: string
  /**
   * Sent as written, in this order, after Host; a Content-Length is added for a body unless given, and
   * `Connection: close` unless a Connection header is.
   */
  headers?: Array<[string, string]>
  body?: Buffer | string
  /** For a stream (a 200 without Content-Length): how long to read it, or until `enough` says so. */
  streamMs?: number
  enough?: (body: Buffer) => boolean
}

/**
 * One request on its own connection, with the bytes exactly as given (no client normalizes the
 * target or the headers), and its answer: read up to its Content-Length, its last chunk, the close,
 * or, for a stream, `streamMs`.
 */
export function send(port: number, request: RawRequest): Promise<Answer> {
  const body =
    typeof request.body === 'string' ? Buffer.from(request.body) : (request.body ?? Buffer.alloc(0))
  const headers = request.headers ?? []
  let head = `${request.method} ${request.target} HTTP/1.1\r\n`
  if (!headers.some(([name]) => name.toLowerCase() === 'host')) head += `Host: 127.0.0.1:${port}\r\n`
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`
  if (body.length > 0 && !headers.some(([name]) => name.toLowerCase() === 'content-length'))
    head += `Content-Length: ${body.length}\r\n`
  if (!headers.some(([name]) => name.toLowerCase() === 'connection')) head += 'Connection: close\r\n'
  head += '\r\n'
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let received = Buffer.alloc(0)
    let settled = false
    let streamTimer: NodeJS.Timeout | undefined
    const finish = () => {
      if (settled) return
      settled = true
      clearTimeout(streamTimer)
      socket.destroy()
      const answer = parseAnswer(received)
      if (answer === undefined) {
        reject(
          new Error(
            `no HTTP answer to ${request.method} ${request.target.slice(0, 200)} (connection closed)`,
          ),
        )
      } else resolve(answer)
    }
    const check = () => {
      const end = received.indexOf('\r\n\r\n')
      if (end === -1) return
      const answer = parseAnswer(received)!
      // Switched protocols, or the answer to a HEAD (no body, whatever its Content-Length says).
      if (answer.status === 101 || request.method === 'HEAD') return finish()
      const length = answer.headers['content-length']
      if (length !== undefined) {
        if (received.length >= end + 4 + Number(length)) finish()
      } else if (answer.headers['transfer-encoding']?.includes('chunked')) {
        if (received.includes('\r\n0\r\n\r\n', end) || received.subarray(end + 4).indexOf('0\r\n\r\n') === 0)
          finish()
      } else if (answer.status === 200 || answer.status === 204 || answer.status === 304) {
        // A stream (close-delimited): read it for a while, or until it holds what was expected.
        if (answer.status !== 200) return finish()
        if (request.enough?.(answer.body)) return finish()
        streamTimer ??= setTimeout(finish, request.streamMs ?? 100)
      }
    }
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      received = Buffer.concat(chunks)
      check()
    })
    socket.on('end', finish)
    socket.on('close', finish)
    socket.on('error', (error) => {
      // The server may close while the body is still being written (it refused before reading it).
      if (
        (error as NodeJS.ErrnoException).code === 'EPIPE' ||
        (error as NodeJS.ErrnoException).code === 'ECONNRESET'
      )
        return finish()
      if (!settled) {
        settled = true
        reject(error)
      }
    })
    socket.write(Buffer.concat([Buffer.from(head, 'utf8'), body]))
  })
}

function parseAnswer(received: Buffer): Answer | undefined {
  const end = received.indexOf('\r\n\r\n')
  if (end === -1) return undefined
  const [statusLine = '', ...lines] = received.subarray(0, end).toString('latin1').split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  let body = received.subarray(end + 4)
  if (headers['transfer-encoding']?.includes('chunked')) body = dechunk(body)
  return { status: Number(statusLine.split(' ')[1]), headers, body, text: body.toString('utf8') }
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  for (;;) {
    const line = data.indexOf('\r\n', at)
    if (line === -1) break
    const size = Number.parseInt(data.subarray(at, line).toString('latin1'), 16)
    if (!(size > 0)) break
    parts.push(data.subarray(line + 2, line + 2 + size))
    at = line + 2 + size + 2
  }
  return Buffer.concat(parts)
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
}

/**
 * The contract of every answer: no 5xx, and an error is RFC 9457 problem+json whose `status` is the
 * HTTP status, with a non-empty `type`, `title` and `detail`. Returns the problem of an error.
 */
export function assertAnswer(answer: Answer, what: string): Problem | undefined {
  assert.ok(
    Number.isInteger(answer.status) && answer.status >= 100,
    `${what}: not an HTTP answer: ${answer.text.slice(0, 300)}`,
  )
  assert.ok(answer.status < 500, `${what}: ${answer.status} ${answer.text.slice(0, 500)}`)
  if (answer.status < 400) return undefined
  const type = answer.headers['content-type'] ?? ''
  assert.ok(
    type.startsWith('application/problem+json'),
    `${what}: a ${answer.status} in ${type || 'no Content-Type'}: ${answer.text.slice(0, 300)}`,
  )
  let problem: Problem
  try {
    problem = JSON.parse(answer.text) as Problem
  } catch {
    assert.fail(`${what}: a ${answer.status} whose problem+json does not parse: ${answer.text.slice(0, 300)}`)
  }
  for (const key of ['type', 'title', 'detail'] as const) {
    assert.ok(
      typeof problem[key] === 'string' && problem[key] !== '',
      `${what}: problem without ${key}: ${answer.text.slice(0, 300)}`,
    )
  }
  assert.equal(
    problem.status,
    answer.status,
    `${what}: problem status ${problem.status} in a ${answer.status}`,
  )
  return problem
}

/** What the store holds, as the API shows it: every topic with its head, size and retention. */
export async function topicsSnapshot(url: string): Promise<unknown[]> {
  const topics: unknown[] = []
  let after = ''
  for (;;) {
    const response = await fetch(
      `${url}/v1/topics?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`,
    )
    assert.equal(response.status, 200, `GET /v1/topics: ${response.status}`)
    const page = (await response.json()) as { topics: Array<{ topic: string }>; next: string | null }
    topics.push(...page.topics)
    if (page.next === null) return topics
    after = page.next
  }
}

/** The server still answers, and logged no error while it served the last run. */
export async function assertAlive(server: FuzzServer, what: string): Promise<void> {
  const health = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(5_000) })
  assert.equal(health.status, 200, `${what}: /healthz answered ${health.status}`)
  await health.arrayBuffer()
  const logged = server.takeErrors()
  assert.deepEqual(logged, [], `${what}: the server logged an error`)
}

// ---- generators shared by the files --------------------------------------------------------------

/** `arbitrary`'s value `percent` % of the time, else undefined (clearer than fc.option's `freq`). */
export function maybe<T>(arbitrary: fc.Arbitrary<T>, percent: number): fc.Arbitrary<T | undefined> {
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 100 - percent },
    { arbitrary, weight: percent },
  )
}

/** Characters that break parsers and framings: controls, quotes, separators, surrogates, BOM, emoji. */
const NASTY_CHARS = [
  '\u0000',
  '\u0001',
  '\t',
  '\n',
  '\r',
  '\u001f',
  '\u007f',
  '"',
  "'",
  '\\',
  '/',
  '%',
  '.',
  '*',
  '?',
  '#',
  '&',
  '=',
  '+',
  ';',
  ',',
  ':',
  ' ',
  '~',
  '\u00a0',
  '\u00e9',
  '\u2028',
  '\u2029',
  '\ud800',
  '\udfff',
  '\ufeff',
  '\ufffd',
  '\u{1f600}',
  '\u202e',
]

/** Strings mixing plain text with hostile characters, full Unicode, and now and then a very long one. */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.string({ maxLength: 20 }), weight: 4 },
  { arbitrary: fc.string({ unit: fc.constantFrom(...NASTY_CHARS), maxLength: 12 }), weight: 3 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }), weight: 2 },
  {
    arbitrary: fc
      .tuple(fc.string({ minLength: 1, maxLength: 3 }), fc.integer({ min: 100, max: 5000 }))
      .map(([part, times]) => part.repeat(times)),
    weight: 1,
  },
)

/** Number literals as JSON text, with the forms that trip parsers and serializers. */
export const numberText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '0',
    '-0',
    '1e400',
    '-1e400',
    '1E+400',
    '1e-400',
    '123456789012345678901234567890',
    '9007199254740993',
    '0.1',
    '1.0',
    '2e308',
    '-9007199254740992',
    '5e-324',
    '1.7976931348623157e308',
  ),
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
)

/** A JSON value as text: nested structures, hostile strings and keys, odd numbers, deep nesting. */
export const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { arbitrary: numberText, weight: 3 },
    { arbitrary: hostileString.map((s) => JSON.stringify(s)), weight: 3 },
    { arbitrary: fc.constantFrom('true', 'false', 'null', '"\\ud800"', '"\\u0000"', '{}', '[]'), weight: 2 },
    { arbitrary: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`), weight: 2 },
    {
      arbitrary: fc
        .array(
          fc.tuple(
            fc.oneof(hostileString, fc.constantFrom('__proto__', 'constructor', 'prototype', 'type', 'data')),
            tie('value'),
          ),
          { maxLength: 4 },
        )
        .map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`),
      weight: 2,
    },
    { arbitrary: deepText(), weight: 1 },
  ),
})).value

/** Arrays or objects nested around the depth limit (100), or far beyond it. */
export function deepText(): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.oneof(fc.integer({ min: 95, max: 105 }), fc.integer({ min: 1000, max: 100_000 })),
      fc.constantFrom('[', '{"a":'),
      fc.constantFrom('1', '1e400', '"x"', 'null'),
    )
    .map(([depth, open, leaf]) => open.repeat(depth) + leaf + (open === '[' ? ']' : '}').repeat(depth))
}

/** Valid topic names, short and at the length limit. */
export const validTopic: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('a', 'orders', 'fz/x', 'A.b-c~d_e', '0/1/2', 'x'.repeat(200)),
  fc
    .array(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._~-]{0,8}$/), { minLength: 1, maxLength: 4 })
    .map((segments) => segments.join('/'))
    .filter((name) => !name.split('/').includes('events')),
)

/** Topic names that must be refused, and some that look almost right. */
export const hostileTopic: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    '.',
    '..',
    '../x',
    'a//b',
    '/a',
    'a/',
    'events',
    'a/events',
    'events/a',
    '.hidden',
    '-x',
    '_x',
    'x'.repeat(201),
    'a b',
    'a%2Fb',
    'herald.system',
    'herald.websub/x',
    '__proto__',
    'constructor',
    'ünï',
  ),
  hostileString,
)

export const anyTopic = fc.oneof({ arbitrary: validTopic, weight: 3 }, { arbitrary: hostileTopic, weight: 2 })

/** Percent-encodes every byte of the UTF-8 of `text`, or only the ones a URL must not carry. */
export function percentEncode(text: string, all: boolean): string {
  let out = ''
  for (const byte of Buffer.from(text)) {
    const c = String.fromCharCode(byte)
    out +=
      all || byte <= 0x20 || byte >= 0x7f || '%?#"<>\\^`{|}'.includes(c)
        ? `%${byte.toString(16).padStart(2, '0').toUpperCase()}`
        : c
  }
  return out
}
