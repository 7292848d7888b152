import { randomInt } from 'node:crypto'
import pg from 'pg'
import type { NodeRecord } from '../store.ts'
import type { DatabaseClock } from './clock.ts'
import type { PostgresOptions } from './database.ts'
import { advance, releaseStatement } from './deliveries.ts'
import { expectCommit, inTransaction, together } from './transaction.ts'

/**
 * The nodes that serve this database, and the leases they hold (see NodeStore in src/store/store.ts).
 *
 * A node is alive while it holds a session-level advisory lock, `pg_advisory_lock(ns, lock_key)`, on
 * a connection of its own (not from the pool, so that its session lasts as long as the process): ns
 * is derived from the schema (so that two Herald schemas in one database never see each other's
 * nodes), lock_key is random and kept in the node's row. A process killed (kill -9, a crash) loses its
 * session, and with it the lock, at once: the next node that looks (at its join or its heartbeat)
 * finds the lock gone from pg_locks and releases the dead node's leases then, not after them running
 * out. A node that is alive but does not run (SIGSTOP, a frozen VM) keeps its session; its heartbeat
 * going stale gives it away. The deliveries it held are then fenced by their lease tokens: when it
 * wakes up, its settlements change nothing that another node claimed since.
 */

/** A node whose heartbeat is older than this when another joins is taken for dead, its lock aside. */
const JOIN_STALE_MS = 10_000

/** The advisory lock namespace of this schema's nodes: a non-negative int4 ($1: the schema). */
const NAMESPACE = "(hashtext('herald.node:' || $1) & 2147483647)"

const SQL = {
  tryLock: `SELECT pg_try_advisory_lock(${NAMESPACE}, $2) AS ok`,
  unlock: `SELECT pg_advisory_unlock(${NAMESPACE}, $2)`,
  // Joining is a new start: started_at too.
  join: `INSERT INTO nodes (id, lock_key, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
    ON CONFLICT (id) DO UPDATE SET lock_key = EXCLUDED.lock_key, started_at = EXCLUDED.started_at,
      heartbeat_at = EXCLUDED.heartbeat_at`,
  // Inserted again if missing: a node found stale (paused past it, say) that lives on is known again.
  beat: `INSERT INTO nodes (id, lock_key, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
    ON CONFLICT (id) DO UPDATE SET lock_key = EXCLUDED.lock_key, heartbeat_at = EXCLUDED.heartbeat_at`,
  // Nodes other than $2 whose heartbeat is older than $3 or whose lock no session holds.
  dead: `SELECT n.id FROM nodes n
    WHERE n.id <> $2 AND (n.heartbeat_at < $3 OR NOT EXISTS (
      SELECT 1 FROM pg_locks l
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = ${NAMESPACE}::oid AND l.objid = n.lock_key::oid))
    ORDER BY n.id`,
  forget: 'DELETE FROM nodes WHERE id = ANY($1::text[])',
  all: 'SELECT id, started_at, heartbeat_at FROM nodes ORDER BY id',
}

export class PostgresNodes {
  private readonly pool: pg.Pool
  private readonly options: PostgresOptions
  private readonly clock: DatabaseClock
  /** The connection whose session holds this process's node locks, while it is open. */
  private session: pg.Client | undefined
  /** The lock key held on the session for each node this process serves (usually one). */
  private readonly keys = new Map<string, number>()
  /** join, heartbeat, leave and close, one at a time (they may open the session). */
  private tail: Promise<unknown> = Promise.resolve()
  private closed = false

  constructor(pool: pg.Pool, options: PostgresOptions, clock: DatabaseClock) {
    this.pool = pool
    this.options = options
    this.clock = clock
  }

  /** Records the node as live (its lock taken first) and rescues the leases of nodes that are gone. */
  join(nodeId: string): Promise<void> {
    return this.serial(async () => {
      const key = await this.hold(nodeId)
      const now = this.clock.now()
      await this.pool.query(SQL.join, [nodeId, key, now])
      // The node's own leases too: this process holds none yet, so any are a former process's that
      // ran under the same node id.
      await this.rescue(nodeId, JOIN_STALE_MS, now, [nodeId])
    })
  }

  heartbeat(nodeId: string, staleMs: number): Promise<number> {
    return this.serial(async () => {
      // A lost session (the database restarted, the connection dropped) is opened again and the lock
      // taken again: meanwhile other nodes may have found this one dead, released its leases and
      // forgotten it; its row is inserted again below.
      const key = await this.hold(nodeId)
      const now = this.clock.now()
      await this.pool.query(SQL.beat, [nodeId, key, now])
      return this.rescue(nodeId, staleMs, now, [])
    })
  }

