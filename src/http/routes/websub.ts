import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { errors } from '../../core/errors.ts'
import { HubRequestError, type WebSubHub } from '../../delivery/websub-hub.ts'
import type { HookRecord } from '../../store/store.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, type Query, stringParam } from '../params.ts'
import { toHeraldError } from '../problem.ts'
import type { RouteSchema } from '../schemas/common.ts'
import { schemas } from '../schemas/routes.ts'
import { attemptView, iso } from './hooks.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000

function subscriptionView(subscription: HookRecord) {
  return {
    id: subscription.id,
    topic: subscription.topic_url,
    herald_topic: subscription.topic,
    callback: subscription.target_url,
    state: (subscription.expires_at ?? 0) > Date.now() ? 'active' : 'expired',
    signed: subscription.secret !== null,
    lease_seconds: subscription.lease_seconds,
    expires_at: iso(subscription.expires_at),
    failing_since: iso(subscription.failing_since),
    created_at: iso(subscription.created_at),
    updated_at: iso(subscription.updated_at),
  }
}

/** A plain-text answer, as WebSub asks of a hub's errors (§5.1.2). */
function text(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).type('text/plain; charset=utf-8').send(`${body}\n`)
}

/**
 * `POST /websub`, the hub, and `/v1/websub/*`, its admin API. The hub is outside /v1 because
 * subscribers and publishers speak WebSub to it, not Herald's API; with an API key set it still
 * asks for the key, unless --websub-public makes it a public hub.
 */
export function registerWebSubRoutes(app: FastifyInstance, context: HttpContext, hub: WebSubHub): void {
  const { config } = context
  const ADMIN = { config: { right: 'admin' } } as const
  const admin = (schema: RouteSchema) => ({ ...ADMIN, schema })

  // Its errors, the access check's 401 and the body limit's 413 included, are plain text like the
  // rest of the hub's answers.
  const plainErrors = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const problem = toHeraldError(error)
    // A 503 (draining, the database out of reach) is a state, said as it is and logged as a warning.
    if (problem.status === 503)
      request.log.warn({ detail: problem.message }, 'websub request refused: unavailable')
    else if (problem.status >= 500) request.log.error({ err: error }, 'websub request failed')
    return text(
      reply.headers(problem.headers),
      problem.status,
      problem.status >= 500 && problem.status !== 503
        ? 'The hub failed; the error has been logged.'
        : problem.message,
    )
  }
  // A public hub (--websub-public) takes requests without the key; otherwise it is administration.
  const hubRight = config.websubPublic ? 'public' : 'admin'
  const hubOptions = { errorHandler: plainErrors, config: { right: hubRight }, schema: schemas.hub } as const
  app.post('/websub', hubOptions, async (request, reply) => {
    const type = request.headers['content-type'] ?? ''
    if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      return text(reply, 415, 'Send the hub request as application/x-www-form-urlencoded.')
    }
    const body = request.body
    const form = new URLSearchParams(Buffer.isBuffer(body) ? body.toString('utf8') : '')
    try {
      await hub.accept(form)
    } catch (error) {
      if (error instanceof HubRequestError) {
        if (error.status === 503) reply.header('retry-after', '5')
        return text(reply, error.status, error.message)
      }
      throw error
    }
    return text(
      reply,
      202,
      form.get('hub.mode') === 'publish' ? 'Accepted.' : 'Accepted: verification of intent follows.',
    )
  })

  app.get('/websub', { config: { right: 'public' }, schema: schemas.hubPage }, async (_request, reply) =>
    text(reply.header('allow', 'POST'), 405, 'This is a WebSub hub: POST form-encoded hub.* requests to it.'),
  )

  // Subscriptions, optionally of one topic URL, and the verifications of intent as they went.
  app.get('/v1/websub/subscriptions', admin(schemas.listSubscriptions), async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const topicUrl = stringParam(query, 'topic')
    const list = await context.hooks.store.hooks({
      kind: 'websub',
      limit,
      after: stringParam(query, 'after') ?? '',
      ...(topicUrl ? { topicUrl } : {}),
    })
    return {
      subscriptions: list.map(subscriptionView),
      next: list.length === limit ? list.at(-1)!.id : null,
    }
  })

  app.get('/v1/websub/verifications', admin(schemas.listVerifications), async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const topicUrl = stringParam(query, 'topic')
    const list = await context.hooks.store.verifications({
      limit,
      ...(topicUrl ? { topicUrl } : {}),
    })
    return {
      verifications: list.map((v) => ({
        ...v,
        requested_at: iso(v.requested_at),
        completed_at: iso(v.completed_at),
      })),
    }
  })

  app.get('/v1/websub/subscriptions/:id', admin(schemas.getSubscription), async (request) => {
    const subscription = await findSubscription(request.params as { id: string })
    const attempts = await context.hooks.store.attempts(subscription.id, { limit: DEFAULT_LIMIT })
    return {
      ...subscriptionView(subscription),
      attempts: attempts.map(attemptView),
    }
  })

  app.delete('/v1/websub/subscriptions/:id', admin(schemas.deleteSubscription), async (request, reply) => {
    const subscription = await findSubscription(request.params as { id: string })
    await context.hooks.store.deleteHook(subscription.id)
    await context.audit(request.principal, 'websub.subscription.deleted', subscription.id, {
      subscription_id: subscription.id,
      topic_url: subscription.topic_url,
      callback: subscription.target_url,
    })
    return reply.code(204).send()
  })

  async function findSubscription({ id }: { id: string }): Promise<HookRecord> {
    const subscription = await context.hooks.store.hook(id)
    if (subscription?.kind !== 'websub') throw errors.notFound(`There is no WebSub subscription ${id}.`)
    return subscription
  }
}
