import { errors } from '../core/errors.ts'
import { MAX_TOPIC_LENGTH } from '../core/topic.ts'

/**
 * Topic patterns of scopes and token claims: `/`-separated segments where `*` stands for exactly one
 * segment and a final `**` for one or more. `orders/*` reaches `orders/eu` but not `orders` nor
 * `orders/eu/paris`; `orders/**` reaches both of those; `**` reaches every topic.
 * Matched segment by segment, never by a regular expression: the cost is linear in the topic.
 */
export type TopicPattern = readonly string[]

/** The most patterns one scope or one token claim may carry (an input bound). */
export const MAX_PATTERNS = 100

/** A pattern parsed from its text, or a coded 400 naming `field`. */
export function parsePattern(text: unknown, field: string): TopicPattern {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_TOPIC_LENGTH) {
    throw errors.invalidRequest(
      `A topic pattern is a string of 1 to ${MAX_TOPIC_LENGTH} characters, such as "orders/*" or "orders/**".`,
      field,
    )
  }
  const segments = text.split('/')
  segments.forEach((segment, index) => {
    if (segment === '*') return
    if (segment === '**') {
      if (index === segments.length - 1) return
      throw errors.invalidRequest(`"**" may only end a topic pattern ("${text}").`, field)
    }
    if (!isSegment(segment)) {
      throw errors.invalidRequest(
        `"${text}" is not a topic pattern: segments of letters, digits and "._~-" (each starting with a letter or digit), "*" for one segment, a final "**" for one or more.`,
        field,
      )
    }
  })
  return segments
}

/** Whether `topic` (a valid topic name) is one the pattern reaches. */
export function matches(pattern: TopicPattern, topic: string): boolean {
  let start = 0
  for (let index = 0; index < pattern.length; index++) {
    const part = pattern[index]!
    if (part === '**') return start < topic.length // one or more segments remain
    if (start > topic.length) return false
    const slash = topic.indexOf('/', start)
    const end = slash === -1 ? topic.length : slash
    if (part !== '*' && (end - start !== part.length || !topic.startsWith(part, start))) return false
    start = end + 1
  }
  return start > topic.length // every segment of the topic was consumed
}

/** Whether the pattern reaches every topic (`**`): what administration beyond one topic needs. */
export function reachesAll(pattern: TopicPattern): boolean {
  return pattern.length === 1 && pattern[0] === '**'
}

export function patternText(pattern: TopicPattern): string {
  return pattern.join('/')
}

function isSegment(segment: string): boolean {
  if (segment.length === 0 || !isAlphanumeric(segment.charCodeAt(0))) return false
  for (let i = 1; i < segment.length; i++) {
    const c = segment.charCodeAt(i)
    // . _ ~ -
    if (!isAlphanumeric(c) && c !== 0x2e && c !== 0x5f && c !== 0x7e && c !== 0x2d) return false
  }
  return true
}

function isAlphanumeric(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
}