  /** A graceful stop: the node's leases released (its queues move on at once), its row and lock gone. */
  leave(nodeId: string): Promise<void> {
    return this.serial(async () => {
      await inTransaction(this.pool, async (client) => {
        const [, released] = await together([
          client.query('BEGIN'),
          releaseStatement(client, { owners: [nodeId] }),
        ])
        const [, , done] = await together([
          together(advance(client, queuesOf(released.rows), this.clock.now())),
          client.query(SQL.forget, [[nodeId]]),
          client.query('COMMIT'),
        ])
        expectCommit(done)
      })
      const key = this.keys.get(nodeId)
      this.keys.delete(nodeId)
      if (this.keys.size === 0) await this.endSession()
      else if (key !== undefined && this.session) {
        await this.session.query(SQL.unlock, [this.options.schema, key]).catch(() => {})
      }
    })
  }

  async list(): Promise<NodeRecord[]> {
    return (await this.pool.query<NodeRecord>(SQL.all)).rows
  }

  close(): Promise<void> {
    return this.serial(async () => {
      this.closed = true
      this.keys.clear()
      await this.endSession()
    })
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.tail.then(work)
    this.tail = result.catch(() => {})
    return result
  }

  /**
   * The node's lock key, held on the session: the session is opened if it is not (or no longer)
   * open, and every lock of this process taken again on it. A key another session holds (another
   * node drew the same) is drawn again.
   */
  private async hold(nodeId: string): Promise<number> {
    if (this.closed) throw new Error('The store is closed.')
    let session = this.session
    if (session && !(await alive(session))) {
      this.session = undefined
      session.end().catch(() => {})
      session = undefined
    }
    if (!session) {
      session = await this.openSession(nodeId)
      for (const [id, key] of this.keys) this.keys.set(id, await this.lock(session, key))
    }
    let key = this.keys.get(nodeId)
    if (key === undefined) {
      key = await this.lock(session, undefined)
      this.keys.set(nodeId, key)
    }
    return key
  }

  private async openSession(nodeId: string): Promise<pg.Client> {
    const session = new pg.Client({
      connectionString: this.options.url,
      // Seen in pg_stat_activity: the connection whose end means the node's end.
      application_name: `herald-node:${nodeId}`.slice(0, 63),
      connectionTimeoutMillis: 5_000,
      // A connection that stopped answering is taken for lost rather than waited for.
      query_timeout: 5_000,
      keepAlive: true,
    })
    // A session the server ended (a restart, pg_terminate_backend) or a dropped connection must not
    // end the process: the next heartbeat finds it closed and opens another.
    session.on('error', () => {})
    session.on('end', () => {
      if (this.session === session) this.session = undefined
    })
    try {
      await session.connect()
    } catch (error) {
      session.end().catch(() => {})
      throw error
    }
    this.session = session
    return session
  }

  /** Takes `key` on the session if no one holds it, else another key drawn at random. */
  private async lock(session: pg.Client, key: number | undefined): Promise<number> {
    for (let candidate = key ?? randomKey(); ; candidate = randomKey()) {
      const result = await session.query<{ ok: boolean }>(SQL.tryLock, [this.options.schema, candidate])
      if (result.rows[0]!.ok) return candidate
    }
  }

  private async endSession(): Promise<void> {
    const session = this.session
    this.session = undefined
    await session?.end().catch(() => {})
  }

  /**
   * Releases the leases of the nodes other than `nodeId` that are dead (their lock is not held) or
   * stale (their heartbeat older than `staleMs`), and of `also`; advances their queues; forgets the
   * dead. Returns how many deliveries were released. The dead nodes' rows are locked (SKIP LOCKED): two
   * nodes rescuing at once do not both work on one.
   */
  private async rescue(nodeId: string, staleMs: number, now: number, also: string[]): Promise<number> {
    const found = await this.pool.query<{ id: string }>(SQL.dead, [
      this.options.schema,
      nodeId,
      now - staleMs,
    ])
    if (found.rows.length === 0 && also.length === 0) return 0
    return inTransaction(this.pool, async (client) => {
      const [, confirmed] = await together([
        client.query('BEGIN'),
        client.query<{ id: string }>(
          `SELECT id FROM nodes WHERE id IN (${SQL.dead}) AND id = ANY($4::text[]) ORDER BY id FOR UPDATE SKIP LOCKED`,
          [this.options.schema, nodeId, now - staleMs, found.rows.map((row) => row.id)],
        ),
      ])
      const dead = confirmed.rows.map((row) => row.id)
      const owners = [...dead, ...also]
      if (owners.length === 0) {
        expectCommit(await client.query('COMMIT'))
        return 0
      }
      const released = await releaseStatement(client, { owners })
      const [, , done] = await together([
        together(advance(client, queuesOf(released.rows), now)),
        dead.length === 0 ? undefined : client.query(SQL.forget, [dead]),
        client.query('COMMIT'),
      ])
      expectCommit(done)
      return released.rowCount ?? 0
    })
  }
}

function randomKey(): number {
  return randomInt(2 ** 31)
}

/** Whether the session still answers (a closed one fails at once). */
async function alive(session: pg.Client): Promise<boolean> {
  try {
    await session.query('SELECT 1')
    return true
  } catch {
    return false
  }
}

function queuesOf(rows: Array<{ hook_id: string; topic_id: number }>) {
  return rows.map((row) => ({ hookId: row.hook_id, topicId: row.topic_id }))
}
