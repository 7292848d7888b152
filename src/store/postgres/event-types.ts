import type pg from 'pg'
import { EVENT_TYPE_SELECT, type EventTypeRow, eventTypeOfRow } from '../rows.ts'
import type { StoredEventType } from '../store.ts'
import { expectCommit, inTransaction } from './transaction.ts'

const LATEST = `${EVENT_TYPE_SELECT} AND v.version = t.latest_version`
const SQL = {
  latest: `${LATEST} WHERE v.type = $1`,
  one: `${EVENT_TYPE_SELECT} WHERE v.type = $1 AND v.version = $2`,
  all: `${EVENT_TYPE_SELECT} WHERE v.type = $1 ORDER BY v.version`,
  page: `${LATEST} WHERE v.type > $1 ORDER BY v.type LIMIT $2`,
  changed: `${LATEST} WHERE t.updated_at >= $1 ORDER BY v.type`,
  // Creates the type's row (latest_version 0 until its first version is in) or locks it to commit:
  // registrations of one type run one at a time.
  lockType: `INSERT INTO event_types (type, latest_version, description, deprecated, updated_at)
    VALUES ($1, 0, $2, $3, $4)
    ON CONFLICT (type) DO UPDATE SET description = $2, deprecated = $3, updated_at = $4
    RETURNING latest_version`,
  schemaOf: 'SELECT schema FROM event_type_versions WHERE type = $1 AND version = $2',
  insertVersion:
    'INSERT INTO event_type_versions (type, version, schema, created_at) VALUES ($1, $2, $3, $4)',
  setLatest: 'UPDATE event_types SET latest_version = $2 WHERE type = $1',
  requiring: "SELECT name FROM topics WHERE types = 'registered'",
}

/** The event-type catalog (EventTypeStore) in PostgreSQL. */
export class PostgresEventTypes {
  private readonly pool: pg.Pool

  constructor(pool: pg.Pool) {
    this.pool = pool
  }

  async put(
    input: { type: string; schema: string; description: string | null; deprecated: boolean },
    now: number,
  ): Promise<{ current: StoredEventType; previous: StoredEventType | undefined }> {
    return inTransaction(this.pool, async (client) => {
      await client.query('BEGIN')
      await client.query(SQL.lockType, [input.type, input.description, input.deprecated, now])
      // Read under the lock: no other registration of this type can come between this and COMMIT.
      const latest = async () => {
        const row = (await client.query<EventTypeRow>(SQL.latest, [input.type])).rows[0]
        return row === undefined ? undefined : eventTypeOfRow(row)
      }
      const previous = await latest()
      if (previous?.schema !== input.schema) {
        const version = (previous?.version ?? 0) + 1
        await client.query(SQL.insertVersion, [input.type, version, input.schema, now])
        await client.query(SQL.setLatest, [input.type, version])
      }
      const current = (await latest())!
      expectCommit(await client.query('COMMIT'))
      return { current, previous }
    })
  }

  async get(type: string, version?: number): Promise<StoredEventType | undefined> {
    const result =
      version === undefined
        ? await this.pool.query<EventTypeRow>(SQL.latest, [type])
        : await this.pool.query<EventTypeRow>(SQL.one, [type, version])
    const row = result.rows[0]
    return row === undefined ? undefined : eventTypeOfRow(row)
  }

  async versions(type: string): Promise<StoredEventType[]> {
    return (await this.pool.query<EventTypeRow>(SQL.all, [type])).rows.map(eventTypeOfRow)
  }

  async page(options: { after?: string; limit: number }): Promise<StoredEventType[]> {
    const result = await this.pool.query<EventTypeRow>(SQL.page, [options.after ?? '', options.limit])
    return result.rows.map(eventTypeOfRow)
  }

  async changedSince(since: number): Promise<StoredEventType[]> {
    return (await this.pool.query<EventTypeRow>(SQL.changed, [since])).rows.map(eventTypeOfRow)
  }

  async topicsRequiringTypes(): Promise<string[]> {
    return (await this.pool.query<{ name: string }>(SQL.requiring)).rows.map((row) => row.name)
  }
}
