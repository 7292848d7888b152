import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { resolve } from 'node:path'
import type { RateLimit } from '../access/principal.ts'
import { parseRate } from '../access/rate.ts'
import { MAX_TIMER_MS, parseDuration, parseDurationList } from '../core/duration.ts'
import { ulid } from '../core/event.ts'
import type { Retention } from '../store/store.ts'

/** Everything `herald serve` can be told, resolved and validated. */
export interface HeraldConfig {
  host: string
  port: number
  dataDir: string
  apiKey: string | undefined
  /** Signed tokens (JWT): what src/access/tokens.ts createTokenVerifier takes; all unset = not accepted. */
  jwt: JwtConfig
  publicUrl: string
  retryScheduleMs: number[]
  deliveryTimeoutMs: number
  dispatchConcurrency: number
  dispatchWorkers: 0 | 1
  disableAfterMs: number
  secretGraceMs: number
  websubLease: { minSeconds: number; defaultSeconds: number; maxSeconds: number }
  websubPublic: boolean
  heartbeatMs: number
  allowPrivateTargets: boolean
  databaseUrl: string | undefined
  databaseSchema: string
  busUrl: string | undefined
  bodyLimitBytes: number
  retention: Retention
  idempotencyTtlMs: number
  pruneIntervalMs: number
  sqliteSync: 'full' | 'normal'
  logLevel: string
  maxConnections: number
  maxConnectionsPerIp: number | null
  /** New TCP connections one client address may open, per window (--connection-rate-per-ip); null: no limit. */
  connectionRatePerIp: RateLimit | null
  /** The default request budget per key, token `sub` or anonymous address (--rate-limit); null: none. */
  rateLimit: RateLimit | null
  maxSubscriptionsPerSocket: number
  /** Live presence members per topic, cluster-wide (--max-presence-members). */
  maxPresenceMembers: number
  /**
   * Presence timing (src/streams/presence.ts): not a flag; tests shorten it. Absent: a member lives
   * 30 s unless its node refreshes it (every 10 s), and each node reads the members of the topics its
   * sockets watch every second.
   */
  presenceTiming?: { ttlMs: number; refreshMs: number; pollMs: number }
  maxTopicsPerStream: number
  headersTimeoutMs: number
  requestTimeoutMs: number
  streamBufferBytes: number
  streamStallTimeoutMs: number
  corsOrigins: string[]
  shutdownTimeoutMs: number
  nodeId: string
  /**
   * --tls-cert / --tls-key: HTTPS with HTTP/2 and HTTP/1.1 on the port (ALPN). The files' paths; they
   * are read at the start and again on SIGHUP. Undefined: plain HTTP/1.1.
   */
  tls: TlsFiles | undefined
  /**
   * How long an HTTP/2 connection may go without any traffic before it is closed (src/http/server.ts):
   * not a flag; tests shorten it. Absent: 72 s, or three heartbeats if longer.
   */
  http2IdleTimeoutMs?: number
}

/** The PEM files of the server's certificate (chain) and its private key. */
export interface TlsFiles {
  certFile: string
  keyFile: string
}

export interface JwtConfig {
  /** HERALD_JWT_SECRET: the HS256 secret. */
  secret: string | undefined
  /** HERALD_JWT_PUBLIC_KEY: the PEM text (read from the file when the variable named one). */
  publicKeyPem: string | undefined
  /** HERALD_JWT_AUDIENCE: the `aud` tokens must name. */
  audience: string | undefined
}

/**
 * One table for every option: the CLI's flags, the environment variables, the defaults and the
 * `--help` text all come from here, so they cannot drift apart. `env` only: never a flag, because
 * a flag's value shows in the process list.
 */
