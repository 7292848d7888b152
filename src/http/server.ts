import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify'
import { errors } from '../core/errors.ts'
import { createAuthenticator } from './auth.ts'
import type { HttpContext } from './context.ts'
import { errorHandler, sendProblem } from './problem.ts'
import { registerHealthRoutes } from './routes/health.ts'
import { registerTopicRoutes } from './routes/topics.ts'

const JSON_TYPES = ['application/cloudevents+json', 'application/cloudevents-batch+json']

export function buildServer(context: HttpContext, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // One log line per request would dominate the cost of a publish; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: context.config.bodyLimitBytes,
    // Event data is stored as sent, `__proto__` keys included: Herald copies no untrusted object
    // into another, so they are inert here, and dropping or refusing them would alter events.
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    routerOptions: { ignoreTrailingSlash: true },
  })

  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, app.getDefaultJsonParser('ignore', 'ignore'))
  // Any other media type arrives as bytes: CloudEvents binary mode carries data of any type.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, errors.notFound(`No route for ${request.method} ${request.url.split('?')[0]}.`)),
  )

  const authenticate = createAuthenticator(context.config.apiKey)
  if (authenticate) {
    app.addHook('onRequest', async (request) => {
      if (request.url.startsWith('/v1/') || request.url === '/v1') authenticate(request)
    })
  }

  app.addHook('onResponse', async (request, reply) => {
    context.metrics.httpRequests.inc({
      route: request.routeOptions.url ?? 'unmatched',
      method: request.method,
      status: reply.statusCode,
    })
  })

  registerHealthRoutes(app, context)
  registerTopicRoutes(app, context)
  return app
}
