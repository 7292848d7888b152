import type { NewEvent, StoredEvent } from '../core/event.ts'

/**
 * The Store is the source of truth: every event lives here before anyone is told about it.
 *
 * Contract, for every backend (test/store/contract.ts checks it):
 * - `append` stores all of its events or none (a batch is atomic), and resolves only once they are
 *   durable. Each topic's `seq` starts at 1 and grows by exactly one per stored event, with no gaps
 *   and no reuse, even with several Herald processes writing to one database: the position comes
 *   from the topic's row inside the writing transaction, never from a counter in memory.
 * - A repeat is not stored again. An `idempotencyKey` seen in the topic before returns the original
 *   events (`stored: 0`); the same key with another request is an `idempotency-key-reused`
 *   error. An event whose client-supplied `id` is already stored in the topic with the same `source`
 *   (CloudEvents identifies an event by the two together) returns that event; the same `id` with
 *   another `source` is another event. An event with a generated id is never a repeat.
 * - `read` returns events in `seq` order; a topic that does not exist reads as empty. It returns at most
 *   `limit` events, and stops after the event that brings their JSON to `maxBytes` or more (so always
 *   one event at least): a page of large events is bounded in bytes, not only in count.
 * - Retention removes the oldest events only, so the retained events of a topic are always the
 *   contiguous run `first_seq..head_seq`.
 */
/**
 * The bytes of event JSON one read returns at most by default, counted as string length (UTF-16 code
 * units: a bound, not an exact size), one event more may pass it. 1,000
 * events of 1 MiB each would otherwise make a page past what a string can hold (a 500, and a gigabyte
 * of memory for one request).
 */
export const MAX_READ_BYTES = 4 * 1024 * 1024

/**
 * Everything a backend keeps. Each consumer is given the narrow part it uses: the topic log an
 * `EventStore`, the dispatcher a `QueueStore`, the hook and WebSub routes a `HookStore`, the node's
 * heartbeat a `NodeStore`, the leader's maintenance a `MaintenanceStore`.
 */
export interface Store
  extends EventStore,
    HookStore,
    QueueStore,
    NodeStore,
    MaintenanceStore,
    KeyStore,
    PresenceStore,
    EventTypeStore {
  /**
   * Removes events past retention, expired idempotency keys, and settled deliveries (with their
   * attempts) last updated longer ago than the events' default maximum age.
   */
  prune(now: number, defaults: Retention, idempotencyTtlMs: number): Promise<PruneResult>
  /**
   * Why the store cannot write at the moment (a write failed for want of a writable file, or the
   * database cannot be reached), or undefined when it can: the server is not ready while it cannot.
   */
  cannotWrite(): Promise<string | undefined>
  /** `sqlite` or `postgres`, as `GET /v1/cluster` names it. */
  readonly kind: 'sqlite' | 'postgres'
  /**
   * The store's clock (ms since the epoch), which every time given to it should come from: leases,
   * due times and heartbeats are compared across nodes, so on PostgreSQL it is the database's clock
   * (synchronised, then advanced by this process's monotonic clock), never a node's wall clock.
   */
  now(): number
  close(): Promise<void>
}

/**
 * A scoped API key (/v1/keys). The secret is never stored: only its SHA-256, which the presented key's
 * digest is compared with in constant time. Keys are random (256 bits), so a fast hash is enough: no
 * one can guess an input to a digest they do not know.
 */
export interface KeyRecord {
  id: string
  name: string
  /** As created: actions and topic patterns, in their text form. */
  scopes: Array<{ actions: string[]; topics: string[] }>
  /** Epoch ms, or null: the key does not expire. */
  expires_at: number | null
  /** `{points, seconds}`, or null: the server's default budget. */
  rate_limit: { points: number; seconds: number } | null
  created_at: number
  /** Who created it (an actor: root, key:<id>, token:<sub>). */
  created_by: string
}

export interface StoredKey extends KeyRecord {
  secret_hash: Buffer
}

/** Scoped API keys. */
export interface KeyStore {
  createKey(key: StoredKey): Promise<void>
  /** One key with its digest, or undefined. */
  key(id: string): Promise<StoredKey | undefined>
  /** The keys among `ids` that still exist (what a node's cache checks its keys against). */
  keysById(ids: string[]): Promise<StoredKey[]>
  /** A page of keys by id, never their digests. */
  keys(options: { after?: string; limit: number }): Promise<KeyRecord[]>
  deleteKey(id: string): Promise<boolean>
}

