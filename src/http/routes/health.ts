import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import type { HttpContext } from '../context.ts'
import { sendProblem } from '../problem.ts'

const PUBLIC = { config: { right: 'public' } } as const

/** Liveness, readiness and metrics: unauthenticated, so that probes and scrapers need no key. */
export function registerHealthRoutes(
  app: FastifyInstance,
  { metrics, isReady, draining }: HttpContext,
): void {
  app.get('/healthz', PUBLIC, async () => ({ status: 'ok' }))

  app.get('/readyz', PUBLIC, async (_request, reply) => {
    if (isReady()) return { status: 'ready' }
    return sendProblem(
      reply,
      errors.unavailable(draining.aborted ? 'The server is draining.' : 'The server is starting.'),
    )
  })

  app.get('/metrics', PUBLIC, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}
