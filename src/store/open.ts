import { ConfigError, type HeraldConfig } from '../config/config.ts'
import { SqliteStore } from './sqlite/sqlite-store.ts'
import type { Store } from './store.ts'

/** The Store the configuration asks for. */
export function openStore(config: HeraldConfig): Store {
  if (config.databaseUrl !== undefined) {
    // Refused rather than ignored: silently running on SQLite when PostgreSQL was asked for would
    // split a cluster's data across nodes.
    throw new ConfigError(
      'HERALD_DATABASE_URL is set, but the PostgreSQL store is not available in this version; unset it to use the embedded SQLite store.',
    )
  }
  return new SqliteStore({
    dataDir: config.dataDir,
    synchronous: config.sqliteSync,
    firstDeliveryDelayMs: config.retryScheduleMs[0] ?? 0,
  })
}