/** One version of an event type, with what the type's row holds (description, deprecation). */
export interface StoredEventType {
  type: string
  version: number
  /** The JSON Schema's text, as registered (canonical: keys sorted). */
  schema: string
  description: string | null
  deprecated: boolean
  /** When this version was registered (epoch ms). */
  created_at: number
}

/** The event-type catalog (src/event-types/). */
export interface EventTypeStore {
  /**
   * Registers `schema` as the next version of `type` unless it is the latest version's schema (text
   * equality: the catalog makes it canonical), and sets the type's description and deprecation;
   * atomic, so that two nodes registering at once make one version each, never two of one number.
   * Returns the latest version after the call, and the one before it (undefined for a new type).
   */
  putEventType(
    input: { type: string; schema: string; description: string | null; deprecated: boolean },
    now: number,
  ): Promise<{ current: StoredEventType; previous: StoredEventType | undefined }>
  /** The latest version of each type, by type name, paged. */
  eventTypes(options: { after?: string; limit: number }): Promise<StoredEventType[]>
  /** One version of a type (the latest when `version` is undefined), or undefined. */
  eventType(type: string, version?: number): Promise<StoredEventType | undefined>
  /** Every version of a type, oldest first (empty for an unknown type). */
  eventTypeVersions(type: string): Promise<StoredEventType[]>
  /** The latest version of the types changed at or after `since` (epoch ms): what a node's cache reloads. */
  eventTypesChangedSince(since: number): Promise<StoredEventType[]>
}

/** Topics and their events. */
export interface EventStore {
  /**
   * Also creates, in the same transaction, one pending delivery per stored event and matching hook
   * (see HookStore): an acknowledged event never misses a hook, even across a crash.
   */
  append(topic: string, events: NewEvent[], options: AppendOptions): Promise<AppendResult>
  read(topic: string, afterSeq: number, limit: number, maxBytes?: number): Promise<StoredEvent[]>
  topic(name: string): Promise<TopicInfo | undefined>
  /** The heads of these topics (those that exist), in one read: the cluster bus's position checks. */
  heads(names: string[]): Promise<Map<string, number>>
  topics(options: { after?: string; limit: number }): Promise<TopicInfo[]>
  /**
   * Creates the topic if needed and sets its own retention (null: the server default) and whether it
   * takes only event types registered in the catalog.
   */
  configureTopic(name: string, retention: Retention, types: TopicTypes): Promise<TopicInfo>
  /** The topics that take registered event types only (few: a node keeps them in memory). */
  topicsRequiringTypes(): Promise<string[]>
}

/** Which event types a topic takes: any, or only those registered in the catalog. */
export type TopicTypes = 'any' | 'registered'

export interface AppendOptions {
  idempotencyKey?: string
  /** A digest of the request, to tell a true repeat from another request that reuses a key. */
  requestHash?: string
  /** Milliseconds since the epoch, recorded as the events' storage time (retention counts from it). */
  now: number
}

export interface AppendResult {
  events: StoredEvent[]
  /** How many of `events` this call stored; 0 when the whole request was a repeat. */
  stored: number
  /** The topic's head after the call. */
  head: number
  /** How many webhook deliveries the stored events created. */
  deliveries: number
}

export interface Retention {
  maxAgeMs: number | null
  maxEvents: number | null
}

export interface TopicInfo {
  topic: string
  /** The seq of the newest event, 0 for a topic with none yet. */
  head_seq: number
  /** The seq of the oldest retained event (head_seq + 1 when none is retained). */
  first_seq: number
  /** How many events are retained. */
  events: number
  created_at: string
  /** The topic's own retention; null fields fall back to the server default. */
  retention: { max_age_ms: number | null; max_events: number | null }
  types: TopicTypes
}

export interface PruneResult {
  events: number
  idempotencyKeys: number
  deliveries: number
}

// ---------------------------------------------------------------------------------------------
// Webhook subscriptions and their durable delivery queue.

export type HookState = 'active' | 'paused' | 'disabled'

export type HookKind = 'webhook' | 'websub'

