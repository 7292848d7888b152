import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { may } from '../../access/principal.ts'
import { parseDuration } from '../../core/duration.ts'
import { errors } from '../../core/errors.ts'
import { isJsonMediaType, parseBinaryEvent, parseEventBody, type StoredEvent } from '../../core/event.ts'
import { assertConfigurable, assertPublishable, validateTopic } from '../../core/topic.ts'
import type { Page } from '../../log/topic-log.ts'
import type { TopicInfo, TopicTypes } from '../../store/store.ts'
import { ASCII_SLACK, writeAsciiJson } from '../../streams/frame-cache.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, MAX_SEQ, type Query, stringParam } from '../params.ts'
import { schemas } from '../schemas/routes.ts'
import { asksForStream, filterParam, negotiateStream, openStream } from './streams.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
const MAX_WAIT_SECONDS = 60
const MAX_IDEMPOTENCY_KEY_LENGTH = 255
/** The most topics one GET /v1/topics looks at for a key that may read few of them. */
const MAX_TOPICS_SCANNED = 100_000

/** What a `/v1/topics/*` path names: the topic, its event collection, or one event. */
type Target =
  | { topic: string; kind: 'topic' }
  | { topic: string; kind: 'events' }
  | { topic: string; kind: 'presence' }
  | { topic: string; kind: 'event'; seq: number }

/**
 * Topic names contain `/`, so one wildcard route per method receives the rest of the path and this
 * splits it. The segments `events` and `presence` are reserved in topic names, which keeps the split
 * unambiguous.
 */
function parseTarget(rest: string): Target {
  const one = /^(.+)\/events\/(\d+)$/.exec(rest)
  if (one) return { topic: validateTopic(one[1]), kind: 'event', seq: Number(one[2]) }
  if (rest.endsWith('/presence'))
    return { topic: validateTopic(rest.slice(0, -'/presence'.length)), kind: 'presence' }
  if (rest.endsWith('/events'))
    return { topic: validateTopic(rest.slice(0, -'/events'.length)), kind: 'events' }
  return { topic: validateTopic(rest), kind: 'topic' }
}

/**
 * Whether a GET of `/v1/topics/*` is a stream of a topic's events, the one answer there that may take
 * its key as `?access_token=` (not the topic's metadata, not one event, not a page).
 */
function streamsEvents(request: FastifyRequest): boolean {
  if (!asksForStream(request)) return false
  return wildcard(request).endsWith('/events')
}

function wildcard(request: FastifyRequest): string {
  return (request.params as { '*': string })['*']
}

