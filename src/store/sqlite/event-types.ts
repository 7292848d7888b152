import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { EVENT_TYPE_SELECT, type EventTypeRow, eventTypeOfRow } from '../rows.ts'
import type { StoredEventType } from '../store.ts'

/** The event-type catalog (EventTypeStore). `put` runs in the caller's write transaction. */
export class EventTypeTable {
  private readonly s: Record<
    'latest' | 'one' | 'all' | 'page' | 'changed' | 'upsertType' | 'insertVersion' | 'requiring',
    StatementSync
  >

  constructor(db: DatabaseSync) {
    const latest = `${EVENT_TYPE_SELECT} AND v.version = t.latest_version`
    this.s = {
      latest: db.prepare(`${latest} WHERE v.type = ?`),
      one: db.prepare(`${EVENT_TYPE_SELECT} WHERE v.type = ? AND v.version = ?`),
      all: db.prepare(`${EVENT_TYPE_SELECT} WHERE v.type = ? ORDER BY v.version`),
      page: db.prepare(`${latest} WHERE v.type > ? ORDER BY v.type LIMIT ?`),
      changed: db.prepare(`${latest} WHERE t.updated_at >= ? ORDER BY v.type`),
      upsertType: db.prepare(
        `INSERT INTO event_types (type, latest_version, description, deprecated, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (type) DO UPDATE SET latest_version = excluded.latest_version,
           description = excluded.description, deprecated = excluded.deprecated, updated_at = excluded.updated_at`,
      ),
      insertVersion: db.prepare(
        'INSERT INTO event_type_versions (type, version, schema, created_at) VALUES (?, ?, ?, ?)',
      ),
      requiring: db.prepare("SELECT name FROM topics WHERE types = 'registered'"),
    }
  }

  put(
    input: { type: string; schema: string; description: string | null; deprecated: boolean },
    now: number,
  ): { current: StoredEventType; previous: StoredEventType | undefined } {
    const previous = this.get(input.type)
    const version =
      previous === undefined ? 1 : previous.schema === input.schema ? previous.version : previous.version + 1
    // The type's row first: the version's row refers to it.
    this.s.upsertType.run(input.type, version, input.description, input.deprecated ? 1 : 0, now)
    if (version !== previous?.version) this.s.insertVersion.run(input.type, version, input.schema, now)
    return { current: this.get(input.type)!, previous }
  }

  get(type: string, version?: number): StoredEventType | undefined {
    const row = (version === undefined ? this.s.latest.get(type) : this.s.one.get(type, version)) as
      | EventTypeRow
      | undefined
    return row === undefined ? undefined : eventTypeOfRow(row)
  }

  versions(type: string): StoredEventType[] {
    return (this.s.all.all(type) as unknown as EventTypeRow[]).map(eventTypeOfRow)
  }

  page(options: { after?: string; limit: number }): StoredEventType[] {
    return (this.s.page.all(options.after ?? '', options.limit) as unknown as EventTypeRow[]).map(
      eventTypeOfRow,
    )
  }

  changedSince(since: number): StoredEventType[] {
    return (this.s.changed.all(since) as unknown as EventTypeRow[]).map(eventTypeOfRow)
  }

  topicsRequiringTypes(): string[] {
    return (this.s.requiring.all() as Array<{ name: string }>).map((row) => row.name)
  }
}