export interface HookRecord {
  id: string
  /** 'websub': a WebSub subscription, delivered the WebSub way (see src/delivery/websub.ts). */
  kind: HookKind
  target_url: string
  /** null: every topic. */
  topic: string | null
  /** A WebSub subscription's hub.topic (a URL); null for webhooks. */
  topic_url: string | null
  /** Event type pattern (`order.*`); null: every type. */
  event: string | null
  /** null only for a WebSub subscription made without hub.secret. */
  secret: string | null
  /** A WebSub subscription's granted lease, and when it ends (ms); null for webhooks. */
  lease_seconds: number | null
  expires_at: number | null
  /** The secret before the last rotation, still signed with until `previous_secret_until` (ms). */
  previous_secret: string | null
  previous_secret_until: number | null
  ordered: boolean
  max_in_flight: number
  /** Deliveries per second at most; null: no limit. */
  rate_limit: number | null
  state: HookState
  disabled_reason: string | null
  /** When the current run of failures began (ms); null while the last attempt succeeded. */
  failing_since: number | null
  description: string | null
  /**
   * A CloudEvents Subscriptions API filter (src/core/filter.ts) in its canonical JSON text, evaluated
   * at fan-out; null: none. WebSub subscriptions have none.
   */
  filter: string | null
  created_at: number
  updated_at: number
}

export type HookChanges = Partial<
  Pick<
    HookRecord,
    | 'lease_seconds'
    | 'expires_at'
    | 'target_url'
    | 'topic'
    | 'event'
    | 'secret'
    | 'previous_secret'
    | 'previous_secret_until'
    | 'ordered'
    | 'max_in_flight'
    | 'rate_limit'
    | 'state'
    | 'disabled_reason'
    | 'failing_since'
    | 'description'
    | 'filter'
  >
>

export type DeliveryState = 'pending' | 'delivered' | 'failed'

/** What GET /v1/deliveries narrows by; `since`/`until` bound `updated_at` (ms; until excluded). */
export interface DeliveryFilter {
  state?: DeliveryState
  hookId?: string
  topic?: string
  since?: number
  until?: number
  /** Only deliveries with a smaller id (the page before). */
  beforeId?: number
  limit: number
}

export interface DeliveryRecord {
  id: number
  hook_id: string
  topic: string
  seq: number
  event_id: string
  state: DeliveryState
  attempts: number
  /** When it is next sent (ms); null while it waits behind an earlier one of its ordered queue. */
  due_at: number | null
  last_status: number | null
  last_error: string | null
  created_at: number
  updated_at: number
}

export interface AttemptRecord {
  id: number
  delivery_id: number
  hook_id: string
  event_id: string
  topic: string
  seq: number
  attempt: number
  at: number
  duration_ms: number
  /** The HTTP status; null when no response came (see `error`). */
  status: number | null
  error: string | null
  /** The start of the response body, truncated. */
  response: string | null
}

/** One attempt's result, as the dispatcher reports it. */
export interface AttemptResult {
  at: number
  duration_ms: number
  status: number | null
  error: string | null
  response: string | null
}

/** Deliveries a dispatcher claimed, to send in this order: an ordered queue's run, or one delivery. */
export interface ClaimedRun {
  hook: HookRecord
  deliveries: ClaimedDelivery[]
  /**
   * The lease token of this claim: every settlement and extension of the run carries it, and changes
   * only rows still leased under it. A dispatcher paused past its lease (its rows rescued and claimed
   * by another) can then neither settle nor extend what another one now holds. One token per call of
   * `claimDeliveries`, shared by the runs it returns (one settlement may cover several of them); a new
   * one at every call, never reused.
   */
  lease: string
}

export interface ClaimedDelivery {
  id: number
  topic: string
  seq: number
  event_id: string
  /** Attempts made before this one. */
  attempts: number
  /** The event's JSON; null when retention removed the event before it could be delivered. */
  body: string | null
}

export interface ClaimRequest {
  /** The node claiming (its id): its leases are released when it stops or is found dead. */
  owner: string
  now: number
  leaseMs: number
  /** Deliveries an ordered queue's run may hold. */
  runLength: number
  /** Runs at most, over all hooks. */
  limit: number
}

/** The continuation of an ordered run still in flight (see QueueStore.extendRun). */
export interface ExtendRequest {
  owner: string
  /** The run's lease token: nothing is claimed unless the run still holds rows under it. */
  lease: string
  now: number
  leaseMs: number
  hookId: string
  topic: string
  /** The seq of the run's last delivery: the continuation starts after it. */
  afterSeq: number
  runLength: number
}

