import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { errors } from '../core/errors.ts'
import { isUlid, ulid } from '../core/event.ts'
import type { KeyRecord, KeyStore, StoredKey } from '../store/store.ts'
import { MAX_PATTERNS, parsePattern } from './patterns.ts'
import { ACTIONS, type Action, type Principal, type Scope } from './principal.ts'
import { parseRate, rateText } from './rate.ts'
import { INVALID_TOKEN_CHALLENGE } from './tokens.ts'

/**
 * Scoped API keys: `hk_` + the key's id (a 26-character ULID) + 43 characters of randomness (256
 * bits, base64url). The id in the key lets a node find its record by primary key; the digest of the
 * whole key is then compared in constant time. Only the digest is stored.
 */
const PREFIX = 'hk_'
const ID_LENGTH = 26
const SECRET_BYTES = 32
const KEY_LENGTH = PREFIX.length + ID_LENGTH + 43

/** Input bounds of POST /v1/keys. */
const MAX_NAME_LENGTH = 200
const MAX_SCOPES = 20

/** How often a node checks the keys it holds in memory against the store: revocation reaches every node within a second. */
export const KEY_REFRESH_MS = 500
/** The most keys a node keeps in memory (those in use; the least recently loaded go first). */
const MAX_CACHED_KEYS = 10_000
/** How long a key id found missing is answered 401 without asking the store again. */
const MISSING_KEY_MS = 1_000

/** Whether `id` is a key id: a ULID. */
export const isKeyId = isUlid

export function isKeyToken(token: string): boolean {
  return token.startsWith(PREFIX)
}

export function digestOf(secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}

/** What POST /v1/keys accepts, checked field by field (a coded 400 naming the field). */
export interface KeyInput {
  name: string
  scopes: Array<{ actions: Action[]; topics: string[] }>
  expires_at: number | null
  rate_limit: { points: number; seconds: number } | null
}

export function parseKeyInput(body: unknown, now: number): KeyInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw errors.invalidRequest(
      'Send a JSON object: {"name":"billing","scopes":[{"actions":["publish"],"topics":["orders/*"]}]}.',
    )
  }
  const {
    name,
    scopes,
    expires_at: expiresAt,
    rate_limit: rateLimit,
    ...rest
  } = body as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) throw errors.invalidRequest(`Unknown field "${unknown.slice(0, 100)}".`, unknown)
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw errors.invalidRequest(`"name" is a string of 1 to ${MAX_NAME_LENGTH} characters.`, 'name')
  }
  if (!Array.isArray(scopes) || scopes.length === 0 || scopes.length > MAX_SCOPES) {
    throw errors.invalidRequest(`"scopes" is an array of 1 to ${MAX_SCOPES} scopes.`, 'scopes')
  }
  return {
    name,
    scopes: scopes.map((scope, index) => parseScope(scope, `scopes[${index}]`)),
    expires_at: parseExpiry(expiresAt, now),
    rate_limit: parseKeyRate(rateLimit),
  }
}

function parseScope(value: unknown, field: string): { actions: Action[]; topics: string[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw errors.invalidRequest('A scope is {"actions":[…],"topics":[…]}.', field)
  }
  const { actions, topics, ...rest } = value as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) {
    throw errors.invalidRequest(`Unknown scope field "${unknown.slice(0, 100)}".`, `${field}.${unknown}`)
  }
  if (
    !Array.isArray(actions) ||
    actions.length === 0 ||
    !actions.every((action) => ACTIONS.includes(action as Action))
  ) {
    throw errors.invalidRequest(`"actions" lists one or more of ${ACTIONS.join(', ')}.`, `${field}.actions`)
  }
  if (!Array.isArray(topics) || topics.length === 0 || topics.length > MAX_PATTERNS) {
    throw errors.invalidRequest(
      `"topics" lists 1 to ${MAX_PATTERNS} topic patterns ("orders", "orders/*", "orders/**", "**").`,
      `${field}.topics`,
    )
  }
  topics.forEach((topic, index) => {
    parsePattern(topic, `${field}.topics[${index}]`)
  })
  return { actions: [...new Set(actions as Action[])], topics: topics as string[] }
}

function parseExpiry(value: unknown, now: number): number | null {
  if (value === undefined || value === null) return null
  const at = typeof value === 'string' && value.length <= 40 ? Date.parse(value) : Number.NaN
  if (Number.isNaN(at)) {
    throw errors.invalidRequest(
      '"expires_at" is an RFC 3339 time such as "2027-01-01T00:00:00Z".',
      'expires_at',
    )
  }
  if (at <= now) throw errors.invalidRequest('"expires_at" is in the past.', 'expires_at')
  return at
}

function parseKeyRate(value: unknown): { points: number; seconds: number } | null {
  if (value === undefined || value === null) return null
  const rate = typeof value === 'string' ? parseRate(value) : undefined
  if (rate === undefined) {
    throw errors.invalidRequest('"rate_limit" is a rate such as "100/s", "600/m" or "10000/h".', 'rate_limit')
  }
  return rate
}

