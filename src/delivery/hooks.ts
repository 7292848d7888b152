import type { Agent } from 'undici'
import { errors } from '../core/errors.ts'
import { ulid } from '../core/event.ts'
import { validateEventPattern } from '../core/event-pattern.ts'
import { parseFilter } from '../core/filter.ts'
import { validateTopic } from '../core/topic.ts'
import type { HookChanges, HookRecord } from '../store/store.ts'
import { post } from './attempt.ts'
import { generateSecret, parseSecret } from './signing.ts'
import { MAX_URL_LENGTH, validateTarget } from './targets.ts'

/**
 * Webhook subscriptions as the API sees them: what a client may send (`POST /v1/hooks`, `PATCH`), the
 * checks on it, and what is answered. REST Hooks clients (Zapier) send `target_url` + `event` and
 * may add the legacy `subscription_url`, which is ignored.
 */

const DEFAULT_MAX_IN_FLIGHT = 10
const MAX_MAX_IN_FLIGHT = 1000
const MAX_RATE_LIMIT = 100_000
const MAX_DESCRIPTION = 500
const HANDSHAKE_TIMEOUT_MS = 10_000

export interface HookPolicy {
  allowPrivateTargets: boolean
  secretGraceMs: number
  agent: Agent
}

type Body = Record<string, unknown>

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw errors.invalidRequest('The body is a JSON object.')
  }
  return body as Body
}

const FIELDS = new Set([
  'target_url',
  'topic',
  'event',
  'secret',
  'verify',
  'ordered',
  'max_in_flight',
  'rate_limit',
  'description',
  'state',
  'rotate_secret',
  'filter',
  'subscription_url', // REST Hooks' legacy duplicate of target_url: accepted, ignored
])

function refuseUnknown(body: Body): void {
  for (const key of Object.keys(body)) {
    if (!FIELDS.has(key)) throw errors.invalidRequest(`Unknown field "${key}".`, key)
  }
}

function optionalBoolean(body: Body, field: string): boolean | undefined {
  const value = body[field]
  if (value === undefined) return undefined
  if (typeof value !== 'boolean') throw errors.invalidRequest(`"${field}" is true or false.`, field)
  return value
}

function targetUrl(value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw errors.invalidRequest('"target_url" is the http(s) URL deliveries are POSTed to.', 'target_url')
  }
  if (value.length > MAX_URL_LENGTH) {
    throw errors.invalidRequest(`"target_url" has at most ${MAX_URL_LENGTH} characters.`, 'target_url')
  }
  return wellFormed(value, 'target_url')
}

/**
 * Text a hook stores must be well-formed Unicode: a lone surrogate (JSON "\ud800") would be stored as
 * U+FFFD, and the hook would keep other text than it was given.
 */
function wellFormed(value: string, field: string): string {
  if (!value.isWellFormed()) {
    throw errors.invalidRequest(`"${field}" is not well-formed Unicode (a lone surrogate).`, field)
  }
  return value
}

function topicFilter(value: unknown): string | null {
  return value === undefined || value === null ? null : validateTopic(value)
}

function eventFilter(value: unknown): string | null {
  return value === undefined || value === null ? null : validateEventPattern(value)
}

/** `"filter"`: a CloudEvents Subscriptions API filter, stored in its canonical form; null: none. */
function contentFilter(value: unknown): string | null {
  return value === undefined || value === null ? null : parseFilter(value).key
}

function maxInFlight(value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > MAX_MAX_IN_FLIGHT) {
    throw errors.invalidRequest(
      `"max_in_flight" is a whole number from 1 to ${MAX_MAX_IN_FLIGHT}.`,
      'max_in_flight',
    )
  }
  return value as number
}

function rateLimit(value: unknown): number | null {
  if (value === null) return null
  if (typeof value !== 'number' || !(value > 0) || value > MAX_RATE_LIMIT) {
    throw errors.invalidRequest(
      `"rate_limit" is deliveries per second, above 0 and at most ${MAX_RATE_LIMIT}, or null.`,
      'rate_limit',
    )
  }
  return value
}

function description(value: unknown): string | null {
  if (value === null) return null
  if (typeof value !== 'string' || value.length > MAX_DESCRIPTION) {
    throw errors.invalidRequest(
      `"description" is a string of at most ${MAX_DESCRIPTION} characters.`,
      'description',
    )
  }
  return wellFormed(value, 'description')
}

function secret(value: unknown): string {
  if (typeof value !== 'string') throw errors.invalidSecret('"secret" is a whsec_… string.', 'secret')
  parseSecret(value)
  return value
}

function requireFilter(topic: string | null, event: string | null): void {
  if (topic === null && event === null) {
    throw errors.invalidRequest('Give a "topic", an "event" type (pattern), or both.', 'topic')
  }
}

