import { randomBytes } from 'node:crypto'
import pg from 'pg'

/**
 * The machine's PostgreSQL for tests (127.0.0.1:5432, trust, database `test`; .ci/run starts it),
 * overridable with HERALD_TEST_DATABASE_URL. Each test gets a schema of its own, dropped after, so
 * that test files run in parallel without touching each other's data.
 */
export const TEST_DATABASE_URL =
  process.env['HERALD_TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'

let available: Promise<string | undefined> | undefined

/** Why PostgreSQL cannot be used by the tests, or undefined when it can (asked once per process). */
export function postgresMissing(): Promise<string | undefined> {
  available ??= (async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 3000 })
    try {
      await client.connect()
      await client.query('SELECT 1')
      return undefined
    } catch (error) {
      return `PostgreSQL is not reachable at ${TEST_DATABASE_URL} (${(error as Error).message}): start it with "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"`
    } finally {
      await client.end().catch(() => {})
    }
  })()
  return available
}

/**
 * The `skip` option for a test that needs PostgreSQL: false when it is there, else the reason,
 * which node:test prints beside the skipped test (and which is also written to stderr, loudly).
 */
export async function skipWithoutPostgres(): Promise<string | false> {
  const missing = await postgresMissing()
  if (missing === undefined) return false
  process.stderr.write(`\n!!! SKIPPED: ${missing}\n\n`)
  return missing
}

/** A fresh schema name, unique to this test. */
export function testSchema(prefix = 't'): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`
}

export async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  } finally {
    await client.end()
  }
}
