import type pg from 'pg'
import type { PresenceRecord } from '../store.ts'

const COLUMNS = 'topic, client, node_id, sub, info, since, expires_at'

const SQL = {
  join: `INSERT INTO presence (${COLUMNS})
    SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::bigint
    WHERE (SELECT count(*) FROM presence WHERE topic = $1 AND client <> $2 AND expires_at > $8) < $9
    ON CONFLICT (topic, client) DO UPDATE SET node_id = excluded.node_id, sub = excluded.sub,
      info = excluded.info, expires_at = excluded.expires_at`,
  leave: 'DELETE FROM presence WHERE topic = $1 AND client = $2',
  refresh: 'UPDATE presence SET expires_at = $1 WHERE node_id = $2',
  list: `SELECT ${COLUMNS} FROM presence WHERE topic = ANY($1::text[]) AND expires_at > $2
    ORDER BY topic, since, client`,
  prune: 'DELETE FROM presence WHERE expires_at <= $1',
  clear: 'DELETE FROM presence WHERE node_id = $1',
}

interface PresenceRow extends Omit<PresenceRecord, 'since' | 'expires_at'> {
  since: string
  expires_at: string
}

/** Presence members (PresenceStore) in PostgreSQL: one statement each. */
export class PostgresPresence {
  private readonly pool: pg.Pool

  constructor(pool: pg.Pool) {
    this.pool = pool
  }

  async join(m: PresenceRecord, maxMembers: number, now: number): Promise<boolean> {
    const values = [m.topic, m.client, m.node_id, m.sub, m.info, m.since, m.expires_at, now, maxMembers]
    return ((await this.pool.query(SQL.join, values)).rowCount ?? 0) > 0
  }

  async leave(topic: string, client: string): Promise<boolean> {
    return ((await this.pool.query(SQL.leave, [topic, client])).rowCount ?? 0) > 0
  }

  async refresh(nodeId: string, expiresAt: number): Promise<number> {
    return (await this.pool.query(SQL.refresh, [expiresAt, nodeId])).rowCount ?? 0
  }

  async list(topics: string[], now: number): Promise<PresenceRecord[]> {
    const result = await this.pool.query<PresenceRow>(SQL.list, [topics, now])
    return result.rows.map((row) => ({
      ...row,
      since: Number(row.since),
      expires_at: Number(row.expires_at),
    }))
  }

  async prune(now: number): Promise<number> {
    return (await this.pool.query(SQL.prune, [now])).rowCount ?? 0
  }

  async clear(nodeId: string): Promise<number> {
    return (await this.pool.query(SQL.clear, [nodeId])).rowCount ?? 0
  }
}
