import type { Audit } from '../access/audit.ts'
import type { KeyRing } from '../access/keys.ts'
import type { RateLimits } from '../access/rate-limit.ts'
import type { Bus } from '../bus/bus.ts'
import type { HeraldConfig } from '../config/config.ts'
import type { HookPolicy } from '../delivery/hooks.ts'
import type { WebSubHub } from '../delivery/websub-hub.ts'
import type { EventTypes } from '../event-types/catalog.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type { Metrics } from '../metrics/metrics.ts'
import type { HookStore, KeyStore, NodeStore, Store } from '../store/store.ts'
import type { Connections } from '../streams/connections.ts'
import type { Presence } from '../streams/presence.ts'
import type { Access } from './access.ts'

/** What the HTTP routes share: built once by the app, handed to every route module. */
export interface HttpContext {
  config: HeraldConfig
  /** Who may call what: HTTP routes and WebSocket messages ask the same object. */
  access: Access
  /** Request budgets (HERALD_RATE_LIMIT, keys' own): absent, nothing is counted. */
  rateLimits?: RateLimits
  log: TopicLog
  metrics: Metrics
  /** Every open streaming connection (limits, heartbeats, shutdown). */
  connections: Connections
  /** Who is on which topic, cluster-wide (WebSocket presence, GET /v1/topics/{topic}/presence). */
  presence: Presence
  /** Aborted when the server starts draining: held requests answer at once. */
  draining: AbortSignal
  /** Why the server is not ready for traffic (starting, draining, a store that cannot write), or undefined. */
  notReady: () => Promise<string | undefined>
  /** Webhooks: the checks on new targets, and a nudge for the dispatcher when work was queued. */
  hooks: { policy: HookPolicy; wake(): void; store: HookStore }
  /** The WebSub hub behind POST /websub. */
  websub: WebSubHub
  /** Scoped API keys: their store, and this node's cache of them (which revocation must reach). */
  keys: { store: KeyStore; ring: KeyRing }
  /** The event-type catalog (/v1/event-types), which every publish is checked against. */
  eventTypes: EventTypes
  /** Records an administrative action on herald.system. */
  audit: Audit
  /** GET /v1/cluster: which store and bus this node uses, and the nodes of the store. */
  cluster: { store: Store['kind']; bus: Bus['kind']; nodes: NodeStore['nodes'] }
}
