import { apiKeyProblem, ConfigError } from '../config/config.ts'
import { parseDuration } from '../core/duration.ts'
import { UsageError } from './usage.ts'

/** What the client commands share: where the server is, how to authenticate, how long to wait. */
export interface ClientOptions {
  url: string
  /** The credential sent as `Authorization: Bearer`: an API key or a signed token (JWT). */
  bearer: string | undefined
  /** How long to wait for the server to answer a request (its headers; a stream then runs on). */
  timeoutMs: number
}

export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
  token: { type: 'string' },
  timeout: { type: 'string' },
} as const

export const CLIENT_HELP = `  --url <url>          Herald's base URL (HERALD_URL, default http://127.0.0.1:8080)
  --api-key <key>      API key (HERALD_API_KEY)
  --token <jwt>        Signed token instead of an API key (HERALD_TOKEN; herald token mints one)
  --timeout <duration> How long to wait for the server to answer (default 30s)`

const DEFAULT_TIMEOUT = '30s'
/** A day: longer is a typo, and timers cannot count much further. */
const MAX_TIMEOUT_MS = 86_400_000

/** `help` is the command's help text, which a usage error prints. */
export function clientOptions(
  values: {
    url?: string | undefined
    'api-key'?: string | undefined
    token?: string | undefined
    timeout?: string | undefined
  },
  help: string,
): ClientOptions {
  const url = (values.url ?? process.env['HERALD_URL'] ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
  const source =
    values.url === undefined ? (process.env['HERALD_URL'] ? 'HERALD_URL' : 'the default') : '--url'
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    throw new ConfigError(`${source} is not an http(s) URL: "${url}".`)
  }
  let timeoutMs: number
  try {
    timeoutMs = parseDuration(values.timeout ?? DEFAULT_TIMEOUT)
  } catch (error) {
    throw new ConfigError(`Invalid --timeout: ${(error as Error).message}.`)
  }
  if (timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new ConfigError('Invalid --timeout: from 1ms to 1d.')
  }
  const credential = credentialOf(values, help)
  if (credential === undefined) return { url, bearer: undefined, timeoutMs }
  // Checked here rather than left to fetch, which refuses such a header with a TypeError. The message
  // says where the credential came from and what is wrong, never the credential.
  if (credential.kind === 'key') {
    const problem = apiKeyProblem(credential.value)
    if (problem !== undefined) {
      throw new ConfigError(`the API key (${credential.source}) cannot be sent: ${problem}`)
    }
  } else {
    const problem = tokenProblem(credential.value)
    if (problem !== undefined) {
      throw new ConfigError(`the token (${credential.source}) cannot be sent: ${problem}`)
    }
  }
  return { url, bearer: credential.value, timeoutMs }
}

interface Credential {
  kind: 'key' | 'token'
  value: string
  /** Where it came from: a flag or an environment variable. */
  source: string
}

/**
 * The credential to send: a flag wins over the environment; an API key and a token from the same
 * level are a usage error, as sending either one would silently ignore the other.
 */
function credentialOf(values: { 'api-key'?: string | undefined; token?: string | undefined }, help: string) {
  const key = values['api-key']
  const token = values.token
  if (key !== undefined && token !== undefined) {
    throw new UsageError('--api-key and --token do not go together: give one.', help)
  }
  if (key !== undefined) return { kind: 'key', value: key, source: '--api-key' } satisfies Credential
  if (token !== undefined) return { kind: 'token', value: token, source: '--token' } satisfies Credential
  const envKey = process.env['HERALD_API_KEY'] || undefined
  const envToken = process.env['HERALD_TOKEN'] || undefined
  if (envKey !== undefined && envToken !== undefined) {
    throw new UsageError(
      'HERALD_API_KEY and HERALD_TOKEN are both set: choose one with --api-key or --token (a flag wins over both).',
      help,
    )
  }
  if (envKey !== undefined)
    return { kind: 'key', value: envKey, source: 'HERALD_API_KEY' } satisfies Credential
  if (envToken !== undefined)
    return { kind: 'token', value: envToken, source: 'HERALD_TOKEN' } satisfies Credential
  return undefined
}

