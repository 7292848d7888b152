/**
 * `verifyWebhook` for receivers of Herald's webhooks (Standard Webhooks signatures), Node only: a
 * separate entry so that the browser bundle does not pull in node:crypto.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface VerifyOptions {
  /** How far `webhook-timestamp` may be from now, in seconds (default 300). */
  tolerance?: number
  now?: number
}

/** Headers as Node gives them, as a fetch `Headers`, or a plain object. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined
  const record = headers as Record<string, string | string[] | undefined>
  const value = record[name] ?? Object.entries(record).find(([key]) => key.toLowerCase() === name)?.[1]
  return Array.isArray(value) ? value[0] : value
}

/**
 * Checks a delivery's `webhook-signature` against `secret` (`whsec_…`; or several, for a rotation)
 * and its timestamp against the clock; returns the parsed body, or throws saying why not. `body` is
 * the raw request body, exactly as received.
 */
export function verifyWebhook<T = unknown>(
  secret: string | string[],
  body: string | Uint8Array,
  headers: WebhookHeaders,
  options: VerifyOptions = {},
): T {
  const id = header(headers, 'webhook-id')
  const timestamp = header(headers, 'webhook-timestamp')
  const signatures = header(headers, 'webhook-signature')
  if (!id || !timestamp || !signatures)
    throw new Error('Missing webhook-id, webhook-timestamp or webhook-signature.')
  const seconds = Number(timestamp)
  const now = (options.now ?? Date.now()) / 1000
  if (!/^\d+$/.test(timestamp) || Math.abs(now - seconds) > (options.tolerance ?? 300))
    throw new Error('The webhook-timestamp is too far from now.')
  const payload = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), Buffer.from(body)])
  const offered = signatures
    .split(' ')
    .filter((part) => part.startsWith('v1,'))
    .map((part) => Buffer.from(part.slice(3), 'base64'))
  for (const each of Array.isArray(secret) ? secret : [secret]) {
    const key = Buffer.from(each.startsWith('whsec_') ? each.slice(6) : each, 'base64')
    const expected = createHmac('sha256', key).update(payload).digest()
    if (
      offered.some(
        (signature) => signature.length === expected.length && timingSafeEqual(signature, expected),
      )
    )
      return JSON.parse(Buffer.from(body).toString('utf8')) as T
  }
  throw new Error('No webhook-signature matches the secret.')
}
