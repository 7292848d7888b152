import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import type { HttpContext } from '../context.ts'
import { sendProblem } from '../problem.ts'

/** Liveness, readiness and metrics: unauthenticated, so that probes and scrapers need no key. */
export function registerHealthRoutes(
  app: FastifyInstance,
  { metrics, isReady, draining }: HttpContext,
): void {
  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    if (isReady()) return { status: 'ready' }
    return sendProblem(
      reply,
      errors.unavailable(draining.aborted ? 'The server is draining.' : 'The server is starting.'),
    )
  })

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}
