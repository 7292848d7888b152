import { timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { digestOf, isKeyToken, type KeyRing } from '../access/keys.ts'
import { ANONYMOUS, assertMay, mayAtAll, type Principal, ROOT } from '../access/principal.ts'
import { type RateLimits, rateLimitedError, rateLimitHeaders } from '../access/rate-limit.ts'
import { INVALID_TOKEN_CHALLENGE } from '../access/tokens.ts'
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
     * Whether the right is checked on a topic by the route's handler (which names it): then the
     * route-level check asks only that the principal holds the right on some topic. Otherwise an
     * `admin` route needs admin over every topic (`**`).
     */
    topical?: boolean
    /**
     * Whether this request may present its key as `?access_token=`: only streams, because a
     * browser's EventSource cannot set headers. Elsewhere the key stays out of URLs (and so out of
     * access logs and browser history).
     */
    tokenInQuery?: (request: FastifyRequest) => boolean
  }
  interface FastifyRequest {
    /** Who sent the request (set before the handler runs, on every route but the public ones). */
    principal: Principal
  }
}

export type { Principal }

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
  /**
   * The principal behind a request's credentials: the root key, a scoped key (`hk_…`), a signed
   * token (JWT); in open mode, no credentials is the anonymous principal. A coded 401 when they are
   * missing or not valid.
   */
  authenticate(token: string | undefined): Promise<Principal>
  /** Throws 403 unless `principal` holds `right` on `topic` (on every topic when undefined). */
  authorize(principal: Principal, right: Exclude<Right, 'public'>, topic?: string): void
}

/** The verifier of signed tokens (src/access/tokens.ts), when HERALD_JWT_SECRET or _PUBLIC_KEY is set. */
export interface TokenCheck {
  verify(token: string): Promise<Principal>
}

export function createAccess(
  options: {
    apiKey?: string | undefined
    publicUrl?: string
    corsOrigins?: readonly string[]
    keys?: KeyRing
    tokens?: TokenCheck | undefined
    now?: () => number
  } = {},
): Access {
  const { apiKey, keys, tokens } = options
  const now = options.now ?? Date.now
  const rootDigest = apiKey === undefined ? undefined : digestOf(apiKey)
  const isKey = rootDigest === undefined ? undefined : (digest: Buffer) => timingSafeEqual(digest, rootDigest)
  const publicHost = options.publicUrl === undefined ? undefined : new URL(options.publicUrl).host
  const origins = corsPolicy(options.corsOrigins ?? [])
  const invalid = () =>
    errors.unauthorized('The API key is not valid.', 'Authorization', {
      'WWW-Authenticate': INVALID_TOKEN_CHALLENGE,
    })
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
    async authenticate(token) {
      if (token === undefined) {
        if (isKey === undefined) return ANONYMOUS
        throw errors.unauthorized(
          'Send an API key or a token as "Authorization: Bearer <key>".',
          'Authorization',
          { 'WWW-Authenticate': 'Bearer realm="herald"' },
        )
      }
      // Credentials presented are always checked, in open mode too: a wrong one is a mistake to report.
      // One digest of what was presented, compared in constant time with the root key's and a key's.
      const digest = digestOf(token)
      if (isKey?.(digest)) return ROOT
      if (keys !== undefined && isKeyToken(token)) return keys.authenticate(token, digest, now())
      if (tokens !== undefined && looksLikeJwt(token)) return tokens.verify(token)
      if (isKey === undefined && keys === undefined && tokens === undefined) return ANONYMOUS
      throw invalid()
    },
    authorize(principal, right, topic) {
      assertMay(principal, right, topic)
    },
  }
}

/** A compact JWS: three base64url parts (counted by hand: no regular expression on the client's text). */
function looksLikeJwt(token: string): boolean {
  const first = token.indexOf('.')
  if (first <= 0) return false
  const second = token.indexOf('.', first + 1)
  return second > first + 1 && token.indexOf('.', second + 1) === -1
}

/** Whether a presented token is the API key (constant-time: digests are compared, whatever the lengths). */

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
export function enforceAccess(app: FastifyInstance, access: Access, rateLimits?: RateLimits): void {
  const routes: DeclaredRoute[] = []
  declared.set(app, routes)
  app.addHook('onRoute', (route) => {
    const right = route.config?.right
    if (right === undefined) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no right (config.right).`)
    }
    for (const method of [route.method].flat()) routes.push({ method, url: route.url, right })
  })
  // null, not an object: Fastify shares a decorator's initial value; every non-public request sets its own.
  app.decorateRequest('principal', null as never)
  app.addHook('onRequest', async (request, reply) => {
    try {
      if (request.is404) throw notFound(request)
      const { right, tokenInQuery, topical } = request.routeOptions.config
      if (right === undefined) throw errors.internal('This route declares no right.') // onRoute prevents it
      access.checkBrowserReach(request.headers)
      if (right === 'public') return
      const queryAllowed = tokenInQuery?.(request) ?? false
      const principal = await access.authenticate(
        requestToken(request.headers, request.query as Record<string, unknown>, queryAllowed),
      )
      request.principal = principal
      // Request budgets (src/access/rate-limit.ts): every request past authentication counts, public
      // routes never; the answer says what is left, and past the budget it is a 429.
      if (rateLimits !== undefined) {
        const verdict = await rateLimits.consume(principal, request.ip)
        if (verdict !== undefined) {
          if (!verdict.allowed) throw rateLimitedError(verdict)
          reply.headers(rateLimitHeaders(verdict))
        }
      }
      // A route about one topic checks that topic in its handler; here, that the right is held at all.
      if (topical) {
        if (!mayAtAll(principal, right)) {
          throw errors.forbidden(`These credentials do not hold the "${right}" right.`)
        }
      } else access.authorize(principal, right)
    } catch (error) {
      // The body, if any, is never read: close the connection rather than drain an upload.
      // (HTTP/1.1 only: HTTP/2 has no connection header, and its stream is reset instead.)
      if (request.raw.httpVersionMajor === 1) reply.header('connection', 'close')
      if (rateLimits !== undefined && (error as { status?: unknown }).status === 401) {
        await rateLimits.countRefusal(request.ip)
      }
      throw error
    }
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

/** A request target fit for a log line: an `access_token` in its query is replaced (RFC 6750 §5.3). */
export function loggableUrl(url: string): string {
  const query = url.indexOf('?')
  if (query === -1) return url
  // By the decoded name: `access%5Ftoken` is read as access_token too.
  const params = new URLSearchParams(url.slice(query + 1))
  if (!params.has('access_token')) return url
  params.set('access_token', '[redacted]')
  return `${url.slice(0, query)}?${params}`
}

/** The path of a request target, without its query (for messages). */
export function pathOf(url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}
