/**
 * When to try a failed delivery again: the configured schedule (HERALD_RETRY_SCHEDULE, one delay
 * before each attempt), with ±20% jitter on delays of a second or more so that a receiver that comes
 * back is not hit by every queued delivery at the same instant, and at least what the receiver asked
 * for in Retry-After, up to an hour.
 */

const JITTER = 0.2
const JITTER_FROM_MS = 1000
/** A Retry-After beyond this is taken as this: a bound on how long one answer can stall a queue. */
export const MAX_RETRY_AFTER_MS = 3_600_000

/**
 * The delay before the next attempt, or null when `attemptsMade` attempts used the whole schedule
 * (schedule[0] is the delay before the first attempt, so the schedule's length is the most attempts).
 */
export function nextDelay(
  scheduleMs: readonly number[],
  attemptsMade: number,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number | null {
  const scheduled = scheduleMs[attemptsMade]
  if (scheduled === undefined) return null
  const jittered =
    scheduled >= JITTER_FROM_MS ? Math.round(scheduled * (1 - JITTER + 2 * JITTER * random())) : scheduled
  if (retryAfterMs === undefined) return jittered
  return Math.max(jittered, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS))
}

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; undefined when absent or invalid. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim()
  if (!text) return undefined
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs)
}
