import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { PresenceRecord } from '../store.ts'

const COLUMNS = 'topic, client, node_id, sub, info, since, expires_at'

/** Presence members (PresenceStore). Writes run in the caller's write transaction. */
export class PresenceTable {
  private readonly s: Record<'join' | 'leave' | 'refresh' | 'list' | 'prune' | 'clear', StatementSync>

  constructor(db: DatabaseSync) {
    this.s = {
      // `WHERE` before `ON CONFLICT`: SQLite needs it to parse an upsert from a SELECT.
      join: db.prepare(
        `INSERT INTO presence (${COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?
         WHERE (SELECT count(*) FROM presence WHERE topic = ? AND client <> ? AND expires_at > ?) < ?
         ON CONFLICT (topic, client) DO UPDATE SET node_id = excluded.node_id, sub = excluded.sub,
           info = excluded.info, expires_at = excluded.expires_at`,
      ),
      leave: db.prepare('DELETE FROM presence WHERE topic = ? AND client = ?'),
      refresh: db.prepare('UPDATE presence SET expires_at = ? WHERE node_id = ?'),
      list: db.prepare(
        `SELECT ${COLUMNS} FROM presence WHERE topic IN (SELECT value FROM json_each(?)) AND expires_at > ?
         ORDER BY topic, since, client`,
      ),
      prune: db.prepare('DELETE FROM presence WHERE expires_at <= ?'),
      clear: db.prepare('DELETE FROM presence WHERE node_id = ?'),
    }
  }

  join(m: PresenceRecord, maxMembers: number, now: number): boolean {
    const values = [m.topic, m.client, m.node_id, m.sub, m.info, m.since, m.expires_at]
    return this.s.join.run(...values, m.topic, m.client, now, maxMembers).changes > 0
  }

  leave(topic: string, client: string): boolean {
    return this.s.leave.run(topic, client).changes > 0
  }

  refresh(nodeId: string, expiresAt: number): number {
    return Number(this.s.refresh.run(expiresAt, nodeId).changes)
  }

  list(topics: string[], now: number): PresenceRecord[] {
    return this.s.list.all(JSON.stringify(topics), now) as unknown as PresenceRecord[]
  }

  prune(now: number): number {
    return Number(this.s.prune.run(now).changes)
  }

  clear(nodeId: string): number {
    return Number(this.s.clear.run(nodeId).changes)
  }
}
