import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import type { HttpContext } from '../context.ts'
import { sendProblem } from '../problem.ts'
import { schemas } from '../schemas/routes.ts'

const PUBLIC = { config: { right: 'public' } } as const

/** Liveness, readiness and metrics: unauthenticated, so that probes and scrapers need no key. */
export function registerHealthRoutes(app: FastifyInstance, { metrics, notReady }: HttpContext): void {
  app.get('/healthz', { ...PUBLIC, schema: schemas.healthz }, async () => ({ status: 'ok' }))

  app.get('/readyz', { ...PUBLIC, schema: schemas.readyz }, async (_request, reply) => {
    const reason = await notReady()
    if (reason === undefined) return { status: 'ready' }
    return sendProblem(reply, errors.unavailable(reason))
  })

  app.get('/metrics', { ...PUBLIC, schema: schemas.metrics }, async (_request, reply) => {
    const text = await metrics.registry.metrics()
    return reply.type(metrics.registry.contentType).send(text)
  })
}
