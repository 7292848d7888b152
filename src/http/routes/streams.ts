import type { FastifyReply, FastifyRequest } from 'fastify'
import { decodeCursor, type Positions } from '../../core/cursor.ts'
import { errors } from '../../core/errors.ts'
import { type CompiledFilter, parseFilterText } from '../../core/filter.ts'
import { validateTopic } from '../../core/topic.ts'
import { type Framing, ndjsonFraming, openHttpStream, sseFramings } from '../../streams/http-stream.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, MAX_SEQ, type Query, stringParam, wholeNumber } from '../params.ts'
import { schemas } from '../schemas/routes.ts'

/** The streaming framing the client asked for in `Accept`, or undefined for a JSON page. */
export function negotiateStream(request: FastifyRequest): Framing | undefined {
  // A HEAD is answered with headers only: it never opens a stream (nor takes a stream's slot).
  if (request.method === 'HEAD') return undefined
  const accept = request.headers.accept ?? ''
  const query = request.query as Record<string, string | undefined>
  if (accept.includes('text/event-stream'))
    return query['named'] === 'true' ? sseFramings.named : sseFramings.plain
  if (accept.includes('application/x-ndjson')) return ndjsonFraming
  return undefined
}

/** Whether a request asks for a stream (which may then carry its key as `?access_token=`). */
export function asksForStream(request: FastifyRequest): boolean {
  return negotiateStream(request) !== undefined
}

/**
 * Where each topic's stream starts: `Last-Event-ID` (what EventSource sends on reconnect), else
 * `?last_event_id=`, else `?after=` (one topic only), else the topic's current head (live only).
 */
async function startPositions(
  request: FastifyRequest,
  topics: string[],
  context: HttpContext,
): Promise<Positions> {
  const query = request.query as Query
  const header = request.headers['last-event-id']
  const fromQuery = stringParam(query, 'last_event_id')
  const [cursor, field] =
    typeof header === 'string' && header !== ''
      ? [header, 'Last-Event-ID']
      : fromQuery
        ? [fromQuery, 'last_event_id']
        : [undefined, '']
  const positions: Positions = new Map()
  if (cursor !== undefined) {
    if (topics.length === 1) {
      positions.set(topics[0]!, wholeNumber(cursor, field, 0, MAX_SEQ)) // a one-topic cursor is a seq
    } else {
      const given = decodeCursor(cursor, field)
      for (const topic of topics) if (given.has(topic)) positions.set(topic, given.get(topic)!)
    }
  } else if (query['after'] !== undefined && query['after'] !== '') {
    if (topics.length > 1) {
      throw errors.invalidRequest(
        '"after" is for one topic; several topics resume with last_event_id.',
        'after',
      )
    }
    positions.set(topics[0]!, integerParam(query, 'after', 0, 0, MAX_SEQ))
  }
  for (const topic of topics) {
    if (!positions.has(topic)) positions.set(topic, (await context.log.store.topic(topic))?.head_seq ?? 0)
  }
  return positions
}

export async function openStream(
  request: FastifyRequest,
  reply: FastifyReply,
  topics: string[],
  framing: Framing,
  context: HttpContext,
): Promise<FastifyReply> {
  if (context.draining.aborted)
    throw errors.unavailable('The server is draining.', undefined, { 'retry-after': '1' })
  // Every topic of the stream needs the right to read it.
  for (const topic of topics) context.access.authorize(request.principal, 'subscribe', topic)
  const filter = filterParam(request.query as Query)
  const positions = await startPositions(request, topics, context)
  context.connections.admit(framing.protocol)
  openHttpStream(reply, {
    log: context.log,
    connections: context.connections,
    metrics: context.metrics,
    bufferLimit: context.config.streamBufferBytes,
    positions,
    multiTopic: topics.length > 1,
    framing,
    principal: request.principal,
    filter,
  })
  return reply
}

/** `?filter=<JSON>`: a CloudEvents Subscriptions API filter (src/core/filter.ts), or undefined. */
export function filterParam(query: Query): CompiledFilter | undefined {
  const text = stringParam(query, 'filter')
  return text === undefined ? undefined : parseFilterText(text)
}

/** `GET /v1/stream?topic=a&topic=b`: one SSE or NDJSON stream over several topics. */
export function registerStreamRoutes(app: import('fastify').FastifyInstance, context: HttpContext): void {
  app.get(
    '/v1/stream',
    { config: { right: 'subscribe', topical: true, tokenInQuery: () => true }, schema: schemas.stream },
    async (request, reply) => {
      const raw = (request.query as Query)['topic']
      const topics = [
        ...new Set((Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).map(validateTopic)),
      ]
      if (topics.length === 0)
        throw errors.invalidRequest('Name at least one topic: ?topic=a&topic=b.', 'topic')
      const max = context.config.maxTopicsPerStream // --max-topics-per-stream: work per connection
      if (topics.length > max) {
        throw errors.invalidRequest(`One stream follows at most ${max} topics.`, 'topic')
      }
      const framing = negotiateStream(request)
      if (!framing) {
        throw errors.notAcceptable('Ask for Accept: text/event-stream or application/x-ndjson.', 'Accept')
      }
      return openStream(request, reply, topics, framing, context)
    },
  )
}
