import type pg from 'pg'
import { KEY_COLUMNS, type KeyRow, keyOfRow, keyValues, withoutSecret } from '../rows.ts'
import type { KeyRecord, StoredKey } from '../store.ts'

const SQL = {
  insert: `INSERT INTO api_keys (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  one: `SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1`,
  some: `SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = ANY($1::text[])`,
  page: `SELECT ${KEY_COLUMNS} FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2`,
  remove: 'DELETE FROM api_keys WHERE id = $1',
}

/** Scoped API keys (KeyStore) in PostgreSQL: one statement each, no transaction needed. */
export class PostgresKeys {
  private readonly pool: pg.Pool

  constructor(pool: pg.Pool) {
    this.pool = pool
  }

  async create(key: StoredKey): Promise<void> {
    await this.pool.query(SQL.insert, keyValues(key))
  }

  async key(id: string): Promise<StoredKey | undefined> {
    const result = await this.pool.query<KeyRow>(SQL.one, [id])
    const row = result.rows[0]
    return row === undefined ? undefined : keyOfRow(row)
  }

  async keysById(ids: string[]): Promise<StoredKey[]> {
    return (await this.pool.query<KeyRow>(SQL.some, [ids])).rows.map(keyOfRow)
  }

  async keys(options: { after?: string; limit: number }): Promise<KeyRecord[]> {
    const result = await this.pool.query<KeyRow>(SQL.page, [options.after ?? '', options.limit])
    return result.rows.map((row) => withoutSecret(keyOfRow(row)))
  }

  async delete(id: string): Promise<boolean> {
    return ((await this.pool.query(SQL.remove, [id])).rowCount ?? 0) > 0
  }
}
