import { PostgresStore } from '../../src/store/postgres/postgres-store.ts'
import type { Store } from '../../src/store/store.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { type StoreHarness, storeContract } from './contract.ts'
import { deliveryContract } from './delivery-contract.ts'

const skip = await skipWithoutPostgres()

async function openPostgres(): Promise<StoreHarness> {
  const schema = testSchema('store')
  const open = () => PostgresStore.open({ url: TEST_DATABASE_URL, schema, maxConnections: 4 })
  let store: Store = await open()
  return {
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = await open()
      return store
    },
    async cleanup() {
      await store.close()
      await dropSchema(schema)
    },
  }
}

storeContract('PostgreSQL', openPostgres, { skip })
deliveryContract('PostgreSQL', openPostgres, { skip })
