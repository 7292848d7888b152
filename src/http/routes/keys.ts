import type { FastifyInstance, FastifyRequest } from 'fastify'
import { describeKey, isKeyId, newKey, parseKeyInput } from '../../access/keys.ts'
import { actorOf } from '../../access/principal.ts'
import { errors } from '../../core/errors.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, type Query, stringParam } from '../params.ts'
import type { RouteSchema } from '../schemas/common.ts'
import { schemas } from '../schemas/routes.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
const ADMIN = { config: { right: 'admin' } } as const
/** ADMIN with the route's schema (GET /openapi.json). */
const admin = (schema: RouteSchema) => ({ ...ADMIN, schema })

/** Scoped API keys: `/v1/keys`. The secret is in the answer to its creation, and nowhere else. */
export function registerKeyRoutes(app: FastifyInstance, context: HttpContext): void {
  const { store, ring } = context.keys

  async function findKey(request: FastifyRequest) {
    const { id } = request.params as { id: string }
    const key = isKeyId(id) ? await store.key(id) : undefined
    if (key === undefined) throw errors.notFound(`There is no key ${id.slice(0, 64)}.`)
    return key
  }

  app.post('/v1/keys', admin(schemas.createKey), async (request, reply) => {
    const now = Date.now()
    const input = parseKeyInput(request.body, now)
    const { key: created, secret } = newKey(input, now, actorOf(request.principal))
    await store.createKey(created)
    const view = describeKey(created)
    await context.audit(request.principal, 'key.created', created.id, { key: view })
    return reply
      .code(201)
      .header('location', `/v1/keys/${created.id}`)
      .header('cache-control', 'no-store')
      .send({ ...view, key: secret })
  })

  app.get('/v1/keys', admin(schemas.listKeys), async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const list = await store.keys({ after: stringParam(query, 'after') ?? '', limit })
    return { keys: list.map(describeKey), next: list.length === limit ? list.at(-1)!.id : null }
  })

  app.get('/v1/keys/:id', admin(schemas.getKey), async (request) => describeKey(await findKey(request)))

  app.delete('/v1/keys/:id', admin(schemas.deleteKey), async (request, reply) => {
    const key = await findKey(request)
    if (!(await store.deleteKey(key.id))) throw errors.notFound(`There is no key ${key.id}.`)
    // Refused here at once; the other nodes find it gone at their next check (within a second).
    ring.revoked(key.id)
    await context.audit(request.principal, 'key.revoked', key.id, { key_id: key.id, name: key.name })
    return reply.code(204).send()
  })
}