export const OPTIONS = [
  { flag: 'port', env: 'HERALD_PORT', default: '8080', help: 'TCP port to listen on (0 picks a free one).' },
  { flag: 'host', env: 'HERALD_HOST', default: '127.0.0.1', help: 'Address to bind.' },
  {
    flag: 'data',
    env: 'HERALD_DATA',
    default: './herald-data',
    help: 'Directory of the embedded SQLite store.',
  },
  {
    flag: undefined,
    env: 'HERALD_API_KEY',
    default: undefined,
    help: 'Admin API key (Bearer). Unset: open access, allowed only on a loopback address.',
  },
  {
    // Environment only: a secret.
    flag: undefined,
    env: 'HERALD_JWT_SECRET',
    default: undefined,
    help: 'Secret (at least 32 bytes) that verifies HS256 signed tokens (JWT) as credentials; herald token mints them.',
  },
  {
    // Environment only: PEM text is several lines, awkward as a flag.
    flag: undefined,
    env: 'HERALD_JWT_PUBLIC_KEY',
    default: undefined,
    help: 'Public key that verifies signed tokens (JWT): PEM text, or the path of a PEM file. Its type decides the one algorithm: RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA.',
  },
  {
    flag: 'jwt-audience',
    env: 'HERALD_JWT_AUDIENCE',
    default: undefined,
    help: 'When set, signed tokens must name it in their "aud" claim.',
  },
  {
    flag: 'public-url',
    env: 'HERALD_PUBLIC_URL',
    default: undefined,
    help: 'Base URL of this server as clients see it (default http://HOST:PORT, https://HOST:PORT with --tls-cert).',
  },
  {
    flag: 'retry-schedule',
    env: 'HERALD_RETRY_SCHEDULE',
    default: '0s,5s,5m,30m,2h,5h,10h,10h',
    help: 'Delays before each webhook/WebSub delivery attempt.',
  },
  {
    flag: 'delivery-timeout',
    env: 'HERALD_DELIVERY_TIMEOUT',
    default: '15s',
    help: 'Longest a webhook/WebSub attempt may take, connecting included; then it is retried.',
  },
  {
    flag: 'dispatch-concurrency',
    env: 'HERALD_DISPATCH_CONCURRENCY',
    default: '64',
    help: 'Webhook/WebSub requests this process has in flight at most, over all hooks.',
  },
  {
    flag: 'dispatch-workers',
    env: 'HERALD_DISPATCH_WORKERS',
    default: '1',
    help: '1: sign and send webhook/WebSub requests on a worker thread; 0: on the main thread.',
  },
  {
    flag: 'disable-after',
    env: 'HERALD_DISABLE_AFTER',
    default: '5d',
    help: 'A hook whose deliveries have failed continuously this long is disabled.',
  },
  {
    flag: 'secret-grace',
    env: 'HERALD_SECRET_GRACE',
    default: '24h',
    help: "After a hook's secret is rotated, how long the old one still signs too.",
  },
  {
    flag: 'websub-lease-min',
    env: 'HERALD_WEBSUB_LEASE_MIN',
    default: '1m',
    help: 'Shortest WebSub lease granted (a shorter hub.lease_seconds is raised to it).',
  },
  {
    flag: 'websub-lease-default',
    env: 'HERALD_WEBSUB_LEASE_DEFAULT',
    default: '10d',
    help: 'WebSub lease granted when the subscriber asks for none.',
  },
  {
    flag: 'websub-lease-max',
    env: 'HERALD_WEBSUB_LEASE_MAX',
    default: '30d',
    help: 'Longest WebSub lease granted (leases always end: none is perpetual).',
  },
  {
    flag: 'websub-public',
    env: 'HERALD_WEBSUB_PUBLIC',
    default: 'false',
    help: 'With HERALD_API_KEY set, let POST /websub be used without the key (a public hub).',
  },
  {
    flag: 'heartbeat',
    env: 'HERALD_HEARTBEAT',
    default: '15s',
    help: 'Keep-alive interval for idle streams.',
  },
  {
    flag: 'allow-private-targets',
    env: 'HERALD_ALLOW_PRIVATE_TARGETS',
    default: 'false',
    help: 'Let webhook/WebSub targets be loopback or private addresses (local development only).',
  },
  {
    // Environment only: the URL may carry a password, and a flag's value shows in the process list.
    flag: undefined,
    env: 'HERALD_DATABASE_URL',
    default: undefined,
    help: 'postgres://user:password@host:5432/database to store everything in PostgreSQL instead of SQLite (--data is then unused).',
  },
  {
    flag: 'database-schema',
    env: 'HERALD_DATABASE_SCHEMA',
    default: 'herald',
    help: 'The PostgreSQL schema Herald creates and keeps its tables in.',
  },
  {
    // Environment only, like the database URL: it may carry a password.
    flag: undefined,
    env: 'HERALD_BUS_URL',
    default: undefined,
    help: 'redis://… or nats://… to wake the other nodes of a cluster (needs HERALD_DATABASE_URL).',
  },
  { flag: 'body-limit', env: 'HERALD_BODY_LIMIT', default: '1mb', help: 'Largest request body accepted.' },
  {
    flag: 'retention-max-age',
    env: 'HERALD_RETENTION_MAX_AGE',
    default: '7d',
    help: 'Default age after which events are pruned ("none": keep).',
  },
  {
    flag: 'retention-max-events',
    env: 'HERALD_RETENTION_MAX_EVENTS',
    default: 'none',
    help: 'Default number of newest events kept per topic ("none": no limit).',
  },
  {
    flag: 'idempotency-ttl',
    env: 'HERALD_IDEMPOTENCY_TTL',
    default: '24h',
    help: 'How long Idempotency-Key values are remembered (at least 24h).',
  },
  {
    flag: 'prune-interval',
    env: 'HERALD_PRUNE_INTERVAL',
    default: '1m',
    help: "How often retention runs in the background (on the leader of the store's nodes).",
  },
  {
    flag: 'sqlite-sync',
    env: 'HERALD_SQLITE_SYNC',
    default: 'full',
    help: '"full": fsync every commit (survives power loss); "normal": survives a process crash only.',
  },
  {
    flag: 'log-level',
    env: 'HERALD_LOG_LEVEL',
    default: 'info',
    help: 'trace, debug, info, warn, error or silent.',
  },
  {
    flag: 'max-connections',
    env: 'HERALD_MAX_CONNECTIONS',
    default: '10000',
    help: 'Most streaming connections (SSE, NDJSON, WebSocket) this process holds; more get 503.',
  },
  {
    flag: 'max-connections-per-ip',
    env: 'HERALD_MAX_CONNECTIONS_PER_IP',
    default: '1000',
    help: 'Most connections of any kind one client address (IPv6: /64) holds; more get 503 ("none": no limit).',
  },
  {
    flag: 'connection-rate-per-ip',
    env: 'HERALD_CONNECTION_RATE_PER_IP',
    default: '100/s',
    help: 'New connections one client address (IPv6: /64) may open, e.g. 100/s or 3000/m; past it they are closed at once ("off": no limit).',
  },
  {
    flag: 'rate-limit',
    env: 'HERALD_RATE_LIMIT',
    default: 'off',
    help: 'Requests per key, token sub, or client address when anonymous, e.g. 100/s, 600/m or 10000/h; past it 429. A key\'s own rate_limit replaces it; the root key is never limited ("off": no default budget).',
  },
  {
    flag: 'max-subscriptions-per-socket',
    env: 'HERALD_MAX_SUBSCRIPTIONS_PER_SOCKET',
    default: '1000',
    help: 'Topics one WebSocket may follow at once; a subscribe past it is an error message.',
  },
  {
    flag: 'max-presence-members',
    env: 'HERALD_MAX_PRESENCE_MEMBERS',
    default: '1000',
    help: 'Presence members one topic may have across the cluster; a join past it is an error message (nothing is subscribed).',
  },
  {
    flag: 'max-topics-per-stream',
    env: 'HERALD_MAX_TOPICS_PER_STREAM',
    default: '100',
    help: 'Topics one GET /v1/stream may follow; more is a 400.',
  },
  {
    flag: 'headers-timeout',
    env: 'HERALD_HEADERS_TIMEOUT',
    default: '10s',
    help: "Longest a client may take to send a request's headers; then 408 and the connection is closed.",
  },
  {
    flag: 'request-timeout',
    env: 'HERALD_REQUEST_TIMEOUT',
    default: '30s',
    help: 'Longest a client may take to send a whole request; answers (streams, long polls) are not limited.',
  },
  {
    flag: 'stream-buffer',
    env: 'HERALD_STREAM_BUFFER',
    default: '256kb',
    help: 'Per-connection send buffer; a consumer that falls further behind is disconnected.',
  },
  {
    flag: 'stream-stall-timeout',
    env: 'HERALD_STREAM_STALL_TIMEOUT',
    default: '30s',
    help: 'A stream with unsent data that sends nothing for this long is disconnected (it resumes).',
  },
  {
    flag: 'cors-origins',
    env: 'HERALD_CORS_ORIGINS',
    default: undefined,
    help: 'Comma list of browser origins allowed to call the API ("*": any; "none": no CORS). Default: "*" with HERALD_API_KEY, "none" without (an open server must not be reachable from web pages).',
  },
  {
    flag: 'shutdown-timeout',
    env: 'HERALD_SHUTDOWN_TIMEOUT',
    default: '10s',
    help: 'How long draining waits for open requests before closing their connections.',
  },
  {
    flag: 'node-id',
    env: 'HERALD_NODE_ID',
    default: undefined,
    help: "This server's name among the nodes of its store: the owner of its delivery leases (default node-<ulid>, new at each start).",
  },
  {
    flag: 'tls-cert',
    env: 'HERALD_TLS_CERT',
    default: undefined,
    help: 'PEM file of the certificate (and its chain): serve HTTPS, HTTP/2 and HTTP/1.1 on the port. Needs --tls-key; both are read again on SIGHUP.',
  },
  {
    flag: 'tls-key',
    env: 'HERALD_TLS_KEY',
    default: undefined,
    help: "PEM file of the certificate's private key (with --tls-cert).",
  },
] as const

