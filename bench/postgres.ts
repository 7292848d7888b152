// What the PostgreSQL benchmarks share: the database (BENCH_DATABASE_URL, default the machine's
// PostgreSQL at 127.0.0.1:5432, database test), a fresh schema per target, dropped after it.
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import pg from 'pg'
import { round } from './lib.ts'

export const DATABASE_URL = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A schema name nobody else uses: bench_<prefix>_<random>. Created by whoever uses it. */
export function schemaName(prefix: string): string {
  return `bench_${prefix}_${randomBytes(5).toString('hex')}`
}

export async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: DATABASE_URL })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
  }
}

export function dropSchema(schema: string): Promise<void> {
  return withAdmin(async (client) => {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  })
}

/** The server's version and the settings that decide what a commit costs. */
export function describeServer(): Promise<string> {
  return withAdmin(async (client) => {
    const version = (await client.query<{ server_version: string }>('SHOW server_version')).rows[0]!
      .server_version
    const settings = await client.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings
       WHERE name IN ('synchronous_commit', 'fsync', 'wal_sync_method', 'commit_delay', 'shared_buffers')
       ORDER BY name`,
    )
    return `PostgreSQL ${version} on loopback (${settings.rows.map((row) => `${row.name}=${row.setting}`).join(', ')})`
  })
}

/** The machine's 1-minute load average, to report beside each measurement (others share the cores). */
export function load(): string {
  return round(os.loadavg()[0]!, 2)
}

/**
 * The pids of the PostgreSQL backends serving the process `clientPid`: its TCP connections to the
 * server (ss), matched to pg_stat_activity by client port. Their CPU time is the database's work for
 * that target (the WAL writer and checkpointer, shared with everyone, are not counted).
 */
export async function backendPids(clientPid: number | undefined): Promise<number[]> {
  if (clientPid === undefined) return []
  const port = new URL(DATABASE_URL).port || '5432'
  const { execFileSync } = await import('node:child_process')
  const lines = execFileSync('ss', ['-tnpH', `( dport = :${port} )`])
    .toString()
    .split('\n')
  const ports = lines
    .filter((line) => line.includes(`pid=${clientPid},`))
    .map((line) => Number(line.trim().split(/\s+/)[3]!.split(':').at(-1)))
  if (ports.length === 0) return []
  return withAdmin(async (client) => {
    const result = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
      [ports],
    )
    return result.rows.map((row) => row.pid)
  })
}
