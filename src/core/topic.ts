import { errors } from './errors.ts'

/** One segment: starts with a letter or digit, then letters, digits and `._~-` (all URL-safe, no escaping). */
const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._~-]*'
const TOPIC_PATTERN = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`)
export const MAX_TOPIC_LENGTH = 200

/** The topic name, or a coded 400 that says what is wrong with it. */
export function validateTopic(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw errors.invalidTopic('A topic name is required.', 'topic')
  }
  if (name.length > MAX_TOPIC_LENGTH) {
    throw errors.invalidTopic(`A topic name has at most ${MAX_TOPIC_LENGTH} characters.`, 'topic')
  }
  if (!TOPIC_PATTERN.test(name)) {
    throw errors.invalidTopic(
      `"${name}" is not a topic name: use segments of letters, digits and "._~-" (each starting with a letter or digit) joined by "/".`,
      'topic',
    )
  }
  if (name.split('/').includes('events')) {
    throw errors.invalidTopic(
      '"events" is reserved as a topic segment: /v1/topics/{topic}/events is the topic\'s event collection.',
      'topic',
    )
  }
  if (name.split('/').includes('presence')) {
    throw errors.invalidTopic(
      '"presence" is reserved as a topic segment: /v1/topics/{topic}/presence lists the topic\'s presence members.',
      'topic',
    )
  }
  return name
}

/** Topics Herald writes itself: herald.system (operator events) and herald.websub/… (WebSub content). */
const RESERVED_PREFIX = 'herald.'

/**
 * Herald topics that carry the content of external WebSub topic URLs, one per URL:
 * `herald.websub/<sha256>`. They are delivered to their subscriptions only, never to hooks on every
 * topic (src/delivery/websub.ts; both stores' fan-out).
 */
export const EXTERNAL_CONTENT_PREFIX = 'herald.websub/'

/** Whether Herald writes this topic itself: its events and its settings are not for clients. */
export function isHeraldTopic(topic: string): boolean {
  return topic.startsWith(RESERVED_PREFIX)
}

/** A topic clients may publish to: not one Herald writes itself, whose events others trust. */
export function assertPublishable(topic: string): string {
  if (isHeraldTopic(topic)) {
    throw errors.forbidden(
      `Topics starting with "${RESERVED_PREFIX}" are written by Herald only; they can be read.`,
      'topic',
    )
  }
  return topic
}

/**
 * A topic whose settings (retention) clients may change: not one of Herald's own, which operators
 * rely on (a client could otherwise keep herald.system down to one event and hide what happened).
 */
export function assertConfigurable(topic: string): string {
  if (isHeraldTopic(topic)) {
    throw errors.forbidden(
      `Topics starting with "${RESERVED_PREFIX}" are Herald's own: their settings are not for clients; they can be read.`,
      'topic',
    )
  }
  return topic
}