export type OptionFlag = NonNullable<(typeof OPTIONS)[number]['flag']>

/** A configuration problem the operator must fix; the CLI prints its message and exits 1. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

const LOG_LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
const DAY_MS = 86_400_000

/** Resolves flags over environment over defaults. */
export function loadConfig(
  flags: Partial<Record<OptionFlag, string>>,
  env: Record<string, string | undefined> = process.env,
): HeraldConfig {
  const raw = (flag: OptionFlag): string | undefined => {
    const option = OPTIONS.find((o) => o.flag === flag)!
    return flags[flag] ?? nonEmpty(env[option.env]) ?? option.default
  }
  const wrap = <T>(name: string, parse: () => T): T => {
    try {
      return parse()
    } catch (error) {
      throw new ConfigError(`Invalid ${name}: ${(error as Error).message}`)
    }
  }
  const port = wrap('--port', () => parsePort(raw('port')!))
  const host = raw('host')!
  const apiKey = nonEmpty(env['HERALD_API_KEY'])
  const keyProblem = apiKey === undefined ? undefined : apiKeyProblem(apiKey)
  if (keyProblem !== undefined) throw new ConfigError(`Invalid HERALD_API_KEY: ${keyProblem}`)
  const jwt: JwtConfig = {
    secret: nonEmpty(env['HERALD_JWT_SECRET']),
    publicKeyPem: readPem(nonEmpty(env['HERALD_JWT_PUBLIC_KEY'])),
    audience: raw('jwt-audience'),
  }
  const idempotencyTtlMs = wrap('--idempotency-ttl', () => parseDuration(raw('idempotency-ttl')!))
  if (idempotencyTtlMs < DAY_MS) {
    throw new ConfigError('Invalid --idempotency-ttl: keys are kept at least 24h (the API promises it).')
  }
  const sqliteSync = raw('sqlite-sync')
  if (sqliteSync !== 'full' && sqliteSync !== 'normal') {
    throw new ConfigError('Invalid --sqlite-sync: use "full" or "normal".')
  }
  const headersTimeoutMs = wrap('--headers-timeout', () => positive(parseDuration(raw('headers-timeout')!)))
  const requestTimeoutMs = wrap('--request-timeout', () => positive(parseDuration(raw('request-timeout')!)))
  if (headersTimeoutMs > requestTimeoutMs) {
    throw new ConfigError(
      'Invalid --headers-timeout: the headers are part of the request, so at most --request-timeout.',
    )
  }
  const logLevel = raw('log-level')!
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError(`Invalid --log-level: "${logLevel}".`)
  const tls = tlsFiles(raw('tls-cert'), raw('tls-key'))
  const publicUrl = wrap('--public-url', () => {
    const given = raw('public-url')
    const scheme = tls === undefined ? 'http' : 'https'
    const url = new URL(given ?? `${scheme}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`)
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('use an http(s) URL')
    return url.href.replace(/\/$/, '')
  })
  return {
    host,
    port,
    dataDir: resolve(raw('data')!),
    apiKey,
    jwt,
    publicUrl,
    retryScheduleMs: wrap('--retry-schedule', () => parseDurationList(raw('retry-schedule')!)),
    deliveryTimeoutMs: wrap('--delivery-timeout', () =>
      timer(positive(parseDuration(raw('delivery-timeout')!))),
    ),
    dispatchConcurrency: wrap('--dispatch-concurrency', () => parseCount(raw('dispatch-concurrency')!)),
    dispatchWorkers: wrap('--dispatch-workers', () => {
      const text = raw('dispatch-workers')
      if (text !== '0' && text !== '1') throw new Error('use 0 or 1')
      return text === '1' ? 1 : 0
    }),
    disableAfterMs: wrap('--disable-after', () => positive(parseDuration(raw('disable-after')!))),
    secretGraceMs: wrap('--secret-grace', () => parseDuration(raw('secret-grace')!)),
    websubLease: wrap('--websub-lease-*', () => {
      const seconds = (flag: OptionFlag) => Math.max(1, Math.round(parseDuration(raw(flag)!) / 1000))
      const lease = {
        minSeconds: seconds('websub-lease-min'),
        defaultSeconds: seconds('websub-lease-default'),
        maxSeconds: seconds('websub-lease-max'),
      }
      if (!(lease.minSeconds <= lease.defaultSeconds && lease.defaultSeconds <= lease.maxSeconds)) {
        throw new Error('min ≤ default ≤ max, please')
      }
      return lease
    }),
    websubPublic: wrap('--websub-public', () => parseBoolean(raw('websub-public')!)),
    heartbeatMs: wrap('--heartbeat', () => timer(positive(parseDuration(raw('heartbeat')!)))),
    allowPrivateTargets: wrap('--allow-private-targets', () => parseBoolean(raw('allow-private-targets')!)),
    databaseUrl: nonEmpty(env['HERALD_DATABASE_URL']),
    databaseSchema: wrap('--database-schema', () => {
      const schema = raw('database-schema')!
      if (!isSchemaName(schema)) throw new Error(SCHEMA_NAME_RULE)
      return schema
    }),
    busUrl: nonEmpty(env['HERALD_BUS_URL']),
    bodyLimitBytes: wrap('--body-limit', () => parseSize(raw('body-limit')!)),
    retention: {
      maxAgeMs: wrap('--retention-max-age', () => optional(raw('retention-max-age')!, parseDuration)),
      maxEvents: wrap('--retention-max-events', () => optional(raw('retention-max-events')!, parseCount)),
    },
    idempotencyTtlMs,
    pruneIntervalMs: wrap('--prune-interval', () => timer(positive(parseDuration(raw('prune-interval')!)))),
    sqliteSync,
    logLevel,
    maxConnections: wrap('--max-connections', () => parseCount(raw('max-connections')!)),
    maxConnectionsPerIp: wrap('--max-connections-per-ip', () =>
      optional(raw('max-connections-per-ip')!, parseCount),
    ),
    connectionRatePerIp: wrap('--connection-rate-per-ip', () =>
      optional(raw('connection-rate-per-ip')!, rateOption),
    ),
    rateLimit: wrap('--rate-limit', () => optional(raw('rate-limit')!, rateOption)),
    maxSubscriptionsPerSocket: wrap('--max-subscriptions-per-socket', () =>
      parseCount(raw('max-subscriptions-per-socket')!),
    ),
    maxPresenceMembers: wrap('--max-presence-members', () => parseCount(raw('max-presence-members')!)),
    maxTopicsPerStream: wrap('--max-topics-per-stream', () => parseCount(raw('max-topics-per-stream')!)),
    headersTimeoutMs,
    requestTimeoutMs,
    streamBufferBytes: wrap('--stream-buffer', () => parseSize(raw('stream-buffer')!)),
    streamStallTimeoutMs: wrap('--stream-stall-timeout', () =>
      positive(parseDuration(raw('stream-stall-timeout')!)),
    ),
    corsOrigins: wrap('--cors-origins', () => {
      const given = raw('cors-origins')
      // Bearer keys are not ambient credentials, so with a key any origin is safe; without one, a web
      // page could use the open API through the user's browser, so none is allowed unless listed.
      return given === undefined ? (apiKey === undefined ? [] : ['*']) : parseOrigins(given)
    }),
    shutdownTimeoutMs: wrap('--shutdown-timeout', () => timer(parseDuration(raw('shutdown-timeout')!))),
    nodeId: wrap('--node-id', () => parseNodeId(raw('node-id'))),
    tls,
  }
}

