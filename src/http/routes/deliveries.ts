import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import { validateTopic } from '../../core/topic.ts'
import type { DeliveryFilter, DeliveryState } from '../../store/store.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, MAX_SEQ, type Query, stringParam } from '../params.ts'
import { schemas } from '../schemas/routes.ts'
import { deliveryView } from './hooks.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
/** The most deliveries one POST /v1/deliveries/retry queues again (ask again for more). */
const MAX_RETRY = 10_000
const STATES: readonly DeliveryState[] = ['pending', 'delivered', 'failed']
const MAX_ID_LENGTH = 64
const ADMIN = { config: { right: 'admin' } } as const

/**
 * Deliveries across hooks (the console's delivery log): `GET /v1/deliveries` narrows by state, hook,
 * topic and time (`since`/`until` bound when a delivery last changed: for a failed one, when it was
 * given up); `POST /v1/deliveries/retry` queues the failed ones that match again.
 */
export function registerDeliveryRoutes(app: FastifyInstance, context: HttpContext): void {
  const { store } = context.hooks

  app.get('/v1/deliveries', { ...ADMIN, schema: schemas.listDeliveries }, async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const filter = parseFilter(
      {
        state: stringParam(query, 'state'),
        hook: stringParam(query, 'hook'),
        topic: stringParam(query, 'topic'),
        since: stringParam(query, 'since'),
        until: stringParam(query, 'until'),
      },
      limit,
    )
    if (query['before'] !== undefined) filter.beforeId = integerParam(query, 'before', MAX_SEQ, 1, MAX_SEQ)
    const list = await store.listDeliveries(filter)
    return {
      deliveries: list.map(deliveryView),
      next: list.length === limit ? list.at(-1)!.id : null,
    }
  })

  app.post('/v1/deliveries/retry', { ...ADMIN, schema: schemas.retryDeliveries }, async (request, reply) => {
    const body = request.body ?? {}
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw errors.invalidRequest(
        'Send a JSON object such as {"state":"failed","since":"2026-11-23T08:00:00Z"}.',
      )
    }
    const { state, since, hook, topic, limit, ...rest } = body as Record<string, unknown>
    const unknown = Object.keys(rest)[0]
    if (unknown !== undefined)
      throw errors.invalidRequest(`Unknown field "${unknown.slice(0, 100)}".`, unknown)
    if (state !== 'failed') {
      throw errors.invalidRequest('"state" is "failed": what is retried is what was given up.', 'state')
    }
    const max = limit === undefined ? MAX_RETRY : limit
    if (!Number.isSafeInteger(max) || (max as number) < 1 || (max as number) > MAX_RETRY) {
      throw errors.invalidRequest(`"limit" is a whole number from 1 to ${MAX_RETRY}.`, 'limit')
    }
    for (const [name, value] of Object.entries({ since, hook, topic })) {
      if (value !== undefined && typeof value !== 'string')
        throw errors.invalidRequest(`"${name}" is a string.`, name)
    }
    const filter = parseFilter(
      {
        state,
        since: since as string | undefined,
        hook: hook as string | undefined,
        topic: topic as string | undefined,
      },
      max as number,
    )
    // Each one through the same retry as POST /v1/hooks/{id}/deliveries/{id}/retry (an ordered
    // queue's retry waits its turn), newest first, at most `limit`.
    const now = Date.now()
    const matched = await store.listDeliveries(filter)
    let queued = 0
    for (const delivery of matched) {
      const retried = await store.retryDelivery(delivery.hook_id, delivery.id, now)
      if (retried?.state === 'pending') queued++
    }
    if (queued > 0) context.hooks.wake()
    await context.audit(request.principal, 'deliveries.retried', hook === undefined ? '*' : String(hook), {
      filter: { state, since: since ?? null, hook: hook ?? null, topic: topic ?? null },
      queued,
    })
    return reply.code(202).send({ queued, more: matched.length === max })
  })
}

function parseFilter(
  given: {
    state?: unknown
    hook?: string | undefined
    topic?: string | undefined
    since?: string | undefined
    until?: string | undefined
  },
  limit: number,
): DeliveryFilter {
  const filter: DeliveryFilter = { limit }
  if (given.state !== undefined) {
    if (!STATES.includes(given.state as DeliveryState)) {
      throw errors.invalidRequest(`"state" is one of ${STATES.join(', ')}.`, 'state')
    }
    filter.state = given.state as DeliveryState
  }
  if (given.hook !== undefined) {
    if (given.hook.length === 0 || given.hook.length > MAX_ID_LENGTH) {
      throw errors.invalidRequest('"hook" is a hook id.', 'hook')
    }
    filter.hookId = given.hook
  }
  if (given.topic !== undefined) filter.topic = validateTopic(given.topic)
  for (const name of ['since', 'until'] as const) {
    const text = given[name]
    if (text === undefined) continue
    const at = text.length <= 40 ? Date.parse(text) : Number.NaN
    if (Number.isNaN(at))
      throw errors.invalidRequest(`"${name}" is a time such as 2026-11-23T08:00:00Z.`, name)
    filter[name] = at
  }
  return filter
}