export function registerTopicRoutes(app: FastifyInstance, context: HttpContext): void {
  const { log, config, metrics } = context
  const listing = { config: { right: 'subscribe', topical: true }, schema: schemas.listTopics } as const
  app.get('/v1/topics', listing, async (request, reply) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const after = stringParam(query, 'after')
    // Only the topics these credentials may read, and `next` is always one of them: a cursor taken
    // from what was skipped would name a topic the caller may not see. Store pages are read until the
    // page is full or MAX_TOPICS_SCANNED topics were looked at.
    const visible: TopicInfo[] = []
    let cursor = after
    let scanned = 0
    let exhausted = false
    while (visible.length < limit && scanned < MAX_TOPICS_SCANNED) {
      const page = await log.store.topics({ ...(cursor ? { after: cursor } : {}), limit: MAX_LIMIT })
      scanned += page.length
      for (const info of page) {
        if (!may(request.principal, 'subscribe', info.topic)) continue
        visible.push(info)
        if (visible.length === limit) break
      }
      if (page.length < MAX_LIMIT) {
        exhausted = visible.length < limit || page.at(-1)?.topic === visible.at(-1)?.topic
        break
      }
      cursor = page.at(-1)!.topic
    }
    const next = !exhausted && visible.length > 0 ? visible.at(-1)!.topic : null
    return reply.send({ topics: visible.map((info) => describeTopic(info, config.publicUrl)), next })
  })

  app.get(
    '/v1/topics/*',
    { config: { right: 'subscribe', topical: true, tokenInQuery: streamsEvents }, schema: schemas.readTopic },
    async (request, reply) => {
      const target = parseTarget(wildcard(request))
      context.access.authorize(request.principal, 'subscribe', target.topic)
      if (target.kind === 'topic') {
        const info = (await log.store.topic(target.topic)) ?? emptyTopic(target.topic)
        setDiscoveryLinks(reply, config.publicUrl, target.topic)
        return reply.send(describeTopic(info, config.publicUrl))
      }
      if (target.kind === 'presence') {
        // Presence is a read: the subscribe right on the topic, checked above.
        return reply.send({ members: await context.presence.members(target.topic) })
      }
      if (target.kind === 'event') {
        const [event] = await log.read(target.topic, target.seq - 1, 1)
        if (!event || event.seq !== target.seq) {
          throw errors.notFound(
            `Topic "${target.topic}" has no event ${target.seq} (never published, or pruned).`,
          )
        }
        return reply.type('application/json; charset=utf-8').send(event.json)
      }
      const framing = negotiateStream(request)
      if (framing) return openStream(request, reply, [target.topic], framing, context)
      return readEvents(request, reply, target.topic, context)
    },
  )

  const publishing = { config: { right: 'publish', topical: true }, schema: schemas.writeTopic } as const
  app.post('/v1/topics/*', publishing, async (request, reply) => {
    const target = parseTarget(wildcard(request))
    if (target.kind !== 'events') {
      throw errors.methodNotAllowed(`Publish with POST /v1/topics/${target.topic}/events.`)
    }
    assertPublishable(target.topic)
    context.access.authorize(request.principal, 'publish', target.topic)
    const started = performance.now()
    try {
      const { inputs, batch } = parsePublishBody(request)
      const idempotencyKey = idempotencyKeyOf(request)
      const result = await log.publish(
        target.topic,
        inputs,
        idempotencyKey === undefined ? {} : { idempotencyKey },
      )
      metrics.publishDuration.observe((performance.now() - started) / 1000)
      metrics.publishRequests.inc({ outcome: result.stored > 0 ? 'created' : 'repeat' })
      reply.code(result.stored > 0 ? 201 : 200).type('application/json; charset=utf-8')
      if (batch) return reply.send(`[${result.events.map((event) => event.json).join(',')}]`)
      const event = result.events[0]!
      reply.header('location', `/v1/topics/${target.topic}/events/${event.seq}`)
      return reply.send(event.json)
    } catch (error) {
      metrics.publishRequests.inc({ outcome: 'error' })
      throw error
    }
  })

  const configuring = { config: { right: 'admin', topical: true }, schema: schemas.configureTopic } as const
  app.put('/v1/topics/*', configuring, async (request, reply) => {
    const target = parseTarget(wildcard(request))
    if (target.kind !== 'topic')
      throw errors.methodNotAllowed('PUT configures a topic: PUT /v1/topics/{topic}.')
    assertConfigurable(target.topic)
    context.access.authorize(request.principal, 'admin', target.topic)
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw errors.invalidRequest(
        'Send a JSON object such as {"retention":{"max_age":"7d","max_events":null}}.',
      )
    }
    const unknown = Object.keys(body).find((key) => key !== 'retention' && key !== 'types')
    if (unknown !== undefined) {
      throw errors.invalidRequest(
        `Unknown field "${unknown.slice(0, 50)}": retention and types are.`,
        unknown,
      )
    }
    const retention = parseRetention((body as Record<string, unknown>)['retention'])
    const types = parseTypes((body as Record<string, unknown>)['types'])
    const info = await log.store.configureTopic(target.topic, retention, types)
    context.eventTypes.topicConfigured(target.topic, info.types)
    await context.audit(request.principal, 'topic.configured', target.topic, {
      topic: target.topic,
      retention: info.retention,
      types: info.types,
    })
    setDiscoveryLinks(reply, config.publicUrl, target.topic)
    return reply.send(describeTopic(info, config.publicUrl))
  })
}

