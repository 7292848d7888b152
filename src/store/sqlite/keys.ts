import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { KEY_COLUMNS, type KeyRow, keyOfRow, keyValues, withoutSecret } from '../rows.ts'
import type { KeyRecord, StoredKey } from '../store.ts'

/** Scoped API keys (KeyStore). `create` and `delete` run in the caller's write transaction. */
export class KeyTable {
  private readonly s: Record<'insert' | 'one' | 'some' | 'page' | 'remove', StatementSync>

  constructor(db: DatabaseSync) {
    this.s = {
      insert: db.prepare(`INSERT INTO api_keys (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      one: db.prepare(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = ?`),
      some: db.prepare(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id IN (SELECT value FROM json_each(?))`),
      page: db.prepare(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id > ? ORDER BY id LIMIT ?`),
      remove: db.prepare('DELETE FROM api_keys WHERE id = ?'),
    }
  }

  create(key: StoredKey): void {
    this.s.insert.run(...(keyValues(key) as Array<string | number | Buffer | null>))
  }

  key(id: string): StoredKey | undefined {
    const row = this.s.one.get(id) as KeyRow | undefined
    return row === undefined ? undefined : keyOfRow(row)
  }

  keysById(ids: string[]): StoredKey[] {
    return (this.s.some.all(JSON.stringify(ids)) as unknown as KeyRow[]).map(keyOfRow)
  }

  keys(options: { after?: string; limit: number }): KeyRecord[] {
    const rows = this.s.page.all(options.after ?? '', options.limit) as unknown as KeyRow[]
    return rows.map((row) => withoutSecret(keyOfRow(row)))
  }

  delete(id: string): boolean {
    return this.s.remove.run(id).changes > 0
  }
}