/** --tls-cert and --tls-key go together: one without the other is a mistake, not plain HTTP. */
function tlsFiles(cert: string | undefined, key: string | undefined): TlsFiles | undefined {
  if (cert === undefined && key === undefined) return undefined
  if (cert === undefined || key === undefined) {
    const [given, missing] = cert === undefined ? ['key', 'cert'] : ['cert', 'key']
    throw new ConfigError(
      `Invalid --tls-${given}: it needs --tls-${missing} (HERALD_TLS_${missing.toUpperCase()}); ` +
        'the certificate and its key are given together, or neither (plain HTTP).',
    )
  }
  return { certFile: resolve(cert), keyFile: resolve(key) }
}

/**
 * HERALD_JWT_PUBLIC_KEY's PEM: the value itself when it is PEM text, else the contents of the file it
 * names (a multi-line PEM is awkward in many environments; a mounted file is not). The key itself is
 * checked by createTokenVerifier.
 */
function readPem(value: string | undefined): string | undefined {
  if (value === undefined || value.trimStart().startsWith('-----BEGIN')) return value
  try {
    return readFileSync(value, 'utf8')
  } catch (error) {
    const code = (error as { code?: string }).code
    throw new ConfigError(
      `Invalid HERALD_JWT_PUBLIC_KEY: it is not PEM text (which starts with "-----BEGIN"), so it names a file, ` +
        `and "${value.slice(0, 200)}" cannot be read (${code ?? (error as Error).message}).`,
    )
  }
}