/** Short poll, or long poll with `wait=` / `Prefer: wait=`. */
async function readEvents(
  request: FastifyRequest,
  reply: FastifyReply,
  topic: string,
  { log, metrics, draining }: HttpContext,
): Promise<FastifyReply> {
  const query = request.query as Query
  const after = integerParam(query, 'after', 0, 0, MAX_SEQ)
  const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
  const waitSeconds = waitParam(request, query)
  const filter = filterParam(query)
  let page: Page
  if (waitSeconds === 0) {
    page = await log.readPage(topic, after, limit, filter)
  } else {
    // Held until an event comes, the wait ends, the client leaves or the server drains.
    const gone = new AbortController()
    const onClose = () => gone.abort()
    reply.raw.once('close', onClose)
    metrics.longPollsOpen.inc()
    try {
      page = await log.waitForEvents(
        topic,
        after,
        limit,
        waitSeconds * 1000,
        AbortSignal.any([gone.signal, draining]),
        filter,
      )
    } finally {
      metrics.longPollsOpen.dec()
      reply.raw.off('close', onClose)
    }
  }
  const { events, next, gap } = page
  // The gap names no topic: the URL does.
  const gapField = gap === undefined ? '' : `,"gap":${JSON.stringify({ ...gap, topic: undefined })}`
  return reply
    .type('application/json; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(pageBody(events, `],"next":${next}${gapField}}`))
}

/**
 * `{"events":[…` then `end`: the stored JSON of each event, encoded into one Buffer in place (no parse,
 * no joined string to flatten and encode again on the socket). Sized first as if the JSON were ASCII
 * (no Buffer.byteLength per event, see writeAsciiJson), exactly if it is not.
 */
function pageBody(events: StoredEvent[], end: string): Buffer {
  return encodePage(events, end, false) ?? (encodePage(events, end, true) as Buffer)
}

function encodePage(events: StoredEvent[], end: string, exact: boolean): Buffer | undefined {
  const start = '{"events":['
  let size = start.length + Buffer.byteLength(end) + Math.max(events.length - 1, 0)
  for (const event of events) size += exact ? Buffer.byteLength(event.json) : event.json.length
  const body = Buffer.allocUnsafe(exact ? size : size + ASCII_SLACK)
  let at = body.write(start, 0, 'latin1')
  for (let i = 0; i < events.length; i++) {
    if (i > 0) body[at++] = 0x2c // ','
    if (exact) at += body.write(events[i]!.json, at, 'utf8')
    else {
      at = writeAsciiJson(body, events[i]!.json, at)
      if (at === -1) return undefined
    }
  }
  body.write(end, at, 'utf8')
  return exact ? body : body.subarray(0, size)
}

function parsePublishBody(request: FastifyRequest): ReturnType<typeof parseEventBody> {
  const headers = request.headers
  const contentType = headers['content-type']
  const body = request.body
  if (headers['ce-type'] !== undefined || headers['ce-specversion'] !== undefined) {
    return { inputs: [parseBinaryEvent(headers, body, contentType)], batch: false }
  }
  if (body === undefined || (Buffer.isBuffer(body) && body.length === 0)) {
    throw errors.invalidRequest(
      'A publish request needs a body: a JSON event, an array of events, or a CloudEvent.',
    )
  }
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  switch (mediaType) {
    case 'application/json':
      return parseEventBody(body, false)
    case 'application/cloudevents+json':
      if (Array.isArray(body)) {
        throw errors.invalidEvent('A batch of CloudEvents is sent as application/cloudevents-batch+json.')
      }
      return parseEventBody(body, true)
    case 'application/cloudevents-batch+json':
      if (!Array.isArray(body))
        throw errors.invalidEvent('application/cloudevents-batch+json is a JSON array.')
      return parseEventBody(body, true)
  }
  throw errors.unsupportedMediaType(
    `Publish JSON (application/json), a CloudEvent (application/cloudevents+json, or binary mode with ce-* headers)${
      contentType && isJsonMediaType(contentType)
        ? ''
        : `, not ${contentType ?? 'a body without Content-Type'}`
    }.`,
    'Content-Type',
  )
}

function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const key = request.headers['idempotency-key']
  if (key === undefined) return undefined
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    throw errors.invalidRequest(
      `Idempotency-Key must be one value of 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters.`,
      'Idempotency-Key',
    )
  }
  return key
}

