import type { Logger } from 'pino'
import type { Principal } from '../access/principal.ts'
import { errors } from '../core/errors.ts'
import type { PresenceRecord, PresenceStore } from '../store/store.ts'

/**
 * Presence: who is on a topic, cluster-wide (API.md "Presence (WebSocket)").
 *
 * Where members live: the store's `presence` table, the one source of truth of a deployment (SQLite for
 * one node, PostgreSQL for several), never a node's memory. Each node refreshes the rows of its own
 * sockets every `refreshMs` (10 s) to `ttlMs` (30 s) ahead; a row past its expiry is not a member
 * (not listed, not counted) and is deleted by the next node that prunes. So a node that dies (kill -9,
 * a lost machine) has its members gone within 30 s, with no one having to notice its death first.
 *
 * How `join`/`leave` reach other nodes: each node reads, every `pollMs` (1 s), the members of the topics
 * its own sockets watch (`presence_events`), in one query, and diffs them with what it saw last. Not the
 * Bus, because:
 * - an expiry is no one's message: a dead node cannot announce its members' leave, so some node would
 *   have to read the table anyway to notice it. A diff of what is read notices joins, leaves and
 *   expiries alike, from any node, whatever killed it;
 * - the Bus is a hint that may drop messages (src/bus/cluster.ts), made safe by re-reading a position;
 *   presence has no position, so a dropped join would be lost for good unless the table were read as
 *   well: the read is what makes it right, and then the Bus would only shave latency;
 * - it works the same without a Bus (PostgreSQL only) and on SQLite, with one code path.
 * Cost: one indexed query per node per second, and only while some socket of that node watches
 * presence; at most `maxMembers` rows per watched topic. Changes made on this node reach its own
 * watchers at once; other nodes' within `pollMs` plus a query.
 */

export interface PresenceTiming {
  /** How long a member lives unless its node refreshes it. */
  ttlMs: number
  /** How often a node refreshes its members (well under ttlMs). */
  refreshMs: number
  /** How often a node reads the members of the topics its sockets watch. */
  pollMs: number
}

export const PRESENCE_TIMING: PresenceTiming = { ttlMs: 30_000, refreshMs: 10_000, pollMs: 1_000 }

/** The largest `info`, serialized (UTF-8 bytes). */
export const MAX_INFO_BYTES = 1024
/** The deepest nesting of `info` (an object of objects…). */
export const MAX_INFO_DEPTH = 8
/** Topics read per poll query. */
const TOPICS_PER_QUERY = 500

/** One member as the API shows it. */
export interface PresenceMember {
  client: string
  sub?: string
  info?: unknown
  /** When it joined, ISO 8601. */
  since: string
}

export type PresenceChange = 'join' | 'leave'
export type PresenceListener = (change: PresenceChange, member: PresenceMember) => void

/** A member's `sub`: the token's `sub`, `key:<id>` for a key, nothing for root or anonymous. */
export function subOf(principal: Principal): string | undefined {
  if (principal.kind === 'token') return principal.sub
  if (principal.kind === 'key') return `key:${principal.id}`
  return undefined
}

/**
 * A subscribe's `presence` field: undefined (no presence asked), or `{info?}`. Returns the info as JSON
 * text (undefined when none), or throws a 400 naming the field.
 */
export function parsePresence(value: unknown): { info: string | undefined } | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return { info: undefined }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw errors.invalidRequest('"presence" is an object: {"info"?: {…}}.', 'presence')
  }
  const info = (value as Record<string, unknown>)['info']
  if (info === undefined || info === null) return { info: undefined }
  if (depthOf(info, 0) > MAX_INFO_DEPTH) {
    throw errors.invalidRequest(
      `"presence.info" nests at most ${MAX_INFO_DEPTH} levels deep.`,
      'presence.info',
    )
  }
  const text = JSON.stringify(info)
  if (Buffer.byteLength(text) > MAX_INFO_BYTES) {
    throw errors.invalidRequest(
      `"presence.info" is at most ${MAX_INFO_BYTES} bytes of JSON; this one is ${Buffer.byteLength(text)}.`,
      'presence.info',
    )
  }
  return { info: text }
}

/** How deep a parsed JSON value nests; stops counting past the bound. */
function depthOf(value: unknown, depth: number): number {
  if (depth > MAX_INFO_DEPTH || typeof value !== 'object' || value === null) return depth
  let deepest = depth + 1
  for (const child of Object.values(value)) {
    deepest = Math.max(deepest, depthOf(child, depth + 1))
    if (deepest > MAX_INFO_DEPTH) break
  }
  return deepest
}

