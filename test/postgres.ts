import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { type AddressInfo, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
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

/** A PostgreSQL server of a test's own, on a spare port, that the test may stop, kill and restart. */
export interface PrivatePostgres {
  url: string
  port: number
  /** Starts it (again). */
  start(): Promise<void>
  /** Stops it: `fast` (clients disconnected, a clean shutdown) or `immediate` (a crash). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>
  /** Stops it and removes its files. */
  remove(): Promise<void>
}

const execFileAsync = promisify(execFile)

function postgresBin(name: string): string {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort() : []
  const dir = versions.at(-1)
  if (dir === undefined) throw new Error('PostgreSQL server binaries are not installed (/usr/lib/postgresql)')
  return join('/usr/lib/postgresql', dir, 'bin', name)
}

/** Runs a PostgreSQL program, as the postgres user when this process is root (it refuses root). */
async function runAsPostgres(program: string, args: string[]): Promise<string> {
  const asRoot = process.getuid?.() === 0
  const [file, argv] = asRoot
    ? ['runuser', ['-u', 'postgres', '--', postgresBin(program), ...args]]
    : [postgresBin(program), args]
  const { stdout } = await execFileAsync(file, argv, { timeout: 60_000 })
  return stdout
}

/** A port nothing listens on now (the OS picks it), for a server of a test's own. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** initdb in a temporary directory and start it on a free loopback port (trust, user postgres). */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-pg-'))
  if (process.getuid?.() === 0) await execFileAsync('chown', ['postgres:postgres', dir])
  const data = join(dir, 'data')
  await runAsPostgres('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'])
  const port = await freePort()
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=50`
  let running = false
  const instance: PrivatePostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async start() {
      await runAsPostgres('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'log'), '-w', 'start'])
      running = true
    },
    async stop(mode = 'fast') {
      if (!running) return
      await runAsPostgres('pg_ctl', ['-D', data, '-m', mode, '-w', 'stop'])
      running = false
    },
    async remove() {
      await instance.stop('immediate').catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
  await instance.start()
  return instance
}