/** `?wait=` is an instruction (out of range: 400); `Prefer: wait=` a preference (clamped to the maximum). */
function waitParam(request: FastifyRequest, query: Query): number {
  const text = stringParam(query, 'wait')
  if (text !== undefined && text !== '') {
    const value = Number(text)
    if (!/^\d+(\.\d+)?$/.test(text) || value > MAX_WAIT_SECONDS) {
      throw errors.invalidRequest(`"wait" is a number of seconds from 0 to ${MAX_WAIT_SECONDS}.`, 'wait')
    }
    return value
  }
  const prefer = request.headers.prefer
  if (typeof prefer !== 'string') return 0
  for (const preference of prefer.split(',')) {
    const match = /^\s*wait\s*=\s*"?(\d+)"?\s*(;.*)?$/i.exec(preference)
    if (match) return Math.min(Number(match[1]), MAX_WAIT_SECONDS)
  }
  return 0
}

function parseRetention(value: unknown): { maxAgeMs: number | null; maxEvents: number | null } {
  if (value === undefined) return { maxAgeMs: null, maxEvents: null } // the server's defaults
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw errors.invalidRequest(
      '"retention" must be an object with "max_age" and/or "max_events".',
      'retention',
    )
  }
  const { max_age: maxAge, max_events: maxEvents, ...rest } = value as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined)
    throw errors.invalidRequest(`Unknown retention field "${unknown}".`, `retention.${unknown}`)
  let maxAgeMs: number | null = null
  if (maxAge !== undefined && maxAge !== null) {
    if (typeof maxAge !== 'string') {
      throw errors.invalidRequest(
        '"max_age" is a duration such as "90s", "30m", "12h" or "7d".',
        'retention.max_age',
      )
    }
    try {
      maxAgeMs = parseDuration(maxAge)
    } catch (error) {
      throw errors.invalidRequest(`"max_age": ${(error as Error).message}.`, 'retention.max_age')
    }
    if (maxAgeMs < 1000) throw errors.invalidRequest('"max_age" is at least 1s.', 'retention.max_age')
  }
  let events: number | null = null
  if (maxEvents !== undefined && maxEvents !== null) {
    if (typeof maxEvents !== 'number' || !Number.isSafeInteger(maxEvents) || maxEvents < 1) {
      throw errors.invalidRequest('"max_events" is a whole number of at least 1.', 'retention.max_events')
    }
    events = maxEvents
  }
  return { maxAgeMs, maxEvents: events }
}

function emptyTopic(topic: string): TopicInfo {
  return {
    topic,
    head_seq: 0,
    first_seq: 1,
    events: 0,
    created_at: '',
    retention: { max_age_ms: null, max_events: null },
    types: 'any',
  }
}

/** A topic's `types`: "any" (the default) or "registered" (only types in the event-type catalog). */
function parseTypes(value: unknown): TopicTypes {
  if (value === undefined || value === null || value === 'any') return 'any'
  if (value === 'registered') return 'registered'
  throw errors.invalidRequest('"types" is "any" (the default) or "registered".', 'types')
}

export function topicUrl(publicUrl: string, topic: string): string {
  return `${publicUrl}/v1/topics/${topic}`
}

function describeTopic(info: TopicInfo, publicUrl: string) {
  return { ...info, created_at: info.created_at || null, url: topicUrl(publicUrl, info.topic) }
}

/** WebSub discovery (W3C WebSub §4): the hub and the topic's canonical URL. */
function setDiscoveryLinks(reply: FastifyReply, publicUrl: string, topic: string): void {
  reply.header('link', `<${publicUrl}/websub>; rel="hub", <${topicUrl(publicUrl, topic)}>; rel="self"`)
}
