import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { errors } from '../core/errors.ts'

/** Whether a presented token is the API key (constant-time: digests are compared, whatever the lengths). */
export function createKeyCheck(apiKey: string): (token: string) => boolean {
  const expected = digest(apiKey)
  return (token) => timingSafeEqual(digest(token), expected)
}

/**
 * Bearer-key authentication. GET requests may pass the key as `?access_token=` because a browser's
 * EventSource and WebSocket cannot set headers; such URLs end up in access logs, so the header is
 * preferred.
 */
export function createAuthenticator(apiKey: string | undefined) {
  if (apiKey === undefined) return undefined
  const isKey = createKeyCheck(apiKey)
  return (request: FastifyRequest): void => {
    const token = requestToken(request.headers.authorization, request.method, request.query)
    if (token === undefined) {
      throw errors.unauthorized('Send the API key as "Authorization: Bearer <key>".', 'Authorization', {
        'WWW-Authenticate': 'Bearer realm="herald"',
      })
    }
    if (!isKey(token)) {
      throw errors.unauthorized('The API key is not valid.', 'Authorization', {
        'WWW-Authenticate': 'Bearer realm="herald", error="invalid_token"',
      })
    }
  }
}

/** The token a request presents: the Bearer header, or `access_token` on a GET; '' if malformed. */
export function requestToken(
  authorization: string | undefined,
  method: string,
  query: unknown,
): string | undefined {
  if (authorization !== undefined) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
    return match ? match[1] : ''
  }
  if (method === 'GET') {
    const token = (query as Record<string, unknown>)['access_token']
    if (typeof token === 'string') return token
  }
  return undefined
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}
