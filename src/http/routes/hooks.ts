import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from '../../core/errors.ts'
import { validateTopic } from '../../core/topic.ts'
import { createHookRecord, hookChanges, hookView } from '../../delivery/hooks.ts'
import { sendTestEvent } from '../../delivery/test-event.ts'
import type { AttemptRecord, DeliveryRecord, HookRecord } from '../../store/store.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, MAX_SEQ, type Query, stringParam } from '../params.ts'
import type { RouteSchema } from '../schemas/common.ts'
import { schemas } from '../schemas/routes.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
const MAX_REPLAY = 10_000

const ADMIN = { config: { right: 'admin' } } as const
/** ADMIN with the route's schema (GET /openapi.json). */
const admin = (schema: RouteSchema) => ({ ...ADMIN, schema })

/** A time in ms as the API writes it (ISO 8601), null as null. */
export const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

/** One attempt as the API answers it (the hooks' and the WebSub subscriptions' logs alike). */
export function attemptView(attempt: AttemptRecord) {
  return {
    id: attempt.id,
    delivery: attempt.delivery_id,
    event_id: attempt.event_id,
    topic: attempt.topic,
    seq: attempt.seq,
    attempt: attempt.attempt,
    at: iso(attempt.at),
    status: attempt.status,
    error: attempt.error,
    duration_ms: Math.round(attempt.duration_ms * 10) / 10,
    response: attempt.response,
  }
}

export function deliveryView(delivery: DeliveryRecord) {
  return {
    id: delivery.id,
    hook_id: delivery.hook_id,
    event_id: delivery.event_id,
    topic: delivery.topic,
    seq: delivery.seq,
    state: delivery.state,
    attempts: delivery.attempts,
    next_attempt_at: delivery.state === 'pending' ? iso(delivery.due_at) : null,
    last_status: delivery.last_status,
    last_error: delivery.last_error,
    created_at: iso(delivery.created_at),
    updated_at: iso(delivery.updated_at),
  }
}

/** What the audit trail says of a hook: where it sends what, never its secret. */
function auditView(hook: HookRecord) {
  return {
    hook_id: hook.id,
    kind: hook.kind,
    target_url: hook.target_url,
    topic: hook.topic,
    event: hook.event,
    filter: hook.filter === null ? null : (JSON.parse(hook.filter) as unknown),
    state: hook.state,
  }
}

