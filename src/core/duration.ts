const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** The longest duration Herald takes anywhere (retention, options, retry schedules): 100 years. */
export const MAX_DURATION_DAYS = 36_500
export const MAX_DURATION_MS = MAX_DURATION_DAYS * UNITS['d']!
/** The longest a Node.js timer waits (2^31-1 ms, about 24.8 days): a longer one fires at once instead. */
export const MAX_TIMER_MS = 2 ** 31 - 1
/** Longer text is no duration (`36500d` is six characters); it is refused before any matching. */
const MAX_DURATION_TEXT = 32
/** Digits, an optional fraction and unit: no two quantifiers can match the same characters. */
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/

/**
 * Parses a duration such as `250ms`, `5s`, `30m`, `2h` or `7d` into milliseconds, at most
 * MAX_DURATION_MS. A bare number is taken as seconds (the unit of HTTP's own Retry-After and wait=).
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim()
  const match = trimmed.length <= MAX_DURATION_TEXT ? DURATION.exec(trimmed) : null
  if (!match) throw new Error(`${quoted(text)} is not a duration (use e.g. 500ms, 5s, 5m, 2h, 7d)`)
  const ms = Math.round(Number(match[1]) * UNITS[match[2] ?? 's']!)
  if (!Number.isSafeInteger(ms) || ms > MAX_DURATION_MS) {
    throw new Error(
      `${quoted(text)} is longer than the longest duration Herald takes, ${MAX_DURATION_DAYS}d (100 years)`,
    )
  }
  return ms
}

/** The text as an error message shows it: quoted, and cut short when it is long. */
function quoted(text: string): string {
  return `"${text.length > 40 ? `${text.slice(0, 40)}…` : text}"`
}

/** Parses a comma list of durations, e.g. the retry schedule `0s,5s,5m`. */
export function parseDurationList(text: string): number[] {
  const parts = text.split(',').map((part) => part.trim())
  if (parts.length === 0 || parts.some((part) => part === '')) {
    throw new Error(`"${text}" is not a comma list of durations`)
  }
  return parts.map(parseDuration)
}
