import type { RateLimit } from './principal.ts'

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 }

/** The largest budget one rate may state (an input bound; far above what one node serves). */
const MAX_POINTS = 1_000_000

/**
 * `100/s`, `600/m`, `10000/h`: requests per second, minute or hour. Undefined when the text is not
 * such a rate (the caller says which option or field was wrong). Parsed by hand: no regular
 * expression on a client's text.
 */
export function parseRate(text: string): RateLimit | undefined {
  const slash = text.indexOf('/')
  if (slash <= 0) return undefined
  const count = text.slice(0, slash)
  const seconds = UNIT_SECONDS[text.slice(slash + 1)]
  if (seconds === undefined || count.length > 7 || ![...count].every((c) => c >= '0' && c <= '9')) {
    return undefined
  }
  const points = Number(count)
  return points >= 1 && points <= MAX_POINTS ? { points, seconds } : undefined
}

/** A rate in its text form (`100/s`), as the API shows it. */
export function rateText(rate: RateLimit): string {
  const unit = Object.keys(UNIT_SECONDS).find((u) => UNIT_SECONDS[u] === rate.seconds) ?? 's'
  return `${rate.points}/${unit}`
}