/** A new key: its record to store, and the secret to show once. */
export function newKey(input: KeyInput, now: number, createdBy: string): { key: StoredKey; secret: string } {
  const id = ulid(now)
  const secret = `${PREFIX}${id}${randomBytes(SECRET_BYTES).toString('base64url')}`
  return {
    key: { id, ...input, secret_hash: digestOf(secret), created_at: now, created_by: createdBy },
    secret,
  }
}

/** A key as the API shows it: never its digest, times as RFC 3339, the rate as text. */
export function describeKey(key: KeyRecord) {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    expires_at: key.expires_at === null ? null : new Date(key.expires_at).toISOString(),
    rate_limit: key.rate_limit === null ? null : rateText(key.rate_limit),
    created_at: new Date(key.created_at).toISOString(),
    created_by: key.created_by,
  }
}

function principalOf(key: StoredKey): Extract<Principal, { kind: 'key' }> {
  const scopes: Scope[] = key.scopes.map((scope) => ({
    actions: scope.actions as Action[],
    topics: scope.topics.map((topic) => parsePattern(topic, 'topics')),
  }))
  return {
    kind: 'key',
    id: key.id,
    name: key.name,
    scopes,
    expiresAt: key.expires_at,
    rateLimit: key.rate_limit,
  }
}

interface CachedKey {
  digest: Buffer
  principal: Extract<Principal, { kind: 'key' }>
}

/**
 * The keys this node has seen in use, in memory, so that checking one costs a digest and a map
 * lookup. Every KEY_REFRESH_MS the node reads them again (one query for all); a key found deleted is
 * dropped and reported to `onRevoked` (its streams and sockets end). A key deleted through this node
 * is dropped at once.
 */
export class KeyRing {
  private readonly store: KeyStore
  private readonly cache = new Map<string, CachedKey>()
  /** Key ids looked up in vain, and when (see MISSING_KEY_MS). */
  private readonly missing = new Map<string, number>()
  /** The keys of open connections, checked too (they may have left the cache). */
  private watched: () => Iterable<string> = () => []
  private readonly listeners: Array<(id: string) => void> = []
  private readonly timer: NodeJS.Timeout
  private refreshing = false

  constructor(store: KeyStore) {
    this.store = store
    this.timer = setInterval(() => void this.refresh(), KEY_REFRESH_MS)
    this.timer.unref()
  }

  /** The principal of a presented `hk_` key (`digest`: its SHA-256); a 401 naming why when it is not one. */
  async authenticate(
    token: string,
    digest: Buffer,
    now: number,
  ): Promise<Extract<Principal, { kind: 'key' }>> {
    const invalid = () =>
      errors.unauthorized('The API key is not valid (revoked, or never issued).', 'Authorization', {
        'WWW-Authenticate': INVALID_TOKEN_CHALLENGE,
      })
    if (token.length !== KEY_LENGTH) throw invalid()
    const id = token.slice(PREFIX.length, PREFIX.length + ID_LENGTH)
    if (!isKeyId(id)) throw invalid()
    let cached = this.cache.get(id)
    if (cached === undefined) {
      // An id looked up in vain is not looked up again for a while: made-up keys cost no queries.
      const missedAt = this.missing.get(id)
      if (missedAt !== undefined && now - missedAt < MISSING_KEY_MS) throw invalid()
      const stored = await this.store.key(id)
      if (stored === undefined) {
        if (this.missing.size >= MAX_CACHED_KEYS) this.missing.clear()
        this.missing.set(id, now)
        throw invalid()
      }
      this.missing.delete(id)
      cached = this.remember(stored)
    }
    if (!timingSafeEqual(digest, cached.digest)) throw invalid()
    const expiresAt = cached.principal.expiresAt
    if (expiresAt !== null && expiresAt <= now) {
      throw errors.unauthorized('The API key has expired.', 'Authorization', {
        'WWW-Authenticate': INVALID_TOKEN_CHALLENGE,
      })
    }
    return cached.principal
  }

  /** Called with the id of each key found revoked (deleted) since it was last seen. */
  onRevoked(listener: (id: string) => void): void {
    this.listeners.push(listener)
  }

  /** A key deleted through this node: refused from now on, here, without waiting for the refresh. */
  revoked(id: string): void {
    this.cache.delete(id)
    this.missing.set(id, Date.now())
    for (const listener of this.listeners) listener(id)
  }

  /** Also checks these key ids at every refresh (those open connections were opened with). */
  watch(ids: () => Iterable<string>): void {
    this.watched = ids
  }

  close(): void {
    clearInterval(this.timer)
  }

  private remember(stored: StoredKey): CachedKey {
    if (this.cache.size >= MAX_CACHED_KEYS) this.cache.delete(this.cache.keys().next().value!)
    const cached = { digest: stored.secret_hash, principal: principalOf(stored) }
    this.cache.set(stored.id, cached)
    return cached
  }

  private async refresh(): Promise<void> {
    const ids = [...new Set([...this.cache.keys(), ...this.watched()])]
    if (this.refreshing || ids.length === 0) return
    this.refreshing = true
    try {
      const found = new Set((await this.store.keysById(ids)).map((key) => key.id))
      for (const id of ids) if (!found.has(id)) this.revoked(id)
    } catch {
      // The store is out of reach: the keys in memory stay as they were until it is back.
    } finally {
      this.refreshing = false
    }
  }
}
