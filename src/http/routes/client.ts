import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { errors } from '../../core/errors.ts'
import { schemas } from '../schemas/routes.ts'

/** Where `npm run build:client` (part of `prepare`) writes the client bundle. */
export const CLIENT_DIST = join(import.meta.dirname, '..', '..', '..', 'web', 'dist-client', 'client.js')

/** The bundle is a few KB; anything much larger is not it. */
const MAX_BYTES = 1024 * 1024

function loadClient(path: string): Buffer | undefined {
  try {
    const body = readFileSync(path)
    return body.length <= MAX_BYTES ? body : undefined
  } catch {
    return undefined
  }
}

/**
 * `GET /v1/client.js`: the TypeScript client (src/client) as one ES module, for
 * `<script type=module>` and Node 24, served from memory. Public: the same for everyone, nothing
 * stored in it. Without a build, a 404 says how to make one.
 */
export function registerClientRoutes(app: FastifyInstance, path: string = CLIENT_DIST): void {
  const body = loadClient(path)
  const options = { config: { right: 'public' }, schema: schemas.clientBundle } as const
  app.get('/v1/client.js', options, async (_request, reply) => {
    if (body === undefined)
      throw errors.notFound('The client is not built: run `npm run build:client` (part of `npm ci`).')
    return reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=300')
      .header('access-control-allow-origin', '*')
      .header('cross-origin-resource-policy', 'cross-origin')
      .header('x-content-type-options', 'nosniff')
      .send(body)
  })
}
