import type pg from 'pg'

/**
 * The database's clock, as seen from this process: read from PostgreSQL, then advanced by the
 * monotonic clock (performance.now) until the next read, so that a step of this machine's wall clock
 * (NTP, a suspended VM) never moves the times Herald compares across nodes (leases, heartbeats).
 */
export class DatabaseClock {
  private base = Date.now()
  private baseMonotonic = performance.now()

  /** Reads the database's time; half the round trip is added, the best estimate of "now" on arrival. */
  async sync(client: pg.Pool | pg.PoolClient): Promise<void> {
    const sent = performance.now()
    const result = await client.query<{ now: number }>(
      'SELECT extract(epoch FROM clock_timestamp()) * 1000 AS now',
    )
    const received = performance.now()
    this.base = Number(result.rows[0]!.now) + (received - sent) / 2
    this.baseMonotonic = received
  }

  now(): number {
    return Math.round(this.base + (performance.now() - this.baseMonotonic))
  }
}
