import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { NodeRecord } from '../store.ts'
import type { DeliveryTables } from './deliveries.ts'

/**
 * The nodes serving the file, and the leases they hold (see NodeStore in src/store/store.ts). Every
 * method but `nodes` runs inside a write transaction the caller holds (SqliteWriter's group commit).
 *
 * One server holds a data directory at a time (src/store/data-lock.ts), so a node that joins knows
 * that every lease left in the file belongs to a process that is gone (killed, or its machine lost):
 * it releases them all at once rather than waiting for them to run out.
 */
export class NodeTable {
  private readonly s: ReturnType<typeof prepare>
  private readonly deliveries: DeliveryTables

  constructor(db: DatabaseSync, deliveries: DeliveryTables) {
    this.s = prepare(db)
    this.deliveries = deliveries
  }

  join(nodeId: string, now: number): void {
    this.s.upsert.run(nodeId, now, now)
    this.deliveries.releaseLeases({ all: true }, now)
    this.deliveries.releaseVerifications()
  }

  heartbeat(nodeId: string, staleMs: number, now: number): number {
    // Inserted if missing: a node found stale (paused past it, say) that lives on is known again.
    this.s.beat.run(nodeId, now, now)
    const stale = (this.s.stale.all(now - staleMs, nodeId) as Array<{ id: string }>).map((row) => row.id)
    if (stale.length === 0) return 0
    const released = this.deliveries.releaseLeases({ owners: stale }, now)
    this.s.forget.run(JSON.stringify(stale))
    return released
  }

  leave(nodeId: string, now: number): void {
    this.deliveries.releaseLeases({ owners: [nodeId] }, now)
    this.s.forget.run(JSON.stringify([nodeId]))
  }

  /** The nodes, without `leader`: the store adds it (it is kept in memory). */
  nodes(): Array<Omit<NodeRecord, 'leader'>> {
    return this.s.all.all() as unknown as Array<Omit<NodeRecord, 'leader'>>
  }
}

function prepare(db: DatabaseSync) {
  const q = (sql: string): StatementSync => db.prepare(sql)
  return {
    // Joining is a new start: started_at too.
    upsert: q(`INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`),
    beat: q(`INSERT INTO nodes (id, started_at, heartbeat_at) VALUES (?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`),
    stale: q('SELECT id FROM nodes WHERE heartbeat_at < ? AND id <> ?'),
    forget: q('DELETE FROM nodes WHERE id IN (SELECT value FROM json_each(?))'),
    all: q('SELECT id, started_at, heartbeat_at FROM nodes ORDER BY id'),
  }
}
