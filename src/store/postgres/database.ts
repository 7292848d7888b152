import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { ConfigError, isSchemaName } from '../../config/config.ts'
import { errors } from '../../core/errors.ts'

/** The connection pool, the schema and its migrations, and what a failed query means. */

const MIGRATIONS_DIR = join(import.meta.dirname, 'migrations')

/** bigint columns (seq, ids, times in ms) as numbers: every one of them stays far below 2^53. */
const INT8_OID = 20
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

export interface PostgresOptions {
  url: string
  schema: string
  /** Connections at most (the group-commit writers and the readers share them). */
  maxConnections?: number
}

/** The schema Herald creates and sets as the search path: a plain identifier, nothing to quote. */
export function validateSchemaName(schema: string): string {
  if (!isSchemaName(schema)) {
    throw new ConfigError(
      `Invalid HERALD_DATABASE_SCHEMA "${schema}": use lower-case letters, digits and _ (at most 63, not starting with a digit).`,
    )
  }
  return schema
}

export function createPool(options: PostgresOptions): pg.Pool {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    throw new ConfigError('Invalid HERALD_DATABASE_URL: not a URL (postgres://user@host:5432/database).')
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('Invalid HERALD_DATABASE_URL: use a postgres:// URL.')
  }
  const schema = validateSchemaName(options.schema)
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.maxConnections ?? 10,
    // A dead server is reported in seconds, not after the kernel's TCP timeout.
    connectionTimeoutMillis: 5_000,
    keepAlive: true,
    // Pipelined queries on a checked-out client: a group commit sends its statements without waiting
    // for each answer (see writer.ts).
    pipeline: true,
    types,
    // Every table is found in Herald's own schema; nothing else in the database is touched.
    options: `-c search_path=${schema}`,
    application_name: 'herald',
  } as pg.PoolConfig)
  // An idle connection the server closed (a restart, pg_terminate_backend): the pool drops it and
  // opens another when needed; without a listener the error would end the process.
  pool.on('error', () => {})
  // The same while a connection is checked out (the pool listens only while it is idle): the failure
  // reaches the caller as its query's rejection; unheard, the 'error' event would end the process.
  pool.on('connect', (client) => client.on('error', () => {}))
  return pool
}

/**
 * Applies `migrations/NNN_*.sql` above the schema's recorded version, each in its own transaction,
 * under a transaction-level advisory lock keyed by the schema: nodes starting at once migrate once,
 * the others wait and then find nothing left to do.
 */
export async function migrate(pool: pg.Pool, schema: string): Promise<void> {
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((name) => /^\d{3}_.*\.sql$/.test(name))
    .sort()
  const client = await pool.connect()
  try {
    for (const file of files) {
      const version = Number(file.slice(0, 3))
      await client.query('BEGIN')
      try {
        await client.query("SELECT pg_advisory_xact_lock(hashtext('herald.migrate'), hashtext($1))", [schema])
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
        await client.query(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        )
        const applied = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [version])
        if (applied.rowCount === 0) {
          await client.query(readFileSync(join(MIGRATIONS_DIR, file), 'utf8'))
          await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version])
        }
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {})
        throw new Error(`Migration ${file} failed: ${(error as Error).message}`, { cause: error })
      }
    }
  } finally {
    client.release()
  }
}

/**
 * SQLSTATE classes and codes that mean the database cannot be used at the moment, not that this
 * request was wrong: connection exceptions (08), operator intervention (57: shutdown, terminated
 * backends, cannot connect now), insufficient resources (53), and a read-only server (25006, a
 * replica promoted back).
 */
function isUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code
  if (typeof code === 'string') {
    if (/^(08|57|53)/.test(code) || code === '25006') return true
    // Node's own socket errors: refused, reset, unreachable, timed out.
    if (/^E[A-Z]+$/.test(code)) return true
  }
  const message = (error as Error | undefined)?.message ?? ''
  return (
    message.includes('Connection terminated') ||
    message.includes('connection timeout') ||
    message.includes('Client has encountered a connection error') ||
    message.includes('Client was closed')
  )
}

/** The reason the database cannot be used, when `error` says so; else undefined. */
export function unavailableReason(error: unknown): string | undefined {
  return isUnavailable(error) ? ((error as Error).message ?? String(error)) : undefined
}

/**
 * A failure to reach the database is the server's problem, not the request's: a 503 with
 * Retry-After. A commit whose answer never came (the connection dropped after COMMIT was sent) may
 * have committed: the client is told 503 all the same, and its retry with the same Idempotency-Key
 * returns the stored events if it did (docs/api.md, "Retrying a publish").
 */
export function asStoreError(error: unknown): unknown {
  // 22021: a character PostgreSQL text cannot hold (NUL), in a value the client sent (an id, a filter).
  if ((error as { code?: unknown }).code === '22021') {
    return errors.invalidRequest('A value holds a character that cannot be stored or looked up (NUL).')
  }
  const reason = unavailableReason(error)
  if (reason === undefined) return error
  return errors.unavailable(`The database cannot be reached at the moment (${reason}).`, undefined, {
    'retry-after': '2',
  })
}