export function memberOf(record: PresenceRecord): PresenceMember {
  return {
    client: record.client,
    ...(record.sub === null ? {} : { sub: record.sub }),
    ...(record.info === null ? {} : { info: JSON.parse(record.info) }),
    since: new Date(Number(record.since)).toISOString(),
  }
}

interface Watched {
  listeners: Set<PresenceListener>
  /** The members last seen (read, or changed here), by client. */
  members: Map<string, PresenceMember>
  /** Bumped at each change made here: a poll that began before one does not diff its topic. */
  generation: number
  /** The first read, which sets what later reads are compared with. */
  loaded: Promise<void>
}

export interface PresenceOptions {
  store: PresenceStore & { now(): number }
  nodeId: string
  logger: Logger
  maxMembers: number
  timing?: PresenceTiming
}

/** This node's side of presence: its sockets' members, and the watchers of its sockets. */
export class Presence {
  private readonly store: PresenceOptions['store']
  private readonly nodeId: string
  private readonly logger: Logger
  private readonly maxMembers: number
  private readonly timing: PresenceTiming
  /** This node's members, `topic\0client` → record: re-entered if the store lost them (an outage). */
  private readonly own = new Map<string, PresenceRecord>()
  private readonly watched = new Map<string, Watched>()
  private refreshTimer: NodeJS.Timeout | undefined
  private pollTimer: NodeJS.Timeout | undefined
  private polling = false
  private refreshing = false
  private stopped = false

  constructor(options: PresenceOptions) {
    this.store = options.store
    this.nodeId = options.nodeId
    this.logger = options.logger
    this.maxMembers = options.maxMembers
    this.timing = options.timing ?? PRESENCE_TIMING
  }

  /** Forgets what a previous process with this node id left (its sockets are gone), then runs. */
  async start(): Promise<void> {
    await this.store.clearPresence(this.nodeId)
    this.refreshTimer = setInterval(() => void this.refresh(), this.timing.refreshMs)
    this.refreshTimer.unref()
    this.pollTimer = setInterval(() => void this.poll(), this.timing.pollMs)
    this.pollTimer.unref()
  }