/** Webhooks and REST Hooks: `/v1/hooks` and the delivery log under each hook. */
export function registerHookRoutes(app: FastifyInstance, context: HttpContext): void {
  const { hooks } = context
  const { store } = hooks

  /**
   * The hook a path names. Its delivery log, retries and replays also serve WebSub subscriptions
   * (`anyKind`); the rest of /v1/hooks is for webhooks (WebSub ones are under /v1/websub).
   */
  async function findHook(request: FastifyRequest, anyKind = false): Promise<HookRecord> {
    const { id } = request.params as { id: string }
    const hook = await store.hook(id)
    if (!hook || (!anyKind && hook.kind !== 'webhook')) throw errors.notFound(`There is no hook ${id}.`)
    return hook
  }

  function deliveryId(request: FastifyRequest): number {
    const { delivery } = request.params as { delivery: string }
    const id = Number(delivery)
    if (!/^\d+$/.test(delivery) || !Number.isSafeInteger(id))
      throw errors.notFound(`There is no delivery ${delivery}.`)
    return id
  }

  app.post('/v1/hooks', admin(schemas.createHook), async (request, reply) => {
    const hook = await store.createHook(await createHookRecord(request.body, hooks.policy, Date.now()))
    await context.audit(request.principal, 'hook.created', hook.id, auditView(hook))
    return reply.code(201).header('location', `/v1/hooks/${hook.id}`).send(hookView(hook, true))
  })

  app.get('/v1/hooks', admin(schemas.listHooks), async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const list = await store.hooks({ kind: 'webhook', after: stringParam(query, 'after') ?? '', limit })
    return {
      hooks: list.map((hook) => hookView(hook, false)),
      next: list.length === limit ? list.at(-1)!.id : null,
    }
  })

  app.get('/v1/hooks/:id', admin(schemas.getHook), async (request) => hookView(await findHook(request), true))

  app.patch('/v1/hooks/:id', admin(schemas.updateHook), async (request) => {
    const current = await findHook(request)
    const now = Date.now()
    const changes = await hookChanges(request.body, current, hooks.policy, now)
    const hook = await store.updateHook(current.id, changes, now)
    if (!hook) throw errors.notFound(`There is no hook ${current.id}.`)
    if (hook.state === 'active') hooks.wake() // resumed: what queued up while paused goes out
    await context.audit(request.principal, 'hook.updated', hook.id, {
      ...auditView(hook),
      // Which fields changed, never their values when one is the secret.
      changed: Object.keys(changes),
    })
    return hookView(hook, true)
  })

  // Sends one signed test event to the target now and answers with what it said (nothing stored).
  app.post('/v1/hooks/:id/test', admin(schemas.testHook), async (request) => {
    const hook = await findHook(request)
    const sent = await sendTestEvent(hook, hooks.policy, context.config.deliveryTimeoutMs)
    await context.audit(request.principal, 'hook.tested', hook.id, { hook_id: hook.id, status: sent.status })
    return sent
  })

  app.delete('/v1/hooks/:id', admin(schemas.deleteHook), async (request, reply) => {
    const hook = await findHook(request)
    if (!(await store.deleteHook(hook.id))) throw errors.notFound(`There is no hook ${hook.id}.`)
    await context.audit(request.principal, 'hook.deleted', hook.id, auditView(hook))
    return reply.code(204).send()
  })

  // The attempts log, newest first; ?delivery= or ?event= narrows it to one delivery or one event.
  app.get('/v1/hooks/:id/deliveries', admin(schemas.listAttempts), async (request) => {
    const hook = await findHook(request, true)
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const eventId = stringParam(query, 'event')
    const attempts = await store.attempts(hook.id, {
      limit,
      before: integerParam(query, 'before', MAX_SEQ, 1, MAX_SEQ),
      ...(query['delivery'] ? { deliveryId: integerParam(query, 'delivery', 0, 1, MAX_SEQ) } : {}),
      ...(eventId ? { eventId } : {}),
    })
    return {
      attempts: attempts.map(attemptView),
      next: attempts.length === limit ? attempts.at(-1)!.id : null,
    }
  })

  app.get('/v1/hooks/:id/deliveries/:delivery', admin(schemas.getDelivery), async (request) => {
    const hook = await findHook(request, true)
    const id = deliveryId(request)
    const delivery = await store.delivery(hook.id, id)
    if (!delivery) throw errors.notFound(`Hook ${hook.id} has no delivery ${id}.`)
    const attempts = await store.attempts(hook.id, { deliveryId: id, limit: MAX_LIMIT })
    return { ...deliveryView(delivery), attempt_log: attempts.map(attemptView) }
  })

  const retrying = admin(schemas.retryDelivery)
  app.post('/v1/hooks/:id/deliveries/:delivery/retry', retrying, async (request, reply) => {
    const hook = await findHook(request, true)
    const id = deliveryId(request)
    const delivery = await store.retryDelivery(hook.id, id, Date.now())
    if (!delivery) throw errors.notFound(`Hook ${hook.id} has no delivery ${id}.`)
    hooks.wake()
    await context.audit(request.principal, 'delivery.retried', hook.id, { hook_id: hook.id, delivery_id: id })
    return reply.code(202).send(deliveryView(delivery))
  })

  // Redelivers a range: {"after": seq} or {"since": time}, of the hook's topic (or of "topic").
  app.post('/v1/hooks/:id/replay', admin(schemas.replayHook), async (request, reply) => {
    const hook = await findHook(request, true)
    const body = (request.body ?? {}) as Record<string, unknown>
    if (typeof body !== 'object' || Array.isArray(body))
      throw errors.invalidRequest('The body is a JSON object.')
    const topic = body['topic'] === undefined ? hook.topic : validateTopic(body['topic'])
    if (topic === null)
      throw errors.invalidRequest('This hook follows every topic: name the "topic" to replay.', 'topic')
    if (hook.topic !== null && topic !== hook.topic) {
      throw errors.invalidRequest(`This hook follows the topic "${hook.topic}" only.`, 'topic')
    }
    const { after, since } = body
    if ((after === undefined) === (since === undefined)) {
      throw errors.invalidRequest('Give "after" (a seq) or "since" (a time), one of them.', 'after')
    }
    if (after !== undefined && (!Number.isSafeInteger(after) || (after as number) < 0)) {
      throw errors.invalidRequest('"after" is a seq: a whole number, 0 or more.', 'after')
    }
    const sinceMs = typeof since === 'string' ? Date.parse(since) : Number.NaN
    if (since !== undefined && Number.isNaN(sinceMs)) {
      throw errors.invalidRequest('"since" is a time, e.g. 2026-11-23T08:00:00Z.', 'since')
    }
    const limit = body['limit'] === undefined ? MAX_REPLAY : body['limit']
    if (!Number.isInteger(limit) || (limit as number) < 1 || (limit as number) > MAX_REPLAY) {
      throw errors.invalidRequest(`"limit" is a whole number from 1 to ${MAX_REPLAY}.`, 'limit')
    }
    const result = await store.replay(hook.id, {
      topic,
      ...(after !== undefined ? { afterSeq: after as number } : { since: sinceMs }),
      limit: limit as number,
      now: Date.now(),
    })
    hooks.wake()
    await context.audit(request.principal, 'hook.replayed', hook.id, {
      hook_id: hook.id,
      topic,
      ...(after !== undefined ? { after } : { since }),
      queued: result.queued,
    })
    return reply.code(202).send(result)
  })
}