/** What the dispatcher learned, written in one transaction. */
export interface Settlement {
  /** The run's lease token: outcomes, releases and the carry apply only to rows still leased under it. */
  lease: string
  now: number
  outcomes: DeliveryOutcome[]
  /** Claimed deliveries that were not sent (their run stopped): their leases are let go. */
  released: number[]
  /** Ordered queues whose run ended: their next pending delivery becomes due. */
  advanced: Array<{ hookId: string; topic: string }>
  /**
   * A run still in flight: its next unsent delivery, which carries the queue's busy mark (due_at) once
   * the deliveries before it are settled, so that nothing else of the queue is made due meanwhile.
   */
  carry?: number
  /** A hook failing continuously for this long is disabled. */
  disableAfterMs: number
}

export type DeliveryOutcome = {
  id: number
  hookId: string
  attempt: AttemptResult
} & (
  | { result: 'delivered' }
  | { result: 'retry'; dueAt: number }
  | { result: 'failed' }
  /** 410 Gone: the hook is deleted. */
  | { result: 'gone' }
)

export interface SettleResult {
  /** Hooks whose deliveries began failing with this settlement (after a success, or their first). */
  failing: HookRecord[]
  /** Hooks this settlement disabled (continuous failure), and removed (410). */
  disabled: HookRecord[]
  removed: HookRecord[]
}

export interface ReplayRequest {
  topic: string
  /** Events after this seq, or stored since this time (ms). */
  afterSeq?: number
  since?: number
  /** Events at most. */
  limit: number
  now: number
}

export type VerificationState = 'pending' | 'verified' | 'failed' | 'denied'

export interface VerificationRecord {
  id: number
  mode: string
  topic_url: string
  callback: string
  state: VerificationState
  error: string | null
  requested_at: number
  completed_at: number | null
}

/**
 * A WebSub subscription request whose verification of intent is to be done, with what doing it (again,
 * on another node) needs. `secret` is hub.secret: kept like hooks' secrets, only until the verification
 * is done, and never shown by the admin API nor logged.
 */
export interface PendingVerification {
  id: number
  mode: 'subscribe' | 'unsubscribe'
  topic_url: string
  callback: string
  /** The lease the hub granted (a subscribe's), in seconds. */
  lease_seconds: number | null
  secret: string | null
  requested_at: number
}

/**
 * Who performs a pending verification, and until when (the store's clock, the database's on
 * PostgreSQL): a verification is done by the node holding it, and its outcome recorded only under
 * its token. A lease that ran out, or whose owner is no longer a node of the store (NodeStore), is
 * taken by another node, which does the verification again.
 */
export interface VerificationLease {
  owner: string
  token: string
  until: number
}

/** A verification's outcome, and what it changes, written together (see HookStore.finishVerification). */
export interface VerificationOutcome {
  id: number
  /** The lease token it was performed under. */
  token: string
  state: Exclude<VerificationState, 'pending'>
  error: string | null
  now: number
  /**
   * A verified subscribe: the subscription, created or replacing the one of its topic and callback
   * (keeping its id and its queue). A verified unsubscribe removes that one.
   */
  subscription?: HookRecord
  unsubscribe?: boolean
}

/** Hooks and WebSub subscriptions, their deliveries and attempts, as the admin routes see them. */
export interface HookStore {
  createHook(hook: HookRecord): Promise<HookRecord>
  hook(id: string): Promise<HookRecord | undefined>
  /** Hooks of one kind in id order; WebSub subscriptions optionally of one hub.topic. */
  hooks(options: { after?: string; limit: number; kind?: HookKind; topicUrl?: string }): Promise<HookRecord[]>
  websubSubscription(topicUrl: string, callback: string): Promise<HookRecord | undefined>
  /**
   * Records a subscription request as a pending verification, held by `lease`, durably: if the node
   * doing it dies, another one finds it and does it (claimVerifications). Returns its id.
   */
  recordVerification(request: Omit<PendingVerification, 'id'>, lease: VerificationLease): Promise<number>
  /**
   * The pending verification `id`, for the holder of `lease` to do now (its lease renewed to
   * `lease.until`). undefined when `lease.token` no longer holds it (another node took it over), or
   * when an earlier verification of its topic and callback is still pending: requests for one topic and
   * callback are verified in the order they came, so it is then let go, for whichever node takes it
   * once the earlier one is done.
   */
  startVerification(id: number, lease: VerificationLease): Promise<PendingVerification | undefined>
  /**
   * Leases to `lease` (oldest first, `limit` at most) the pending verifications that no one does: their
   * lease ran out or was let go, their owner is no longer a node of the store, or it is `formerSelf` (a
   * former process under this node's id). None that an earlier pending verification of its topic and
   * callback precedes.
   */
  claimVerifications(request: {
    lease: VerificationLease
    now: number
    limit: number
    formerSelf?: string
  }): Promise<PendingVerification[]>
  /**
   * Records a verification's outcome and its effect on the subscription in one transaction, only while
   * `outcome.token` still holds it (the secret is forgotten then); false when it no longer did, and
   * nothing was changed: another node took it over and does it again.
   */
  finishVerification(outcome: VerificationOutcome): Promise<boolean>
  verifications(options: { topicUrl?: string; limit: number }): Promise<VerificationRecord[]>
  /** undefined when there is no such hook. */
  updateHook(id: string, changes: HookChanges, now: number): Promise<HookRecord | undefined>
  deleteHook(id: string): Promise<boolean>

