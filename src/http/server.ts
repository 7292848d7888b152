import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify'
import { errors } from '../core/errors.ts'
import { enforceAccess } from './access.ts'
import { registerBodyParsers } from './body-parsers.ts'
import type { HttpContext } from './context.ts'
import { registerCors } from './cors.ts'
import { answerClientError, errorHandler, sendProblem } from './problem.ts'
import { registerHealthRoutes } from './routes/health.ts'
import { registerHomeRoute } from './routes/home.ts'
import { registerHookRoutes } from './routes/hooks.ts'
import { registerStreamRoutes } from './routes/streams.ts'
import { registerTopicRoutes } from './routes/topics.ts'
import { registerWebSubRoutes } from './routes/websub.ts'

export function buildServer(context: HttpContext, logger: FastifyBaseLogger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    // One log line per request would dominate the cost of a publish; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    // No child logger per request: Herald logs little per request (errors carry their URL), and a
    // child per request costs time on every publish and memory on every open stream.
    childLoggerFactory: (logger) => logger,
    bodyLimit: context.config.bodyLimitBytes,
    // Malformed URLs (a stray `%`) are answered by Herald's error handler, in problem+json.
    frameworkErrors: (error, request, reply) => errorHandler(error, request, reply),
    // What Node's parser refuses before there is a request (an oversized URL or header block, bad
    // syntax) is answered in problem+json too, and the connection closed.
    clientErrorHandler: answerClientError,
    routerOptions: { ignoreTrailingSlash: true },
    // While draining, requests on open keep-alive connections are still answered (with
    // `Connection: close`, below) by Herald's own routes, so /readyz says 503 in problem+json.
    return503OnClosing: false,
  })

  registerBodyParsers(app)

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
