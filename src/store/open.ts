import type { HeraldConfig } from '../config/config.ts'
import { PostgresStore } from './postgres/postgres-store.ts'
import { SqliteStore } from './sqlite/sqlite-store.ts'
import type { Store } from './store.ts'

/** The Store the configuration asks for: PostgreSQL when HERALD_DATABASE_URL is set, else SQLite. */
export async function openStore(config: HeraldConfig): Promise<Store> {
  const firstDeliveryDelayMs = config.retryScheduleMs[0] ?? 0
  if (config.databaseUrl !== undefined) {
    return PostgresStore.open({
      url: config.databaseUrl,
      schema: config.databaseSchema,
      firstDeliveryDelayMs,
    })
  }
  return new SqliteStore({ dataDir: config.dataDir, synchronous: config.sqliteSync, firstDeliveryDelayMs })
}
