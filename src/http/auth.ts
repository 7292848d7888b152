import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { errors } from '../core/errors.ts'

/**
 * Bearer-key authentication. Streaming GETs may pass the key as `?access_token=` because a browser's
 * EventSource cannot set headers; such URLs end up in access logs, so the header is preferred.
 */
export function createAuthenticator(apiKey: string | undefined) {
  if (apiKey === undefined) return undefined
  // Comparing digests keeps the comparison constant-time whatever the lengths.
  const expected = digest(apiKey)
  return (request: FastifyRequest): void => {
    const token = bearerToken(request)
    if (token === undefined) {
      throw errors.unauthorized('Send the API key as "Authorization: Bearer <key>".', 'Authorization', {
        'WWW-Authenticate': 'Bearer realm="herald"',
      })
    }
    if (!timingSafeEqual(digest(token), expected)) {
      throw errors.unauthorized('The API key is not valid.', 'Authorization', {
        'WWW-Authenticate': 'Bearer realm="herald", error="invalid_token"',
      })
    }
  }
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (header !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
    return match ? match[1] : ''
  }
  if (request.method === 'GET') {
    const token = (request.query as Record<string, unknown>)['access_token']
    if (typeof token === 'string') return token
  }
  return undefined
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}
