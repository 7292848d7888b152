import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from '../core/errors.ts'
import { corsPolicy } from './cors.ts'

/**
 * Who may call what. Every route declares the right it needs in its Fastify route config
 * (`{ config: { right: 'admin' } }`); registering a route without one fails at start, and one
 * `onRequest` hook, which runs after routing and before the body is read, enforces it. The decision is
 * taken on the route the router matched, never on the URL as spelt, so percent-encoding
 * (`/%761/hooks`) or an absolute-form target (`http://x/v1/hooks`) reaches the same check as the
 * plain path.
 *
 * The rights are the actions of the access-control contract: `subscribe` covers every read,
 * `publish` every write of events, `admin` hooks, WebSub, topic settings; `public` is for the
 * probes (health, readiness, metrics) and pages that show nothing stored.
 */
export type Right = 'public' | 'subscribe' | 'publish' | 'admin'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The right a request to this route needs. Every route declares one. */
    right?: Right
    /**
     * Whether this request may present its key as `?access_token=`: only streams, because a
     * browser's EventSource cannot set headers. Elsewhere the key stays out of URLs (and so out of
     * access logs and browser history).
     */
    tokenInQuery?: (request: FastifyRequest) => boolean
  }
}

/** Who a request comes from: the holder of the root key, or anyone (open mode, no key configured). */
export interface Principal {
  kind: 'root' | 'anonymous'
}

const ROOT: Principal = { kind: 'root' }
const ANONYMOUS: Principal = { kind: 'anonymous' }

export interface Access {
  /** Whether a key is required at all (false in open mode, which only loopback may use). */
  readonly keyRequired: boolean
  /**
   * In open mode, refuses (403) what a web page could send through the user's browser: a request
   * whose Host is not a loopback name (DNS rebinding: a page of evil.example resolved to 127.0.0.1)
   * or whose Origin is neither this server's own nor one of --cors-origins. With a key, a page cannot
   * present the key, so nothing is checked here.
   */
  checkBrowserReach(headers: IncomingHttpHeaders): void
  /** The principal behind a request's credentials; a coded 401 when they are missing or wrong. */
  authenticate(token: string | undefined): Principal
  /** Throws 403 unless `principal` holds `right`. Today every authenticated principal holds every right. */
  authorize(principal: Principal, right: Right): void
}

export function createAccess(
  apiKey: string | undefined,
  options: { publicUrl?: string; corsOrigins?: readonly string[] } = {},
): Access {
  const isKey = apiKey === undefined ? undefined : createKeyCheck(apiKey)
  const publicHost = options.publicUrl === undefined ? undefined : new URL(options.publicUrl).host
  const origins = corsPolicy(options.corsOrigins ?? [])
  return {
    keyRequired: isKey !== undefined,
    checkBrowserReach(headers) {
      if (isKey !== undefined) return
      const host = headers.host
      if (host !== undefined && host !== publicHost && !isLoopbackHost(host)) {
        throw errors.forbidden(
          `This server has no API key, so it answers requests for loopback host names only, not "${host.slice(0, 100)}" (a guard against DNS rebinding). Set HERALD_API_KEY to serve other names.`,
          'Host',
        )
      }
      const origin = headers.origin
      if (origin === undefined) {
        // Browsers send Origin on every cross-origin POST and WebSocket; Fetch Metadata says the rest.
        if (headers['sec-fetch-site'] !== 'cross-site') return
        throw errors.forbidden(
          'This server has no API key, so a web page of another site may not call it. Set HERALD_API_KEY, or list the origin in --cors-origins.',
          'Origin',
        )
      }
      if (origins.allows(origin)) return
      // The server's own pages (its origin is the Host it was reached by) may call it.
      if (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)) return
      throw errors.forbidden(
        `This server has no API key, so a web page of another origin (${origin.slice(0, 100)}) may not call it: any site the user visits could otherwise publish, read and create hooks. Set HERALD_API_KEY, or list the origin in --cors-origins.`,
        'Origin',
      )
    },
    authenticate(token) {
      if (isKey === undefined) return ANONYMOUS
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
      return ROOT
    },
    authorize(_principal, _right) {
      // One key, every right: scoped keys (a later version) decide here, for HTTP and WebSocket alike.
    },
  }
}

