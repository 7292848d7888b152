import type { HookChanges, KeyRecord, StoredEventType, StoredKey, TopicInfo } from './store.ts'

/**
 * What the two backends' tables have in common, written once: the same columns and the same SQL
 * where both databases read it alike.
 */

/** The columns of `hooks` a change may set (HookChanges), in the order the UPDATE statements list them. */
export const HOOK_COLUMNS = [
  'lease_seconds',
  'expires_at',
  'target_url',
  'topic',
  'event',
  'secret',
  'previous_secret',
  'previous_secret_until',
  'ordered',
  'max_in_flight',
  'rate_limit',
  'state',
  'disabled_reason',
  'failing_since',
  'description',
  'filter',
] as const satisfies ReadonlyArray<keyof HookChanges>

/** A delivery as the API shows it, with its topic's name (the same SQL on SQLite and PostgreSQL). */
export const DELIVERY_SELECT = `
  SELECT d.id, d.hook_id, t.name AS topic, d.seq, d.event_id, d.state, d.attempts, d.due_at,
         d.last_status, d.last_error, d.created_at, d.updated_at
  FROM deliveries d JOIN topics t ON t.id = d.topic_id`

/** A WebSub verification as the admin API shows it: never its secret, nor its lease. */
export const VERIFICATION_COLUMNS = 'id, mode, topic_url, callback, state, error, requested_at, completed_at'

/** A pending WebSub verification, with what doing it needs (PendingVerification). */
export const PENDING_VERIFICATION = 'id, mode, topic_url, callback, lease_seconds, secret, requested_at'

/** A topics row. */
export interface TopicRow {
  id: number
  name: string
  head_seq: number
  created_at: number
  retention_max_age_ms: number | null
  retention_max_events: number | null
  types: string
}

/** The API's view of a topic, from its row and the seq of its oldest retained event (null: none). */
export function topicInfo(row: TopicRow, firstSeq: number | null): TopicInfo {
  const first = firstSeq ?? row.head_seq + 1
  return {
    topic: row.name,
    head_seq: row.head_seq,
    first_seq: first,
    events: row.head_seq - first + 1,
    created_at: new Date(row.created_at).toISOString(),
    retention: { max_age_ms: row.retention_max_age_ms, max_events: row.retention_max_events },
    types: row.types === 'registered' ? 'registered' : 'any',
  }
}

/** A version of an event type joined with its type's row, as both backends select it. */
export interface EventTypeRow {
  type: string
  version: number
  schema: string
  description: string | null
  deprecated: number | boolean
  created_at: number | string
}

/** Selects EventTypeRows: `v` the version, `t` its type (the caller adds WHERE and ORDER BY). */
export const EVENT_TYPE_SELECT = `SELECT v.type, v.version, v.schema, t.description, t.deprecated, v.created_at
  FROM event_type_versions v JOIN event_types t ON t.type = v.type`

export function eventTypeOfRow(row: EventTypeRow): StoredEventType {
  return {
    type: row.type,
    version: Number(row.version),
    schema: row.schema,
    description: row.description,
    deprecated: row.deprecated === true || row.deprecated === 1,
    created_at: Number(row.created_at),
  }
}

/** The columns of `api_keys`, as both backends select them. */
export const KEY_COLUMNS = 'id, name, secret_hash, scopes, expires_at, rate_limit, created_at, created_by'

/** An `api_keys` row (numbers may come back as strings from PostgreSQL's bigint). */
export interface KeyRow {
  id: string
  name: string
  secret_hash: Uint8Array
  scopes: string
  expires_at: number | string | null
  rate_limit: string | null
  created_at: number | string
  created_by: string
}

export function keyOfRow(row: KeyRow): StoredKey {
  return {
    id: row.id,
    name: row.name,
    secret_hash: Buffer.from(row.secret_hash),
    scopes: JSON.parse(row.scopes) as StoredKey['scopes'],
    expires_at: row.expires_at === null ? null : Number(row.expires_at),
    rate_limit: row.rate_limit === null ? null : (JSON.parse(row.rate_limit) as StoredKey['rate_limit']),
    created_at: Number(row.created_at),
    created_by: row.created_by,
  }
}

/** A key as listed: everything but the digest. */
export function withoutSecret({ secret_hash: _hash, ...key }: StoredKey): KeyRecord {
  return key
}

/** The values of an INSERT INTO api_keys (KEY_COLUMNS order). */
export function keyValues(key: StoredKey): unknown[] {
  return [
    key.id,
    key.name,
    key.secret_hash,
    JSON.stringify(key.scopes),
    key.expires_at,
    key.rate_limit === null ? null : JSON.stringify(key.rate_limit),
    key.created_at,
    key.created_by,
  ]
}