/** A new hook from `POST /v1/hooks`, its target checked (resolved through DNS) and, with `verify`, confirmed. */
export async function createHookRecord(raw: unknown, policy: HookPolicy, now: number): Promise<HookRecord> {
  const body = asBody(raw)
  refuseUnknown(body)
  const url = targetUrl(body['target_url'])
  const topic = topicFilter(body['topic'])
  const event = eventFilter(body['event'])
  requireFilter(topic, event)
  const hook: HookRecord = {
    id: `hook_${ulid(now)}`,
    kind: 'webhook',
    target_url: url,
    topic,
    topic_url: null,
    event,
    secret: body['secret'] === undefined ? generateSecret() : secret(body['secret']),
    lease_seconds: null,
    expires_at: null,
    previous_secret: null,
    previous_secret_until: null,
    ordered: optionalBoolean(body, 'ordered') ?? true,
    max_in_flight:
      body['max_in_flight'] === undefined ? DEFAULT_MAX_IN_FLIGHT : maxInFlight(body['max_in_flight']),
    rate_limit: body['rate_limit'] === undefined ? null : rateLimit(body['rate_limit']),
    state: 'active',
    disabled_reason: null,
    failing_since: null,
    description: body['description'] === undefined ? null : description(body['description']),
    filter: contentFilter(body['filter']),
    created_at: now,
    updated_at: now,
  }
  if (body['state'] !== undefined || body['rotate_secret'] !== undefined) {
    throw errors.invalidRequest(
      '"state" and "rotate_secret" are for PATCH.',
      body['state'] !== undefined ? 'state' : 'rotate_secret',
    )
  }
  await validateTarget(url, policy.allowPrivateTargets)
  if (optionalBoolean(body, 'verify')) await handshake(url, hook.secret!, policy)
  return hook
}

/** The changes of a `PATCH /v1/hooks/{id}`, checked against the hook as it is. */
export async function hookChanges(
  raw: unknown,
  current: HookRecord,
  policy: HookPolicy,
  now: number,
): Promise<HookChanges> {
  const body = asBody(raw)
  refuseUnknown(body)
  for (const field of ['verify', 'subscription_url'] as const) {
    if (body[field] !== undefined) throw errors.invalidRequest(`"${field}" is for POST /v1/hooks.`, field)
  }
  const changes: HookChanges = {}
  if (body['target_url'] !== undefined) {
    changes.target_url = targetUrl(body['target_url'])
    await validateTarget(changes.target_url, policy.allowPrivateTargets)
  }
  if ('topic' in body) changes.topic = topicFilter(body['topic'])
  if ('event' in body) changes.event = eventFilter(body['event'])
  requireFilter(
    changes.topic === undefined ? current.topic : changes.topic,
    changes.event === undefined ? current.event : changes.event,
  )
  const ordered = optionalBoolean(body, 'ordered')
  if (ordered !== undefined) changes.ordered = ordered
  if (body['max_in_flight'] !== undefined) changes.max_in_flight = maxInFlight(body['max_in_flight'])
  if ('rate_limit' in body) changes.rate_limit = rateLimit(body['rate_limit'])
  if ('description' in body) changes.description = description(body['description'])
  if ('filter' in body) changes.filter = contentFilter(body['filter'])
  if (body['state'] !== undefined) {
    const state = body['state']
    if (state !== 'active' && state !== 'paused') {
      throw errors.invalidRequest(
        '"state" is "active" or "paused" (a disabled hook is re-enabled with "active").',
        'state',
      )
    }
    changes.state = state
    if (state === 'active' && current.state === 'disabled') {
      changes.disabled_reason = null
      changes.failing_since = null
    }
  }
  const rotate = optionalBoolean(body, 'rotate_secret')
  if (rotate && body['secret'] !== undefined) {
    throw errors.invalidRequest('Give a new "secret" or "rotate_secret": true, not both.', 'secret')
  }
  if (rotate || body['secret'] !== undefined) {
    // The old secret keeps signing (as a second signature) for the grace period, so that receivers
    // can switch over without dropping a delivery.
    changes.secret = rotate ? generateSecret() : secret(body['secret'])
    changes.previous_secret = current.secret
    changes.previous_secret_until = now + policy.secretGraceMs
  }
  return changes
}

/**
 * The REST Hooks handshake: a POST with `X-Hook-Secret` that the target must echo in a 2xx answer, or
 * the subscription is not created. The secret sent is the hook's signing secret.
 */
async function handshake(url: string, hookSecret: string, policy: HookPolicy): Promise<void> {
  const result = await post({
    url,
    headers: {
      'x-hook-secret': hookSecret,
      'content-type': 'application/json',
      'user-agent': 'Herald-Webhooks',
    },
    body: '{}',
    timeoutMs: HANDSHAKE_TIMEOUT_MS,
    agent: policy.agent,
    responseHeader: 'x-hook-secret',
  })
  const ok = result.status !== null && result.status >= 200 && result.status < 300
  if (ok && result.header === hookSecret) return
  const why =
    result.status === null
      ? `the request failed: ${result.error}`
      : ok
        ? 'the answer did not echo X-Hook-Secret'
        : `it answered ${result.status}`
  throw errors.hookVerificationFailed(`The target did not confirm the subscription: ${why}.`, 'target_url')
}

/** A hook as the API answers it; the secret only where asked (creation, one hook, rotation). */
export function hookView(hook: HookRecord, withSecret: boolean): Record<string, unknown> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())
  return {
    id: hook.id,
    target_url: hook.target_url,
    topic: hook.topic,
    event: hook.event,
    ...(withSecret ? { secret: hook.secret } : {}),
    ...(withSecret && hook.previous_secret_until !== null && hook.previous_secret_until > Date.now()
      ? { previous_secret_until: iso(hook.previous_secret_until) }
      : {}),
    ordered: hook.ordered,
    max_in_flight: hook.max_in_flight,
    rate_limit: hook.rate_limit,
    state: hook.state,
    disabled_reason: hook.disabled_reason,
    failing_since: iso(hook.failing_since),
    description: hook.description,
    filter: hook.filter === null ? null : (JSON.parse(hook.filter) as unknown),
    created_at: iso(hook.created_at),
    updated_at: iso(hook.updated_at),
  }
}