  delivery(hookId: string, id: number): Promise<DeliveryRecord | undefined>
  /** The attempts log of a hook, newest first; optionally of one delivery or one event. */
  attempts(
    hookId: string,
    options: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): Promise<AttemptRecord[]>
  /**
   * Queues a settled delivery again: due now, or in an ordered queue once nothing else of the queue
   * is due or in flight. A pending one is returned as it is. undefined when there is none.
   */
  retryDelivery(hookId: string, id: number, now: number): Promise<DeliveryRecord | undefined>
  /**
   * Queues the hook's matching events of a topic again (new deliveries, or settled ones reset);
   * `queued` counts those, not the ones already pending. `limit` bounds the events read.
   */
  replay(hookId: string, request: ReplayRequest): Promise<{ queued: number }>
  deliveryCounts(): Promise<Record<DeliveryState, number>>
  /** Deliveries across hooks, newest first (by id), narrowed by each filter given. */
  listDeliveries(filter: DeliveryFilter): Promise<DeliveryRecord[]>
}

/** The durable delivery queue, as the dispatcher uses it. */
export interface QueueStore {
  /**
   * Leases due deliveries: the runs are this dispatcher's until it settles them or the lease ends.
   * A hook's `max_in_flight` holds across every node of the store: a claim takes no more runs of a
   * hook than its cap minus the runs of it leased now, by any owner (an ordered queue's run is the
   * rows leased under one token in one topic; an unordered delivery is a run of its own). Claims of
   * one hook are serialised so that two nodes never both count the same room. A hook's `rate_limit`
   * is one token bucket in the store, taken from in the claim's transaction (src/delivery/rate-limit.ts):
   * a claim takes no more deliveries of a hook than its bucket holds whole tokens, runs cut to fit, so
   * that a sender never waits for a token.
   */
  claimDeliveries(request: ClaimRequest): Promise<ClaimedRun[]>
  /**
   * Claims more of an ordered run while it is still being sent, so that its queue does not wait for a
   * claim when the run's deliveries run out: the queue's pending deliveries after `afterSeq` that no
   * one holds, up to `runLength`, under a lease, with the hook as it is now. undefined when the hook
   * is gone, not active, no longer ordered or rate limited (its runs are cut to its tokens at each
   * claim); no deliveries when nothing follows yet.
   */
  extendRun(request: ExtendRequest): Promise<ClaimedRun | undefined>
  settleDeliveries(settlement: Settlement): Promise<SettleResult>
  /** When the earliest pending delivery not leased is due (ms), or null when none is. */
  nextDueAt(): Promise<number | null>
}

export interface NodeRecord {
  id: string
  /** Milliseconds since the epoch, by the store's clock (the database's, on PostgreSQL). */
  started_at: number
  heartbeat_at: number
  /** Whether the node holds the leadership now (see MaintenanceStore). */
  leader: boolean
}

/**
 * The nodes that serve one store, so that the deliveries a node leased are not held for a whole lease
 * when it is gone: a node that starts or stops gracefully lets go at once, and a node found dead has
 * its leases rescued by the others. On SQLite one server holds the data directory (its lock), so a
 * node that joins knows every lease left in the file belongs to a dead process.
 */
export interface NodeStore {
  /** Records the node as live and rescues the leases of nodes that are gone. */
  joinCluster(nodeId: string): Promise<void>
  /**
   * Marks the node alive; releases the leases of nodes whose heartbeat is older than `staleMs` (or,
   * on PostgreSQL, whose database session is gone: a killed process) and forgets them. Returns how
   * many deliveries it released.
   */
  heartbeat(nodeId: string, staleMs: number): Promise<number>
  /** A graceful stop: releases the node's leases (its queues move on at once) and forgets it. */
  leaveCluster(nodeId: string): Promise<void>
  nodes(): Promise<NodeRecord[]>
}

