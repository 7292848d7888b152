import type pg from 'pg'
import type { LeadershipClaim } from '../store.ts'

/**
 * The leadership of the nodes sharing this schema: one row (migration 002), a lease on the
 * database's clock. See MaintenanceStore in src/store/store.ts for the contract.
 *
 * A claim is one statement, so two nodes claiming at once cannot both win: the INSERT … ON CONFLICT
 * takes the row's lock, and the second claim re-reads the row as the first left it before its WHERE
 * decides (PostgreSQL re-checks an ON CONFLICT DO UPDATE condition against the newest row version).
 * Every time in it is `now()` (the statement's start, on the database's clock), never the node's:
 * nodes whose clocks disagree still agree on when a lease ends.
 */

/** The database's time, in ms since the epoch, as the other tables keep it. */
const DB_NOW = '(extract(epoch FROM now()) * 1000)::bigint'

const SQL = {
  // Taken when no one holds it (no row, released, or run out), renewed by its holder; the term stays
  // for a renewal of a lease still running, and grows for a leadership taken anew. When the claim
  // loses, the holder as this statement's snapshot saw it (none if that lease had run out, or if
  // another claim inserted the first row meanwhile: the caller then knows only that it lost).
  claim: `WITH clock AS (SELECT ${DB_NOW} AS now),
    claimed AS (
      INSERT INTO leader AS l (id, node_id, term, expires_at)
      SELECT 1, $1, 1, clock.now + $2::bigint FROM clock
      ON CONFLICT (id) DO UPDATE SET
        node_id = EXCLUDED.node_id,
        expires_at = EXCLUDED.expires_at,
        term = CASE WHEN l.node_id = EXCLUDED.node_id AND l.expires_at > (SELECT now FROM clock)
          THEN l.term ELSE l.term + 1 END
      WHERE l.node_id = EXCLUDED.node_id OR l.expires_at <= (SELECT now FROM clock)
      RETURNING node_id, term)
    SELECT node_id, term, true AS mine FROM claimed
    UNION ALL
    SELECT CASE WHEN l.expires_at > clock.now THEN l.node_id END, l.term, false
    FROM leader l, clock WHERE NOT EXISTS (SELECT 1 FROM claimed)`,
  release: 'UPDATE leader SET expires_at = 0 WHERE id = 1 AND node_id = $1',
}

/** Whether a node's row says it leads now: for `nodes()` (joined on the leader row). */
export const LEADS_NOW = `COALESCE(l.node_id = n.id AND l.expires_at > ${DB_NOW}, false)`

export async function claimLeadership(
  pool: pg.Pool,
  nodeId: string,
  leaseMs: number,
): Promise<LeadershipClaim> {
  const result = await pool.query<{ node_id: string | null; term: number; mine: boolean }>({
    name: 'herald-claim-leadership',
    text: SQL.claim,
    values: [nodeId, Math.round(leaseMs)],
  })
  const row = result.rows[0]
  if (!row) return { leader: null, term: 0, isMe: false }
  return { leader: row.node_id, term: row.term, isMe: row.mine }
}

export async function releaseLeadership(pool: pg.Pool, nodeId: string): Promise<void> {
  await pool.query(SQL.release, [nodeId])
}