/** Whether a presented token is the API key (constant-time: digests are compared, whatever the lengths). */
export function createKeyCheck(apiKey: string): (token: string) => boolean {
  const expected = digest(apiKey)
  return (token) => timingSafeEqual(digest(token), expected)
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/**
 * The token a request presents: the Bearer header ('' if it is malformed, which fails the check),
 * else `access_token` from the query when `queryAllowed`.
 */
export function requestToken(
  headers: IncomingHttpHeaders,
  query: Record<string, unknown>,
  queryAllowed: boolean,
): string | undefined {
  const authorization = headers.authorization
  if (authorization !== undefined) {
    // Split by hand, not by a regular expression: the header is the client's and may be long.
    const space = authorization.indexOf(' ')
    if (space === -1 || authorization.slice(0, space).toLowerCase() !== 'bearer') return ''
    const token = authorization.slice(space + 1).trim()
    return token === '' || /\s/.test(token) ? '' : token
  }
  if (queryAllowed) {
    const token = query['access_token']
    if (typeof token === 'string') return token
  }
  return undefined
}

export interface DeclaredRoute {
  method: string
  url: string
  right: Right
}

const declared = new WeakMap<FastifyInstance, DeclaredRoute[]>()

/** Every route registered on `app`, with the right it declared (the access test walks them all). */
export function declaredRoutes(app: FastifyInstance): readonly DeclaredRoute[] {
  return declared.get(app) ?? []
}

/**
 * Makes every route declare its right, and enforces it. Call before any route is registered.
 * A 404 is answered here too, before the body is read: a request for no route costs no upload.
 */
export function enforceAccess(app: FastifyInstance, access: Access): void {
  const routes: DeclaredRoute[] = []
  declared.set(app, routes)
  app.addHook('onRoute', (route) => {
    const right = route.config?.right
    if (right === undefined) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no right (config.right).`)
    }
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, right })
  })
  // A callback hook, not an async one: it runs on every request, and needs no promise.
  app.addHook('onRequest', (request, reply, done) => {
    try {
      if (request.is404) throw notFound(request)
      const { right, tokenInQuery } = request.routeOptions.config
      if (right === undefined) throw errors.internal('This route declares no right.') // onRoute prevents it
      access.checkBrowserReach(request.headers)
      if (right !== 'public') {
        const queryAllowed = tokenInQuery?.(request) ?? false
        const principal = access.authenticate(
          requestToken(request.headers, request.query as Record<string, unknown>, queryAllowed),
        )
        access.authorize(principal, right)
      }
    } catch (error) {
      // The body, if any, is never read: close the connection rather than drain an upload.
      reply.header('connection', 'close')
      done(error as Error)
      return
    }
    done()
  })
}

/**
 * Whether a Host header names this machine: `localhost`, `127.x.y.z` or `[::1]`, with any port.
 * Parsed by hand (no regular expression on the client's header).
 */
export function isLoopbackHost(host: string): boolean {
  let name = host.toLowerCase()
  if (name.startsWith('[')) {
    const end = name.indexOf(']')
    if (end === -1) return false
    const rest = name.slice(end + 1)
    if (rest !== '' && !isPort(rest)) return false
    return name.slice(1, end) === '::1'
  }
  const colon = name.indexOf(':')
  if (colon !== -1) {
    if (!isPort(name.slice(colon))) return false
    name = name.slice(0, colon)
  }
  if (name === 'localhost' || name === 'localhost.') return true
  const parts = name.split('.')
  return (
    parts.length === 4 &&
    parts[0] === '127' &&
    parts.every(
      (part) =>
        part !== '' &&
        part.length <= 3 &&
        [...part].every((c) => c >= '0' && c <= '9') &&
        Number(part) <= 255,
    )
  )
}

/** `:8080`: a colon and one to five digits. */
function isPort(text: string): boolean {
  return (
    text.length >= 2 &&
    text.length <= 6 &&
    text[0] === ':' &&
    [...text.slice(1)].every((c) => c >= '0' && c <= '9')
  )
}

/** The 404 of a request for no route. */
export function notFound(request: FastifyRequest) {
  return errors.notFound(`No route for ${request.method} ${pathOf(request.url)}.`)
}

/** The path of a request target, without its query (for messages). */
export function pathOf(url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}
