import { errors } from './errors.ts'

/**
 * Event type patterns for webhook filters: dot-separated segments, where a `*` segment stands for a
 * run of one or more segments. `order.*` matches `order.created` and `order.line.added`, not `order`;
 * `*.deleted` matches `invoice.deleted`; `*` matches every type.
 */

const MAX_PATTERN_LENGTH = 200
const compiled = new Map<string, RegExp>()

/** Checks a pattern given by a client; returns it unchanged. */
export function validateEventPattern(pattern: unknown, field = 'event'): string {
  if (typeof pattern !== 'string' || pattern === '' || pattern.length > MAX_PATTERN_LENGTH) {
    throw errors.invalidRequest(`"${field}" is an event type or pattern of 1 to 200 characters.`, field)
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f\s]/.test(pattern)) {
    throw errors.invalidRequest(`"${field}" may not contain spaces or control characters.`, field)
  }
  for (const segment of pattern.split('.')) {
    if (segment === '') throw errors.invalidRequest(`"${field}" has an empty segment.`, field)
    if (segment.includes('*') && segment !== '*') {
      throw errors.invalidRequest(`In "${field}", * stands for whole segments only ("order.*").`, field)
    }
  }
  return pattern
}

export function matchesEventType(pattern: string, type: string): boolean {
  let regexp = compiled.get(pattern)
  if (!regexp) {
    const source = pattern
      .split('.')
      .map((segment) =>
        segment === '*' ? '[^.]+(?:\\.[^.]+)*' : segment.replace(/[\\^$+?()[\]{}|]/g, '\\$&'),
      )
      .join('\\.')
    regexp = new RegExp(`^${source}$`)
    if (compiled.size > 10_000) compiled.clear() // a bound, not a policy: patterns are few
    compiled.set(pattern, regexp)
  }
  return regexp.test(type)
}

/** The first segment, which the Store indexes topic-less hooks by; `*` for a leading wildcard. */
export function eventRoot(patternOrType: string): string {
  const dot = patternOrType.indexOf('.')
  return dot === -1 ? patternOrType : patternOrType.slice(0, dot)
}