/** A node id is stored with the leases it holds and shown in logs: printable ASCII, no spaces, 128 at most. */
function parseNodeId(text: string | undefined): string {
  if (text === undefined) return `node-${ulid()}`
  if (!/^[\x21-\x7e]{1,128}$/.test(text))
    throw new Error('use 1 to 128 printable ASCII characters, no spaces')
  return text
}

function parseOrigins(text: string): string[] {
  if (text.trim() === 'none') return []
  const origins = text.split(',').map((origin) => origin.trim().replace(/\/$/, ''))
  for (const origin of origins) {
    if (origin !== '*' && !/^https?:\/\/[^/\s]+$/.test(origin))
      throw new Error(`"${origin}" is not an origin`)
  }
  return origins
}

/**
 * Without an API key the server is open to anyone who reaches it, which is acceptable only when no
 * one but this machine can: refuse any other address.
 */
const SCHEMA_NAME_RULE = 'use lower-case letters, digits and _ (at most 63, not starting with a digit)'

/** A PostgreSQL schema name Herald may use unquoted in SQL: a plain lower-case identifier. */
export function isSchemaName(name: string): boolean {
  return /^[a-z_][a-z0-9_]{0,62}$/.test(name)
}

export function assertSafeBinding(config: HeraldConfig): void {
  if (config.apiKey === undefined && !isLoopback(config.host)) {
    throw new ConfigError(
      `Refusing to listen on ${config.host} without an API key: anyone who can reach it could publish and read. ` +
        'Set HERALD_API_KEY, or bind to a loopback address (--host 127.0.0.1).',
    )
  }
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  return isIP(host) === 4 && host.startsWith('127.')
}

