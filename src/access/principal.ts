import { errors } from '../core/errors.ts'
import { isHeraldTopic } from '../core/topic.ts'
import { matches, reachesAll, type TopicPattern } from './patterns.ts'

/** What a scope may grant: every read of events, every write of events, administration. */
export type Action = 'subscribe' | 'publish' | 'admin'
export const ACTIONS: readonly Action[] = ['subscribe', 'publish', 'admin']

/** Some actions on some topics. */
export interface Scope {
  actions: readonly Action[]
  topics: readonly TopicPattern[]
}

/** A request budget: `points` requests per `seconds`. */
export interface RateLimit {
  points: number
  seconds: number
}

/**
 * Who a request or a connection comes from.
 * - `root`: the holder of HERALD_API_KEY, every right.
 * - `anonymous`: no credentials in open mode (no HERALD_API_KEY, loopback only), every right.
 * - `key`: a scoped key of /v1/keys.
 * - `token`: a signed token (JWT) minted by the operator's own backend.
 */
export type Principal =
  | { kind: 'root' }
  | { kind: 'anonymous' }
  | {
      kind: 'key'
      id: string
      name: string
      scopes: readonly Scope[]
      /** Epoch milliseconds, or null for a key that does not expire. */
      expiresAt: number | null
      rateLimit: RateLimit | null
    }
  | {
      kind: 'token'
      sub: string | undefined
      scopes: readonly Scope[]
      /** Epoch milliseconds of the token's `exp`. */
      expiresAt: number
    }

export const ROOT: Principal = { kind: 'root' }
export const ANONYMOUS: Principal = { kind: 'anonymous' }

/** Whether `principal` may take `action` on `topic`, or on every topic when `topic` is undefined. */
export function may(principal: Principal, action: Action, topic?: string): boolean {
  if (principal.kind === 'root' || principal.kind === 'anonymous') return true
  // Herald's own topics (herald.system, the audit trail, which names hooks' targets; herald.websub/…)
  // are read by administrators of everything: admin on `**`, not a pattern that happens to reach them
  // (`*` is one segment, and `herald.system` is one).
  const own = topic !== undefined && isHeraldTopic(topic)
  const needed: Action = own ? 'admin' : action
  return principal.scopes.some(
    (scope) =>
      scope.actions.includes(needed) &&
      scope.topics.some((pattern) =>
        topic === undefined || own ? reachesAll(pattern) : matches(pattern, topic),
      ),
  )
}

/** Whether `principal` may take `action` on at least one topic (the route-level check). */
export function mayAtAll(principal: Principal, action: Action): boolean {
  if (principal.kind === 'root' || principal.kind === 'anonymous') return true
  // Admin reads Herald's own topics (see may): a key with admin only may reach a read route for them.
  return principal.scopes.some(
    (scope) =>
      (scope.actions.includes(action) || (action === 'subscribe' && scope.actions.includes('admin'))) &&
      scope.topics.length > 0,
  )
}

/** Throws the 403 of a missing right, naming the topic when there is one. */
export function assertMay(principal: Principal, action: Action, topic?: string): void {
  if (may(principal, action, topic)) return
  throw errors.forbidden(
    topic === undefined
      ? `This needs the "${action}" right on every topic ("**"), which these credentials do not hold.`
      : `These credentials do not hold the "${action}" right on the topic "${topic}".`,
    'topic',
  )
}

/** Who did something, as the audit trail names them: `root`, `anonymous`, `key:<id>`, `token:<sub>`. */
export function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case 'key':
      return `key:${principal.id}`
    case 'token':
      return `token:${principal.sub ?? ''}`
    default:
      return principal.kind
  }
}

/** When these credentials stop being valid (epoch ms), or undefined for never. */
export function expiryOf(principal: Principal): number | undefined {
  if (principal.kind === 'token') return principal.expiresAt
  if (principal.kind === 'key' && principal.expiresAt !== null) return principal.expiresAt
  return undefined
}