  /** Stops, and removes this node's members at once (a graceful stop: they leave now, not in 30 s). */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.refreshTimer)
    clearInterval(this.pollTimer)
    this.watched.clear()
    this.own.clear()
    try {
      await this.store.clearPresence(this.nodeId)
    } catch (error) {
      this.logger.warn({ err: error }, 'removing this node’s presence members failed: they expire')
    }
  }

  /**
   * Enters `client` in the topic's presence (again: updates its info). A topic with `maxMembers` other
   * live members refuses it with a 400.
   */
  async join(
    topic: string,
    client: string,
    sub: string | undefined,
    info: string | undefined,
  ): Promise<void> {
    const now = this.store.now()
    const record: PresenceRecord = {
      topic,
      client,
      node_id: this.nodeId,
      sub: sub ?? null,
      info: info ?? null,
      since: now,
      expires_at: now + this.timing.ttlMs,
    }
    const key = `${topic}\0${client}`
    const previous = this.own.get(key)
    if (!(await this.store.joinPresence(record, this.maxMembers, now))) {
      throw errors.invalidRequest(
        `The topic "${topic}" has ${this.maxMembers} presence members already (--max-presence-members); nothing was subscribed.`,
        'presence',
      )
    }
    const kept = previous === undefined ? record : { ...record, since: previous.since }
    this.own.set(key, kept)
    this.changed(topic, 'join', memberOf(kept))
  }

  /** Removes `client` from the topic's presence (nothing when it is not a member). */
  async leave(topic: string, client: string): Promise<void> {
    const key = `${topic}\0${client}`
    if (!this.own.delete(key)) return
    await this.store.leavePresence(topic, client)
    const watched = this.watched.get(topic)
    const member = watched?.members.get(client)
    if (member !== undefined) this.changed(topic, 'leave', member)
  }

  /** The topic's live members. */
  async members(topic: string): Promise<PresenceMember[]> {
    return (await this.store.presence([topic], this.store.now())).map(memberOf)
  }

  /**
   * Calls `listener` with each join and leave on the topic, from any node, from now on (once the
   * returned promise resolves). Returns the function that stops it.
   */
  async watch(topic: string, listener: PresenceListener): Promise<() => void> {
    let watched = this.watched.get(topic)
    if (watched === undefined) {
      const entry: Watched = {
        listeners: new Set(),
        members: new Map(),
        generation: 0,
        loaded: Promise.resolve(),
      }
      entry.loaded = this.store.presence([topic], this.store.now()).then((records) => {
        for (const record of records) {
          if (!entry.members.has(record.client)) entry.members.set(record.client, memberOf(record))
        }
      })
      this.watched.set(topic, entry)
      watched = entry
      entry.loaded.catch(() => {
        if (this.watched.get(topic) === entry && entry.listeners.size === 0) this.watched.delete(topic)
      })
    }
    const entry = watched
    entry.listeners.add(listener)
    try {
      await entry.loaded
    } catch (error) {
      entry.listeners.delete(listener)
      throw error
    }
    return () => {
      entry.listeners.delete(listener)
      if (entry.listeners.size === 0 && this.watched.get(topic) === entry) this.watched.delete(topic)
    }
  }

  /** A change made on this node: its watchers hear it at once, and the poll does not repeat it. */
  private changed(topic: string, change: PresenceChange, member: PresenceMember): void {
    const watched = this.watched.get(topic)
    if (watched === undefined) return
    watched.generation++
    const known = watched.members.has(member.client)
    if (change === 'join') {
      watched.members.set(member.client, member)
      if (known) return // an update of its info: not a new member
    } else {
      watched.members.delete(member.client)
      if (!known) return
    }
    this.emit(watched, change, member)
  }

  private emit(watched: Watched, change: PresenceChange, member: PresenceMember): void {
    for (const listener of [...watched.listeners]) {
      try {
        listener(change, member)
      } catch (error) {
        this.logger.error({ err: error }, 'a presence listener failed')
      }
    }
  }

  /** Pushes this node's members' expiry forward, re-enters those the store lost, prunes the expired. */
  private async refresh(): Promise<void> {
    if (this.refreshing || this.stopped) return
    this.refreshing = true
    try {
      const now = this.store.now()
      const kept = await this.store.refreshPresence(this.nodeId, now + this.timing.ttlMs)
      if (kept < this.own.size) {
        // The store could not be reached for longer than the TTL, and another node pruned them.
        for (const [key, record] of [...this.own]) {
          if (this.own.get(key) !== record) continue
          await this.store.joinPresence(
            { ...record, expires_at: now + this.timing.ttlMs },
            this.maxMembers,
            now,
          )
        }
      }
      await this.store.prunePresence(now)
    } catch (error) {
      this.logger.warn({ reason: (error as Error).message }, 'refreshing presence failed')
    } finally {
      this.refreshing = false
    }
  }

  /** Reads the members of every watched topic and tells the watchers what changed since last read. */
  private async poll(): Promise<void> {
    if (this.polling || this.stopped || this.watched.size === 0) return
    this.polling = true
    try {
      const topics = [...this.watched.keys()]
      for (let start = 0; start < topics.length; start += TOPICS_PER_QUERY) {
        const batch = topics.slice(start, start + TOPICS_PER_QUERY)
        const generations = new Map(batch.map((topic) => [topic, this.watched.get(topic)?.generation]))
        const records = await this.store.presence(batch, this.store.now())
        const byTopic = new Map<string, PresenceRecord[]>()
        for (const record of records) {
          const list = byTopic.get(record.topic)
          if (list === undefined) byTopic.set(record.topic, [record])
          else list.push(record)
        }
        for (const topic of batch) {
          const watched = this.watched.get(topic)
          // Unwatched meanwhile, or changed here while the read ran (it may predate that change).
          if (watched === undefined || watched.generation !== generations.get(topic)) continue
          this.diff(watched, byTopic.get(topic) ?? [])
        }
      }
    } catch (error) {
      this.logger.warn({ reason: (error as Error).message }, 'reading presence failed')
    } finally {
      this.polling = false
    }
  }

  private diff(watched: Watched, records: PresenceRecord[]): void {
    const seen = new Set<string>()
    for (const record of records) {
      seen.add(record.client)
      if (watched.members.has(record.client)) continue
      const member = memberOf(record)
      watched.members.set(record.client, member)
      this.emit(watched, 'join', member)
    }
    for (const [client, member] of [...watched.members]) {
      if (seen.has(client)) continue
      watched.members.delete(client)
      this.emit(watched, 'leave', member)
    }
  }
}