/**
 * Why a key cannot work as `Authorization: Bearer <key>`, or undefined when it can. Header values
 * are bytes: Node reads them as Latin-1, fetch refuses characters above U+00FF, and curl sends
 * UTF-8, so a non-ASCII key matches for some clients and never for others; a space or a control
 * character cannot be part of a bearer token at all. So keys are printable ASCII. The message says
 * where, never what: the key is a secret.
 */
export function apiKeyProblem(key: string): string | undefined {
  for (let index = 0; index < key.length; index++) {
    const code = key.charCodeAt(index)
    if (code >= 0x21 && code <= 0x7e) continue
    const what =
      code === 0x20
        ? 'a space'
        : code < 0x20 || code === 0x7f
          ? 'a control character'
          : 'a non-ASCII character'
    return (
      `the key has ${what} (at position ${index + 1}), which an HTTP header cannot carry as it is; ` +
      'use printable ASCII characters only (letters, digits, punctuation; e.g. openssl rand -hex 32).'
    )
  }
  return undefined
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

function parsePort(text: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || port > 65535) throw new Error(`"${text}" is not a port number (0-65535)`)
  return port
}

function parseBoolean(text: string): boolean {
  if (/^(true|1|yes|on)$/i.test(text)) return true
  if (/^(false|0|no|off)$/i.test(text)) return false
  throw new Error(`"${text}" is not true or false`)
}

function parseCount(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error(`"${text}" is not a positive whole number`)
  return Number(text)
}

function rateOption(text: string): RateLimit {
  const rate = parseRate(text.trim())
  if (rate === undefined) throw new Error(`"${text}" is not a rate (e.g. 100/s, 600/m, 10000/h; "off": none)`)
  return rate
}

function positive(ms: number): number {
  if (ms <= 0) throw new Error('must be more than zero')
  return ms
}

/** A duration Herald waits with a timer, which cannot wait longer than MAX_TIMER_MS. */
function timer(ms: number): number {
  if (ms > MAX_TIMER_MS)
    throw new Error('must be at most 2147483647ms, about 24.8d (the longest a timer can wait)')
  return ms
}

function optional<T>(text: string, parse: (text: string) => T): T | null {
  return /^(none|off|0)$/i.test(text) ? null : parse(text)
}

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }

/** `1mb`, `512kb`, `1048576`: binary units, as body limits usually are. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(text)
  if (!match) throw new Error(`"${text}" is not a size (e.g. 1mb, 512kb)`)
  const bytes = Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? 'b').toLowerCase()]!)
  if (bytes < 1) throw new Error('must be at least one byte')
  return bytes
}
