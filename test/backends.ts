import { rm } from 'node:fs/promises'
import { tempDir } from './helpers.ts'
import { dropSchema, postgresMissing, TEST_DATABASE_URL, testSchema } from './postgres.ts'

/**
 * The stores a server-level test runs on: each test that matters on both (crash, restart, delivery)
 * runs once per backend, on its own data directory or PostgreSQL schema.
 */
export interface Backend {
  name: 'SQLite' | 'PostgreSQL'
  /** The reason the backend cannot run here (the test is skipped, loudly), or false. */
  skip: string | false
  /** Fresh, empty storage for one test. */
  open(): Promise<BackendData>
}

export interface BackendData {
  /** `herald serve` arguments and environment that select this storage. */
  args: string[]
  env: Record<string, string>
  cleanup(): Promise<void>
}

export async function backends(): Promise<Backend[]> {
  const missing = await postgresMissing()
  if (missing !== undefined) process.stderr.write(`\n!!! SKIPPING the PostgreSQL runs: ${missing}\n\n`)
  return [
    {
      name: 'SQLite',
      skip: false,
      async open() {
        const dataDir = await tempDir()
        return {
          args: ['--data', dataDir],
          env: {},
          cleanup: () => rm(dataDir, { recursive: true, force: true }),
        }
      },
    },
    {
      name: 'PostgreSQL',
      skip: missing ?? false,
      async open() {
        const schema = testSchema('srv')
        // A data directory all the same: it must not be where a SQLite store would be used by mistake.
        const dataDir = await tempDir()
        return {
          args: ['--data', dataDir],
          env: { HERALD_DATABASE_URL: TEST_DATABASE_URL, HERALD_DATABASE_SCHEMA: schema },
          async cleanup() {
            await dropSchema(schema)
            await rm(dataDir, { recursive: true, force: true })
          },
        }
      },
    },
  ]
}
