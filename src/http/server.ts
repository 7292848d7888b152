import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify'
import { enforceAccess, notFound } from './access.ts'
import { registerBodyParsers } from './body-parsers.ts'
import type { HttpContext } from './context.ts'
import { corsPolicy, registerCorsHeaders, registerPreflight } from './cors.ts'
import { answerClientError, errorHandler } from './problem.ts'
import { registerClientRoutes } from './routes/client.ts'
import { registerClusterRoutes } from './routes/cluster.ts'
import { registerConnectionRoutes } from './routes/connections.ts'
import { registerConsoleRoutes } from './routes/console.ts'
import { registerDeliveryRoutes } from './routes/deliveries.ts'
import { registerDocumentRoutes } from './routes/documents.ts'
import { registerEventTypeRoutes } from './routes/event-types.ts'
import { registerHealthRoutes } from './routes/health.ts'
import { registerHookRoutes } from './routes/hooks.ts'
import { registerKeyRoutes } from './routes/keys.ts'
import { registerStreamRoutes } from './routes/streams.ts'
import { registerTopicRoutes } from './routes/topics.ts'
import { registerWebSubRoutes } from './routes/websub.ts'
import { documentOnlySchemas } from './schemas/common.ts'
import type { TlsMaterial } from './tls.ts'

/** SETTINGS_MAX_CONCURRENT_STREAMS: streams, long polls and requests one HTTP/2 connection holds at once. */
export const MAX_HTTP2_STREAMS = 256

/** How long an HTTP/2 connection may carry no traffic at all before it is closed. */
export function http2IdleTimeout(config: HttpContext['config']): number {
  return config.http2IdleTimeoutMs ?? Math.max(72_000, config.heartbeatMs * 3)
}

/**
 * The HTTP server: plain HTTP/1.1, or with `tls` HTTPS serving HTTP/2 and HTTP/1.1 on the same port
 * (ALPN picks; clients without ALPN get HTTP/1.1). Over TLS the instance's `server` is an
 * Http2SecureServer, typed here as the HTTP/1.1 server the rest of Herald mostly treats it as: what
 * differs (streams, connection headers, upgrades) checks the request's HTTP version.
 */
export function buildServer(
  context: HttpContext,
  logger: FastifyBaseLogger,
  tls?: TlsMaterial,
): FastifyInstance {
  const transport =
    tls === undefined
      ? {}
      : {
          http2: true as const,
          https: {
            allowHTTP1: true,
            cert: tls.cert,
            key: tls.key,
            // Requests one HTTP/2 connection may have open at once (node's default is 2³²-1): what
            // MAX_UNANSWERED_REQUESTS is to an HTTP/1.1 one, with room for a page's many streams.
            settings: { maxConcurrentStreams: MAX_HTTP2_STREAMS },
          },
          // An HTTP/2 connection idle this long is closed (a stream's heartbeats keep it busy).
          http2SessionTimeout: http2IdleTimeout(context.config),
        }
  const app = Fastify({
    ...(transport as object), // the HTTP/2 options: typed as HTTP/1.1 (see above)
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
  }) as unknown as FastifyInstance

  registerBodyParsers(app)
  // The routes' schemas are documentation (GET /openapi.json): the handlers validate their input.
  documentOnlySchemas(app)

  app.setErrorHandler(errorHandler)
  // The access hook answers a request for no route first (before its body); this is the fallback.
  app.setNotFoundHandler(async (request) => {
    throw notFound(request)
  })

  // CORS headers first, so that the access check's refusals are readable by the page that asked.
  const origins = context.config.corsOrigins
  if (origins.length > 0) registerCorsHeaders(app, corsPolicy(origins))
  // Before any route: every route must declare its right, and one hook enforces them all.
  enforceAccess(app, context.access, context.rateLimits)
  registerPreflight(app, origins)

  // A response sent while draining closes its connection, so that keep-alive clients reconnect
  // elsewhere and the server can finish closing without waiting for their idle timeout.
  app.addHook('onSend', (_request, reply, payload, done) => {
    // HTTP/2 has no such header (node refuses it): a draining server sends GOAWAY instead.
    if (context.draining.aborted && _request.raw.httpVersionMajor === 1) reply.header('connection', 'close')
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

  // First of the routes: it collects the others' schemas and rights for GET /openapi.json.
  registerDocumentRoutes(app, context, () => context.eventTypes.describeAll())
  registerConsoleRoutes(app, context)
  registerClientRoutes(app)
  registerHealthRoutes(app, context)
  registerTopicRoutes(app, context)
  registerStreamRoutes(app, context)
  registerHookRoutes(app, context)
  registerWebSubRoutes(app, context, context.websub)
  registerClusterRoutes(app, context)
  registerKeyRoutes(app, context)
  registerEventTypeRoutes(app, context)
  registerDeliveryRoutes(app, context)
  registerConnectionRoutes(app, context)
  return app
}
