import { errors } from './errors.ts'

/**
 * Event type patterns for webhook filters: dot-separated segments, where a `*` segment stands for a
 * run of one or more segments. `order.*` matches `order.created` and `order.line.added`, not `order`;
 * `*.deleted` matches `invoice.deleted`; `*` matches every type.
 */

const MAX_PATTERN_LENGTH = 200
const compiled = new Map<string, readonly string[]>()

/** Checks a pattern given by a client; returns it unchanged. */
export function validateEventPattern(pattern: unknown, field = 'event'): string {
  if (typeof pattern !== 'string' || pattern === '' || pattern.length > MAX_PATTERN_LENGTH) {
    throw errors.invalidRequest(`"${field}" is an event type or pattern of 1 to 200 characters.`, field)
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\s]/.test(pattern)) {
    throw errors.invalidRequest(`"${field}" may not contain spaces or control characters.`, field)
  }
  // A lone surrogate (JSON "\ud800") is no character: stored, it would become U+FFFD, another pattern.
  if (!pattern.isWellFormed()) {
    throw errors.invalidRequest(`"${field}" is not well-formed Unicode (a lone surrogate).`, field)
  }
  for (const segment of pattern.split('.')) {
    if (segment === '') throw errors.invalidRequest(`"${field}" has an empty segment.`, field)
    if (segment.includes('*') && segment !== '*') {
      throw errors.invalidRequest(`In "${field}", * stands for whole segments only ("order.*").`, field)
    }
  }
  return pattern
}

/**
 * Whether `type` matches `pattern`, in O(segments of type × segments of pattern) at worst, with no
 * regular expression: a pattern such as `*.*.*.*.*.*.*.*.*.*.z` against a 50-segment type made the
 * former regular expression backtrack for a minute. This is the two-pointer wildcard match (only the
 * last `*` seen is ever stretched, because any run of segments one `*` can take, another can too).
 */
export function matchesEventType(pattern: string, type: string): boolean {
  let segments = compiled.get(pattern)
  if (!segments) {
    segments = pattern.split('.')
    if (compiled.size > 10_000) compiled.clear() // a bound, not a policy: patterns are few
    compiled.set(pattern, segments)
  }
  return matchSegments(segments, type.split('.'))
}

function matchSegments(pattern: readonly string[], type: readonly string[]): boolean {
  // An empty segment (`a..b`, `.a`) is taken by no `*` (it stands for non-empty segments) and equals
  // no pattern segment (those are never empty): such a type matches nothing.
  if (type.includes('')) return false
  let p = 0
  let t = 0
  let star = -1 // the index of the last `*` met in the pattern
  let resumeAt = 0 // where the type continues once that `*` has taken its segments
  while (t < type.length) {
    if (pattern[p] === '*') {
      star = p++
      resumeAt = ++t // a `*` takes at least one segment
    } else if (p < pattern.length && pattern[p] === type[t]) {
      p++
      t++
    } else if (star !== -1) {
      p = star + 1 // the last `*` takes one segment more
      t = ++resumeAt
    } else {
      return false
    }
  }
  return p === pattern.length
}

/** The first segment, which the Store indexes topic-less hooks by; `*` for a leading wildcard. */
export function eventRoot(patternOrType: string): string {
  const dot = patternOrType.indexOf('.')
  return dot === -1 ? patternOrType : patternOrType.slice(0, dot)
}
