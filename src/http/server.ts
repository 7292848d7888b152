import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify'
import { errors } from '../core/errors.ts'
import { enforceAccess } from './access.ts'
import type { HttpContext } from './context.ts'
import { registerCors } from './cors.ts'
import { errorHandler, sendProblem } from './problem.ts'
import { registerHealthRoutes } from './routes/health.ts'
import { registerHomeRoute } from './routes/home.ts'
import { registerHookRoutes } from './routes/hooks.ts'
import { registerStreamRoutes } from './routes/streams.ts'
import { registerTopicRoutes } from './routes/topics.ts'
import { registerWebSubRoutes } from './routes/websub.ts'

const JSON_TYPES = ['application/cloudevents+json', 'application/cloudevents-batch+json']

export function buildServer(context: HttpContext, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // One log line per request would dominate the cost of a publish; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: Herald logs little per request (errors carry their URL), and a
    // child per request costs time on every publish and memory on every open stream.
    childLoggerFactory: (logger) => logger,
    bodyLimit: context.config.bodyLimitBytes,
    // Event data is stored as sent, `__proto__` keys included: Herald copies no untrusted object
    // into another, so they are inert here, and dropping or refusing them would alter events.
    onProtoPoisoning: 'ignore',
    onConstructorPoisoning: 'ignore',
    routerOptions: { ignoreTrailingSlash: true },
    // While draining, requests on open keep-alive connections are still answered (with
    // `Connection: close`, below) by Herald's own routes, so /readyz says 503 in problem+json.
    return503OnClosing: false,
  })

  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, app.getDefaultJsonParser('ignore', 'ignore'))
  // Any other media type arrives as bytes: CloudEvents binary mode carries data of any type.
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, errors.notFound(`No route for ${request.method} ${request.url.split('?')[0]}.`)),
  )

  // Before any route: every route must declare its right, and one hook enforces them all.
  enforceAccess(app, context.access)
  registerCors(app, context.config.corsOrigins)

  // A response sent while draining closes its connection, so that keep-alive clients reconnect
  // elsewhere and the server can finish closing without waiting for their idle timeout.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (context.draining.aborted) reply.header('connection', 'close')
    done(null, payload)
  })

  app.addHook('onResponse', (request, reply, done) => {
    context.metrics.httpRequests.inc({
      route: request.routeOptions.url ?? 'unmatched',
      method: request.method,
      status: reply.statusCode,
    })
    done()
  })

  registerHomeRoute(app, context)
  registerHealthRoutes(app, context)
  registerTopicRoutes(app, context)
  registerStreamRoutes(app, context)
  registerHookRoutes(app, context)
  registerWebSubRoutes(app, context, context.websub)
  return app
}
