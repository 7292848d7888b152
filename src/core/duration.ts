const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Parses a duration such as `250ms`, `5s`, `30m`, `2h` or `7d` into milliseconds.
 * A bare number is taken as seconds (the unit of HTTP's own Retry-After and wait=).
 */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text)
  if (!match) throw new Error(`"${text}" is not a duration (use e.g. 500ms, 5s, 5m, 2h, 7d)`)
  const value = Number(match[1]) * UNITS[match[2] ?? 's']!
  return Math.round(value)
}

/** Parses a comma list of durations, e.g. the retry schedule `0s,5s,5m`. */
export function parseDurationList(text: string): number[] {
  const parts = text.split(',').map((part) => part.trim())
  if (parts.length === 0 || parts.some((part) => part === '')) {
    throw new Error(`"${text}" is not a comma list of durations`)
  }
  return parts.map(parseDuration)
}