/** Why a token cannot be a header value, or undefined: a JWT is printable ASCII (base64url and dots). */
function tokenProblem(token: string): string | undefined {
  for (let index = 0; index < token.length; index++) {
    const code = token.charCodeAt(index)
    if (code < 0x21 || code > 0x7e) {
      return `it has a space, a control or a non-ASCII character (at position ${index + 1}), which a signed token (JWT) never has.`
    }
  }
  return undefined
}

/** The server could not be reached or did not answer: said in one line, with the URL tried. */
export class UnreachableError extends Error {
  override name = 'UnreachableError'
}

/**
 * fetch, with a deadline for the answer (its headers: the body of a stream may then run on), and a
 * failure to reach the server turned into one line that says which URL and what happened.
 * `extraWaitMs` is added to the deadline for requests the server holds on purpose (a long poll).
 */
export async function request(
  options: ClientOptions,
  path: string,
  init: RequestInit = {},
  extraWaitMs = 0,
): Promise<Response> {
  const url = `${options.url}${path}`
  const deadline = new AbortController()
  const timer = setTimeout(() => deadline.abort(), options.timeoutMs + extraWaitMs)
  const given = init.signal
  try {
    return await fetch(url, {
      ...init,
      signal: given ? AbortSignal.any([given, deadline.signal]) : deadline.signal,
    })
  } catch (error) {
    if (given?.aborted) throw error // the caller stopped: not a failure to report
    if (deadline.signal.aborted) {
      throw unreachable(url, `no answer within ${seconds(options.timeoutMs + extraWaitMs)} (timeout)`)
    }
    throw unreachable(url, whatHappened(error))
  } finally {
    clearTimeout(timer)
  }
}

export function unreachable(url: string, what: string): UnreachableError {
  return new UnreachableError(`cannot reach Herald at ${url}: ${what}; check --url or HERALD_URL.`)
}

/** What a network error means, in words (fetch wraps it in a TypeError's cause; ws does not). */
export function whatHappened(error: unknown): string {
  const cause = ((error as { cause?: unknown }).cause ?? error) as {
    code?: string
    hostname?: string
    message?: string
  }
  switch (cause.code) {
    case 'ECONNREFUSED':
      return 'connection refused (nothing listens there; is Herald running?)'
    case 'ENOTFOUND':
      return `DNS lookup of ${cause.hostname ?? 'the host'} failed: no such host (ENOTFOUND)`
    case 'EAI_AGAIN':
      return `DNS lookup of ${cause.hostname ?? 'the host'} failed: no answer from DNS (EAI_AGAIN)`
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return `connection timed out (${cause.code})`
    case 'ECONNRESET':
      return 'connection reset by the other side (ECONNRESET)'
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `no route to the host (${cause.code})`
    case 'UND_ERR_SOCKET':
      return 'the connection closed before an answer came (UND_ERR_SOCKET)'
  }
  const message = cause.message ?? (error as Error).message ?? String(error)
  return cause.code ? `${message} (${cause.code})` : message
}

export function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`
}

export function headers(options: ClientOptions, extra: Record<string, string> = {}): Record<string, string> {
  return options.bearer ? { ...extra, authorization: `Bearer ${options.bearer}` } : extra
}

/** Turns a problem+json answer into a one-line error message. */
export async function failure(response: Response): Promise<Error> {
  const text = await response.text()
  try {
    const problem = JSON.parse(text) as { title?: string; detail?: string }
    return new Error(`${response.status} ${problem.title ?? ''}: ${problem.detail ?? text}`)
  } catch {
    return new Error(`${response.status}: ${text}`)
  }
}

export function topicPath(topic: string): string {
  return `/v1/topics/${topic}`
}
