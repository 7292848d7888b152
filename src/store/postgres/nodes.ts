import type pg from 'pg'
import type { NodeRecord } from '../store.ts'
import type { DatabaseClock } from './clock.ts'
import type { PostgresOptions } from './database.ts'

// WORK IN PROGRESS: being written.
export class PostgresNodes {
  readonly pool: pg.Pool
  readonly options: PostgresOptions
  readonly clock: DatabaseClock
  constructor(pool: pg.Pool, options: PostgresOptions, clock: DatabaseClock) {
    this.pool = pool
    this.options = options
    this.clock = clock
  }
  async join(_nodeId: string): Promise<void> {}
  async heartbeat(_nodeId: string, _staleMs: number): Promise<number> {
    return 0
  }
  async leave(_nodeId: string): Promise<void> {}
  async list(): Promise<NodeRecord[]> {
    return []
  }
  async close(): Promise<void> {}
}
