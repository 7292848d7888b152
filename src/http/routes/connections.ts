import type { FastifyInstance } from 'fastify'
import { actorOf } from '../../access/principal.ts'
import { errors } from '../../core/errors.ts'
import type { StreamConnection } from '../../streams/connections.ts'
import type { HttpContext } from '../context.ts'
import { integerParam, type Query, stringParam } from '../params.ts'
import { schemas } from '../schemas/routes.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
const ADMIN = { config: { right: 'admin' } } as const

/** The most topics a connection is shown with (a socket may follow 1000): `topic_count` says how many. */
const MAX_TOPICS_SHOWN = 100

/**
 * This node's open streams and sockets (SSE, NDJSON, WebSocket): `GET /v1/connections` lists them,
 * oldest first, `DELETE /v1/connections/{id}` closes one. Each node answers for its own connections:
 * behind a load balancer, ask each node (the answer names it).
 */
export function registerConnectionRoutes(app: FastifyInstance, context: HttpContext): void {
  const { connections, config } = context

  app.get('/v1/connections', { ...ADMIN, schema: schemas.listConnections }, async (request) => {
    const query = request.query as Query
    const limit = integerParam(query, 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT)
    const after = stringParam(query, 'after') ?? ''
    const protocol = stringParam(query, 'protocol')
    if (protocol !== undefined && !['sse', 'ndjson', 'ws'].includes(protocol)) {
      throw errors.invalidRequest('"protocol" is sse, ndjson or ws.', 'protocol')
    }
    const page = connections
      .list()
      .filter(
        (connection) => connection.id > after && (protocol === undefined || connection.protocol === protocol),
      )
      .slice(0, limit)
    return {
      node: config.nodeId,
      connections: page.map(view),
      next: page.length === limit ? page.at(-1)!.id : null,
    }
  })

  app.delete('/v1/connections/:id', { ...ADMIN, schema: schemas.closeConnection }, async (request, reply) => {
    const { id } = request.params as { id: string }
    const connection = connections.get(id)
    if (connection === undefined) {
      throw errors.notFound(`This node (${config.nodeId}) has no open connection ${id.slice(0, 64)}.`)
    }
    connection.close()
    await context.audit(request.principal, 'connection.closed', id, {
      connection: id,
      protocol: connection.protocol,
      node: config.nodeId,
    })
    return reply.code(204).send()
  })
}

function view(connection: StreamConnection) {
  const principal = connection.who()
  const topics = connection.topics()
  return {
    id: connection.id,
    protocol: connection.protocol,
    topics: topics.slice(0, MAX_TOPICS_SHOWN),
    topic_count: topics.length,
    ...(principal?.kind === 'token' && principal.sub !== undefined ? { sub: principal.sub } : {}),
    actor: principal === undefined ? null : actorOf(principal),
    remote: connection.remote ?? null,
    since: new Date(connection.since).toISOString(),
  }
}
