import type { FastifyInstance } from 'fastify'

const ALLOWED_METHODS = 'GET, POST, PUT, PATCH, DELETE'
const EXPOSED_HEADERS = 'Link, Location, Retry-After, WWW-Authenticate'

/**
 * CORS for browser clients (EventSource, fetch, dashboards on other origins). Herald authenticates
 * with bearer keys, never cookies, so allowing any origin (the default, `*`) exposes nothing a
 * browser's ambient credentials would protect; `--cors-origins` narrows it or turns it off.
 */
export function registerCors(app: FastifyInstance, origins: string[]): void {
  if (origins.length === 0) return
  const any = origins.includes('*')
  const allowed = new Set(origins)
  app.addHook('onRequest', (request, reply, done) => {
    const origin = request.headers.origin
    if (origin !== undefined && (any || allowed.has(origin))) {
      reply.header('access-control-allow-origin', any ? '*' : origin)
      reply.header('access-control-expose-headers', EXPOSED_HEADERS)
    }
    if (!any) reply.header('vary', 'Origin')
    done()
  })
  // Preflight: answered before authentication (a preflight carries no credentials).
  app.options('/*', { config: { right: 'public' } }, (request, reply) => {
    const requested = request.headers['access-control-request-headers']
    reply
      .header('access-control-allow-methods', ALLOWED_METHODS)
      .header('access-control-allow-headers', requested ?? 'Authorization, Content-Type')
      .header('access-control-max-age', '600')
      .code(204)
      .send()
  })
}
