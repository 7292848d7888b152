import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import { eventTypeView, validateTypeName } from '../../event-types/catalog.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, type Query, stringParam, wholeNumber } from '../params.ts'
import type { RouteSchema } from '../schemas/common.ts'
import { schemas } from '../schemas/routes.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
/**
 * Reading the catalog is open to whoever may read some topic (`subscribe` anywhere): the schemas
 * describe what flows through the topics, not one topic's content. Registering is `admin`.
 */
const READ = { config: { right: 'subscribe', topical: true } } as const
const ADMIN = { config: { right: 'admin' } } as const
const read = (schema: RouteSchema) => ({ ...READ, schema })

/** The event-type catalog: `/v1/event-types`. */
export function registerEventTypeRoutes(app: FastifyInstance, context: HttpContext): void {
  const { eventTypes } = context
  const view = (record: Parameters<typeof eventTypeView>[0]) =>
    eventTypeView(record, (type, version) => eventTypes.versionUrl(type, version))

  app.put(
    '/v1/event-types/:type',
    { ...ADMIN, schema: schemas.registerEventType },
    async (request, reply) => {
      const { type } = request.params as { type: string }
      const { current, previous, compatibility } = await eventTypes.register(type, request.body)
      const created = previous === undefined || previous.version !== current.version
      const answer = { ...view(current), ...(compatibility ? { compatibility } : {}) }
      await context.audit(
        request.principal,
        created ? 'event_type.registered' : 'event_type.updated',
        current.type,
        {
          type: current.type,
          version: current.version,
          ...(compatibility ? { backward: compatibility.backward } : {}),
        },
      )
      return reply
        .code(previous === undefined ? 201 : 200)
        .header('location', `/v1/event-types/${encodeURIComponent(current.type)}/versions/${current.version}`)
        .send(answer)
    },
  )

  app.get('/v1/event-types', read(schemas.listEventTypes), async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const list = await eventTypes.list({ after: stringParam(query, 'after') ?? '', limit })
    return { event_types: list.map(view), next: list.length === limit ? list.at(-1)!.type : null }
  })

  app.get('/v1/event-types/:type', read(schemas.getEventType), async (request) => {
    const type = validateTypeName((request.params as { type: string }).type)
    const versions = await eventTypes.versions(type)
    if (versions.length === 0) throw errors.notFound(`There is no event type "${type}".`)
    return {
      ...view(versions.at(-1)!),
      versions: versions.map((v) => ({
        version: v.version,
        url: view(v).url,
        created_at: new Date(v.created_at).toISOString(),
      })),
    }
  })

  app.get(
    '/v1/event-types/:type/versions/:version',
    read(schemas.getEventTypeVersion),
    async (request, reply) => {
      const params = request.params as { type: string; version: string }
      const type = validateTypeName(params.type)
      const version = wholeNumber(params.version, 'version', 1, 1_000_000_000)
      const record = await eventTypes.version(type, version)
      if (record === undefined) throw errors.notFound(`Event type "${type}" has no version ${version}.`)
      // A version never changes once registered. Its URL is events' `dataschema`, so tools that fetch it
      // for the schema itself get it with `Accept: application/schema+json`.
      reply.header('cache-control', 'private, max-age=86400, immutable').header('vary', 'accept')
      if (request.headers.accept?.includes('application/schema+json')) {
        return reply.type('application/schema+json').send(record.schema)
      }
      return reply.send(view(record))
    },
  )
}
