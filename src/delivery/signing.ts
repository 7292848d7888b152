/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com): `webhook-signature` is
 * `v1,<base64 HMAC-SHA256(key, "id.timestamp.body")>`, the key being the bytes after `whsec_`.
 * Several space-separated signatures let a hook rotate its secret: during the grace period Herald
 * signs with the old and the new one, and a receiver holding either accepts the delivery.
 */
import { createHmac, createSecretKey, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto'
import { errors } from '../core/errors.ts'

const PREFIX = 'whsec_'
/** The reference libraries' tolerance between the sender's clock and the receiver's. */
export const TOLERANCE_SECONDS = 5 * 60

export function generateSecret(): string {
  return PREFIX + randomBytes(32).toString('base64')
}

/** The key bytes of a `whsec_…` secret; throws `invalid-secret` for anything else. */
export function parseSecret(secret: string): Buffer {
  const refuse = (why: string) =>
    errors.invalidSecret(`secret ${why}; it must be "whsec_" and base64 of 24 to 64 random bytes.`, 'secret')
  if (!secret.startsWith(PREFIX)) throw refuse('does not start with "whsec_"')
  const encoded = secret.slice(PREFIX.length)
  const key = Buffer.from(encoded, 'base64')
  // Buffer.from skips what is not base64; encoding back exposes stray or missing characters.
  if (encoded === '' || key.toString('base64') !== encoded) throw refuse('is not valid padded base64')
  if (key.length < 24 || key.length > 64) throw refuse(`is ${key.length} bytes long`)
  return key
}

export interface SignInput {
  /** The webhook-id header: the event id, the same on every retry. */
  id: string
  /** The webhook-timestamp header, in Unix seconds: the time of this attempt. */
  timestamp: number
  body: string | Uint8Array
  /** One secret, or the old and the new one while a rotation's grace period runs. */
  secrets: readonly string[]
}

function hmac(
  key: Buffer | KeyObject,
  id: string,
  timestamp: number | string,
  body: string | Uint8Array,
): Buffer {
  return createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest()
}

/**
 * Secrets already decoded into KeyObjects: HMAC with raw key bytes re-checks and wraps them on every
 * call, which costs several times the signing itself. Bounded: secrets rotate, the map must not grow.
 */
const keys = new Map<string, KeyObject>()
const MAX_KEYS = 10_000

function signingKey(secret: string): KeyObject {
  let key = keys.get(secret)
  if (!key) {
    if (keys.size >= MAX_KEYS) keys.clear()
    key = createSecretKey(parseSecret(secret))
    keys.set(secret, key)
  }
  return key
}

/** The `webhook-signature` header value: one `v1,<base64>` per secret, space-separated. */
export function sign({ id, timestamp, body, secrets }: SignInput): string {
  if (secrets.length === 0) throw new Error('sign needs at least one secret')
  return secrets
    .map((secret) => `v1,${hmac(signingKey(secret), id, timestamp, body).toString('base64')}`)
    .join(' ')
}

/** The headers of one delivery attempt, signed now. */
export function signedHeaders(
  id: string,
  body: string | Uint8Array,
  secrets: readonly string[],
  nowMs = Date.now(),
): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000)
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign({ id, timestamp, body, secrets }),
  }
}

export interface VerifyInput {
  id: string | undefined
  timestamp: string | undefined
  signature: string | undefined
  body: string | Uint8Array
  /** Secrets the receiver accepts; a match with any of them verifies. */
  secrets: readonly string[]
  nowMs?: number
}

export type Verdict = { ok: true } | { ok: false; reason: string }

/** Verifies a delivery as a receiver does: the timestamp within ±5 minutes, then any v1 signature. */
export function verify(input: VerifyInput): Verdict {
  const { id, timestamp, signature, body, secrets } = input
  if (!id || !timestamp || !signature) return { ok: false, reason: 'missing webhook-* headers' }
  if (!/^\d+$/.test(timestamp)) return { ok: false, reason: 'webhook-timestamp is not Unix seconds' }
  const skew = Math.abs((input.nowMs ?? Date.now()) / 1000 - Number(timestamp))
  if (skew > TOLERANCE_SECONDS) return { ok: false, reason: 'webhook-timestamp is more than 5 minutes off' }
  const offered = signature
    .split(' ')
    .filter((part) => part.startsWith('v1,'))
    .map((part) => Buffer.from(part.slice(3), 'base64'))
  for (const secret of secrets) {
    const expected = hmac(parseSecret(secret), id, timestamp, body)
    // timingSafeEqual needs equal lengths; a length mismatch reveals nothing about the key.
    if (offered.some((sig) => sig.length === expected.length && timingSafeEqual(sig, expected))) {
      return { ok: true }
    }
  }
  return { ok: false, reason: 'no signature matches' }
}
