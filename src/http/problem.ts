import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errors, HeraldError } from '../core/errors.ts'
import { loggableUrl } from './access.ts'

export const PROBLEM_JSON = 'application/problem+json'

/** Turns anything thrown while answering into a coded HeraldError (Fastify's own errors included). */
export function toHeraldError(error: unknown): HeraldError {
  if (error instanceof HeraldError) return error
  const fastifyError = error as Partial<FastifyError>
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.payloadTooLarge(fastifyError.message ?? 'The request body is too large.')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return errors.unsupportedMediaType(fastifyError.message ?? 'Unsupported Content-Type.', 'Content-Type')
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return errors.invalidJson('The body is not valid JSON.')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.invalidJson('The body is empty, but its Content-Type says it is JSON.')
    case 'FST_ERR_BAD_URL':
      return errors.invalidRequest('The URL is not valid: a "%" must start a percent-encoded byte (%XX).')
  }
  const status = fastifyError.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return status === 413
      ? errors.payloadTooLarge(fastifyError.message ?? 'The request is too large.')
      : errors.invalidRequest(fastifyError.message ?? 'The request is not valid.')
  }
  return errors.internal('Something went wrong on the server; it has been logged.')
}

export function sendProblem(reply: FastifyReply, error: HeraldError): FastifyReply {
  return reply
    .code(error.status)
    .headers(error.headers)
    .type(PROBLEM_JSON)
    .send(JSON.stringify(error.toProblem()))
}

export function errorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const problem = toHeraldError(error)
  // A 503 is a known state of the server (draining, its store out of reach), which /readyz reports:
  // a warning per request, not an error with a stack trace.
  if (problem.status === 503)
    request.log.warn(
      { url: loggableUrl(request.url), detail: problem.message },
      'request refused: unavailable',
    )
  else if (problem.status >= 500)
    request.log.error({ err: error, url: loggableUrl(request.url) }, 'request failed')
  return sendProblem(reply, problem)
}

/**
 * A whole HTTP/1.1 answer carrying a problem, for sockets that never reach Fastify (a refused upgrade,
 * a connection over a limit, what Node's parser refused): it closes the connection.
 */
export function rawProblem(error: HeraldError): string {
  const body = JSON.stringify(error.toProblem())
  const extra = Object.entries(error.headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')
  return (
    `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\n${extra}Content-Type: ${PROBLEM_JSON}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  )
}

/**
 * Answers what Node's HTTP parser refused before any route saw it: 431 for a URL or header block over
 * the limit (16 KiB, Node's --max-http-header-size), 400 for the rest; problem+json, closing the
 * connection. (Request timeouts are answered by the socket guards, which count them.)
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  socket.end(
    rawProblem(
      error.code === 'HPE_HEADER_OVERFLOW'
        ? errors.headersTooLarge('The URL or the headers are larger than this server accepts (16 KiB).')
        : errors.invalidRequest('The request is not valid HTTP.'),
    ),
  )
}