/**
 * What the leader's maintenance uses (src/cluster/maintenance.ts): one node at a time per store is the
 * leader, and runs the work that should run once per cluster rather than once per node.
 *
 * Contract (test/store/leader-contract.ts):
 * - `claimLeadership` takes the leadership when no one holds it (never held, released, or its lease
 *   ran out) and renews it when the caller holds it; either way the lease then lasts `leaseMs` from
 *   the moment the store applied the claim, by the store's clock (the database's `now()` on
 *   PostgreSQL, never the caller's). A claim is one statement: two nodes claiming at once cannot both
 *   win. The answer names the leader (null when the store cannot tell: another claim was under way)
 *   and its term.
 * - Terms only grow: a renewal keeps the term; a leadership taken anew (by another node, or by the
 *   same one after its lease ran out or was released) is the previous term + 1.
 * - `releaseLeadership` ends the caller's lease at once (nothing when it is not the leader), so that
 *   another node's next claim takes over without waiting for the lease to run out.
 * - SQLite has one server per file (the data directory's lock): whoever claims leads, in term 1.
 *
 * A caller must stop acting as the leader before its lease could have ended by the store's clock:
 * the lease runs from a moment after the claim was sent, so counting `leaseMs` (less a margin) from
 * the sending on the caller's monotonic clock is safe whatever the two clocks read.
 */
export interface MaintenanceStore {
  claimLeadership(nodeId: string, leaseMs: number): Promise<LeadershipClaim>
  releaseLeadership(nodeId: string): Promise<void>
  /**
   * The backstop behind node rescue: releases the leases that ran out at `now` (their ordered queues'
   * oldest pending delivery made due), and makes due the oldest pending delivery of each stalled queue
   * (pending deliveries, none due or leased: a hook switched between ordered and unordered with a run
   * out, a crash between two commits). It reads every leased and pending row, so it runs now and then
   * (every few seconds, on the leader), never at each claim.
   */
  recoverDeliveries(now: number): Promise<RecoveryResult>
}

export interface LeadershipClaim {
  /** The node that holds the leadership, or null when no one does or the store could not tell. */
  leader: string | null
  /** The leadership's term: 1 for the first leader of a store, + 1 at each new leadership. */
  term: number
  /** Whether the caller holds it now. */
  isMe: boolean
}

export interface RecoveryResult {
  /** Deliveries whose lease had run out, released. */
  released: number
  /** Stalled queues whose oldest pending delivery was made due. */
  stalled: number
}

/** One member of a topic's presence: a WebSocket that subscribed with `presence` (PresenceStore). */
export interface PresenceRecord {
  topic: string
  /** The socket's id, made by the server. */
  client: string
  /** The node holding the socket, which keeps the row alive. */
  node_id: string
  /** The token's `sub`, `key:<id>` for a key, or null (root, anonymous). */
  sub: string | null
  /** The member's info as JSON text, or null. */
  info: string | null
  /** When it joined (ms, by the store's clock). */
  since: number
  /** When it is taken for gone unless refreshed (ms, by the store's clock). */
  expires_at: number
}

/**
 * Who is present on which topic, shared by every node of the store (src/streams/presence.ts).
 * Contract (test/store/presence-contract.ts): a row past its `expires_at` is not a member (not listed,
 * not counted) whether or not it was deleted yet; `(topic, client)` is unique.
 */
export interface PresenceStore {
  /**
   * Enters (or, when the client is already a member, updates `info`, `sub`, `node_id` and `expires_at`
   * of) a member, unless the topic already has `maxMembers` other live members at `now`: then nothing
   * changes and false is returned. The count and the insert are one statement; members joining the
   * same topic on several nodes at the same instant may pass the bound by a few.
   */
  joinPresence(member: PresenceRecord, maxMembers: number, now: number): Promise<boolean>
  /** Removes a member; whether there was one. */
  leavePresence(topic: string, client: string): Promise<boolean>
  /** Moves the expiry of every member held by `nodeId` to `expiresAt`; how many there are. */
  refreshPresence(nodeId: string, expiresAt: number): Promise<number>
  /** The live members (at `now`) of these topics, by topic, then `since`, then client. */
  presence(topics: string[], now: number): Promise<PresenceRecord[]>
  /** Deletes the members expired at `now`; how many. */
  prunePresence(now: number): Promise<number>
  /** Deletes every member held by `nodeId` (a node starting again, or stopping); how many. */
  clearPresence(nodeId: string): Promise<number>
}
