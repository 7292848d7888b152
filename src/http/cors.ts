import type { FastifyInstance } from 'fastify'
import { schemas } from './schemas/routes.ts'

const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE'
const EXPOSED_HEADERS = 'Link, Location, Retry-After, WWW-Authenticate'

/** Which browser origins may call the API (`--cors-origins`), read once for CORS and the open-mode check. */
export interface CorsPolicy {
  /** `*`: any origin. */
  readonly any: boolean
  /** Whether a page of `origin` may call the API. */
  allows(origin: string): boolean
}

export function corsPolicy(origins: readonly string[]): CorsPolicy {
  const any = origins.includes('*')
  const allowed = new Set(origins)
  return { any, allows: (origin) => any || allowed.has(origin) }
}

/**
 * CORS for browser clients (EventSource, fetch, dashboards on other origins). Herald authenticates
 * with bearer keys, never cookies, so with a key any origin (the default then, `*`) is safe: a page
 * cannot present the key by itself. Without a key the default is none (see access.ts).
 *
 * The headers are set before the access check, so that its refusals (401, 403, 404) are readable by
 * the page that asked; the preflight route is registered after it (every route declares its right).
 */
export function registerCorsHeaders(app: FastifyInstance, policy: CorsPolicy): void {
  app.addHook('onRequest', (request, reply, done) => {
    const origin = request.headers.origin
    if (origin !== undefined && policy.allows(origin)) {
      reply.header('access-control-allow-origin', policy.any ? '*' : origin)
      reply.header('access-control-expose-headers', EXPOSED_HEADERS)
    }
    if (!policy.any) reply.header('vary', 'Origin')
    done()
  })
}

/** Preflights: answered without authentication (a preflight carries no credentials). */
export function registerPreflight(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return
  app.options('/*', { config: { right: 'public' }, schema: schemas.preflight }, (request, reply) => {
    const requested = request.headers['access-control-request-headers']
    reply
      .header('access-control-allow-methods', ALLOWED_METHODS)
      .header('access-control-allow-headers', requested ?? 'Authorization, Content-Type')
      .header('access-control-max-age', '600')
      .code(204)
      .send()
  })
}
