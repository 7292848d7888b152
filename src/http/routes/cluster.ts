import type { FastifyInstance } from 'fastify'
import type { HttpContext } from '../context.ts'
import { schemas } from '../schemas/routes.ts'

const ADMIN = { config: { right: 'admin' } } as const

/**
 * GET /v1/cluster: the store and bus this node uses, and the nodes serving the store (those whose
 * heartbeat was not found stale), with the one that leads. Answered from the store, so every node
 * gives the same list.
 */
export function registerClusterRoutes(app: FastifyInstance, { cluster }: HttpContext): void {
  app.get('/v1/cluster', { ...ADMIN, schema: schemas.cluster }, async () => {
    const nodes = await cluster.nodes()
    return {
      store: cluster.store,
      bus: cluster.bus,
      nodes: nodes.map((node) => ({
        id: node.id,
        started_at: new Date(node.started_at).toISOString(),
        heartbeat_at: new Date(node.heartbeat_at).toISOString(),
        leader: node.leader,
      })),
    }
  })
}
