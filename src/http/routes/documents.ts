import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { errors } from '../../core/errors.ts'
import type { EventTypeVersion } from '../../event-types/catalog.ts'
import type { HttpContext } from '../context.ts'
import { buildAsyncApi } from '../documents/asyncapi.ts'
import { buildOpenApi, type DocumentedRoute } from '../documents/openapi.ts'
import type { RouteSchema } from '../schemas/common.ts'
import { schemas } from '../schemas/routes.ts'

/**
 * Whoever may read some topic, as for the event-type catalog itself (GET /v1/event-types): the
 * documents embed its schemas, which describe what flows through the topics and are not for anyone
 * who can reach the port. (In open mode, without a key, anyone on loopback may.)
 */
const READ = { config: { right: 'subscribe', topical: true } } as const
/** Short: the documents change when event types are registered. */
const CACHE_CONTROL = 'private, max-age=60'

const documented = new WeakMap<FastifyInstance, DocumentedRoute[]>()

/** Every route registered on `app` after registerDocumentRoutes, as the document sees it. */
export function documentedRoutes(app: FastifyInstance): readonly DocumentedRoute[] {
  return documented.get(app) ?? []
}

/**
 * `GET /openapi.json` and `GET /asyncapi.json`. Call before the other routes: an onRoute hook
 * collects each route's schema and right, from which the OpenAPI document is made. `catalog` gives the
 * registered event types (the latest version of each), read at each request.
 */
export function registerDocumentRoutes(
  app: FastifyInstance,
  { config }: HttpContext,
  catalog: () => Promise<EventTypeVersion[]>,
): void {
  const routes: DocumentedRoute[] = []
  documented.set(app, routes)
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      routes.push({
        method,
        url: route.url,
        right: route.config?.right ?? 'admin',
        tokenInQuery: route.config?.tokenInQuery !== undefined,
        schema: route.schema as RouteSchema | undefined,
      })
    }
  })

  const readCatalog = async () => {
    try {
      return await catalog()
    } catch (error) {
      throw errors.unavailable(`The event-type catalog could not be read: ${(error as Error).message}`)
    }
  }

  // Each document is made again only when the catalog changed.
  const serve = (build: (catalog: EventTypeVersion[]) => Record<string, unknown>) => {
    let cached: { key: string; body: string } | undefined
    return async (_request: FastifyRequest, reply: FastifyReply) => {
      const types = await readCatalog()
      const key = catalogKey(types)
      if (cached?.key !== key) cached = { key, body: JSON.stringify(build(types)) }
      return reply
        .type('application/json; charset=utf-8')
        .header('cache-control', CACHE_CONTROL)
        .send(cached.body)
    }
  }
  app.get(
    '/openapi.json',
    { ...READ, schema: schemas.openapi },
    serve((types) => buildOpenApi({ routes, catalog: types, publicUrl: config.publicUrl })),
  )
  app.get(
    '/asyncapi.json',
    { ...READ, schema: schemas.asyncapi },
    serve((types) => buildAsyncApi({ catalog: types, publicUrl: config.publicUrl })),
  )
}

/**
 * What the documents depend on in a catalog: each entry's type and version (a schema that changes is
 * a new version), and what may change without one (description, deprecation).
 */
function catalogKey(catalog: readonly EventTypeVersion[]): string {
  return JSON.stringify(
    catalog.map((entry) => [entry.type, entry.version, entry.description, entry.deprecated]),
  )
}
