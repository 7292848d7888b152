import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { errors, HeraldError } from '../core/errors.ts'

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
  if (problem.status >= 500) request.log.error({ err: error, url: request.url }, 'request failed')
  return sendProblem(reply, problem)
}
