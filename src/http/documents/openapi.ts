/**
 * GET /openapi.json: OpenAPI 3.1, made from what the routes declare (their Fastify `schema` and the
 * right in their `config`), so that it cannot say other than the code: a route without a schema fails
 * the build of the document, and the right a route enforces is the security it is documented with.
 */
import type { EventTypeVersion } from '../../event-types/catalog.ts'
import type { Right } from '../access.ts'
import { components, type JsonSchema, type ResponseSchema, type RouteSchema, ref } from '../schemas/common.ts'
import { componentNames, embedSchema, HERALD_VERSION, latestVersions } from './catalog.ts'

/** A route as registered on the app (collected by an onRoute hook). */
export interface DocumentedRoute {
  method: string
  /** Fastify's pattern: `/v1/hooks/:id`, `/v1/topics/*`. */
  url: string
  right: Right
  /** Whether the route may take its key as `?access_token=` (streams). */
  tokenInQuery: boolean
  schema: RouteSchema | undefined
}

type Operation = Record<string, unknown>

const PROBLEM = { 'application/problem+json': { schema: ref('Problem') } }

/** The answers every route may give beyond its own, by the right it needs. */
function commonResponses(right: Right): Record<string, ResponseSchema> {
  const always = { 500: { description: 'Unexpected failure (logged).', content: PROBLEM } }
  if (right === 'public') {
    return {
      403: {
        description:
          'Without HERALD_API_KEY only: a Host that is not a loopback name (DNS rebinding), or a page of another origin.',
        content: PROBLEM,
      },
      ...always,
    }
  }
  return {
    401: {
      description: 'No credentials, or not valid ones (`WWW-Authenticate: Bearer`).',
      content: PROBLEM,
    },
    403: {
      description: `The credentials do not hold the "${right}" right here (or, without HERALD_API_KEY, a request from a foreign Host or origin).`,
      content: PROBLEM,
    },
    429: {
      description: 'Over the request budget (`Retry-After`, `RateLimit-Policy`, `RateLimit`).',
      content: PROBLEM,
    },
    ...always,
  }
}

/** `/v1/hooks/:id` → `/v1/hooks/{id}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')
}

function parameters(schema: RouteSchema): JsonSchema[] {
  const out: JsonSchema[] = []
  const add = (where: 'path' | 'query' | 'header', object: JsonSchema | undefined) => {
    const properties = (object?.['properties'] ?? {}) as Record<string, JsonSchema>
    const required = new Set((object?.['required'] ?? []) as string[])
    for (const [name, property] of Object.entries(properties)) {
      const { description, ...rest } = property
      out.push({
        name,
        in: where,
        required: where === 'path' || required.has(name),
        ...(description === undefined ? {} : { description }),
        schema: rest,
      })
    }
  }
  add('path', schema.params)
  add('query', schema.querystring)
  add('header', schema.headers)
  return out
}

function operation(schema: RouteSchema, route: DocumentedRoute): Operation {
  const { summary, description, tags, operationId, body, response } = schema
  const params = parameters(schema)
  const security =
    route.right === 'public' ? [] : [{ bearer: [] }, ...(route.tokenInQuery ? [{ accessToken: [] }] : [])]
  const responses: Record<string, ResponseSchema> = { ...commonResponses(route.right) }
  for (const [status, answer] of Object.entries(response)) responses[status] = answer
  return {
    summary,
    ...(description === undefined ? {} : { description }),
    tags,
    operationId,
    ...(params.length > 0 ? { parameters: params } : {}),
    ...(body === undefined
      ? {}
      : {
          requestBody:
            'content' in body
              ? { content: body.content }
              : { content: { 'application/json': { schema: body } } },
        }),
    responses,
    security,
    'x-herald-right': route.right,
  }
}

/**
 * The paths of the routes: each route's schema as an operation at its path (a wildcard route at each
 * of the paths it serves, per its `x-paths`). HEAD routes are Fastify's twins of GET routes and are
 * documented by their GET; hidden ones (the CORS preflight) are left out.
 */
export function pathsOf(routes: readonly DocumentedRoute[]): Record<string, Record<string, Operation>> {
  const paths: Record<string, Record<string, Operation>> = {}
  const put = (path: string, method: string, op: Operation) => {
    paths[path] ??= {}
    const item = paths[path]
    if (item[method] !== undefined) throw new Error(`Two routes document ${method.toUpperCase()} ${path}.`)
    item[method] = op
  }
  for (const route of routes) {
    if (route.method === 'HEAD') continue
    const schema = route.schema
    if (schema === undefined) throw new Error(`Route ${route.method} ${route.url} declares no schema.`)
    if (schema.hide) continue
    const method = route.method.toLowerCase()
    const expanded = schema['x-paths']
    if (expanded !== undefined) {
      for (const [path, inner] of Object.entries(expanded)) put(path, method, operation(inner, route))
    } else {
      put(openApiPath(route.url), method, operation(schema, route))
    }
  }
  // The WebSocket is served on the HTTP server's upgrades, not by a Fastify route: its handshake here,
  // its messages in /asyncapi.json.
  put('/v1/ws', 'get', {
    summary: 'Open a WebSocket',
    description:
      'An RFC 6455 upgrade (subprotocol `herald.v1`, optional). JSON text messages: subscribe, unsubscribe, publish, presence, auth. /asyncapi.json describes them.',
    tags: ['Topics'],
    operationId: 'openWebSocket',
    parameters: [
      { name: 'access_token', in: 'query', required: false, schema: { type: 'string' } },
      { name: 'Sec-WebSocket-Protocol', in: 'header', required: false, schema: { const: 'herald.v1' } },
    ],
    responses: {
      101: { description: 'Switching Protocols.' },
      400: { description: 'A malformed handshake (the header is named).', content: PROBLEM },
      401: { description: 'A key that is not valid.', content: PROBLEM },
      405: { description: 'Not GET (Allow: GET).', content: PROBLEM },
      503: { description: 'Past --max-connections, or draining (Retry-After).', content: PROBLEM },
    },
    security: [{ bearer: [] }, { accessToken: [] }, {}],
    'x-herald-right': 'subscribe',
  })
  return paths
}

const DELIVERY_HEADERS = [
  {
    name: 'webhook-id',
    in: 'header',
    required: true,
    description: "The event's id: the same on every retry, replay and manual retry.",
    schema: { type: 'string' },
  },
  {
    name: 'webhook-timestamp',
    in: 'header',
    required: true,
    description: 'Unix seconds of this attempt (each attempt is signed anew).',
    schema: { type: 'string', pattern: '^\\d+$' },
  },
  {
    name: 'webhook-signature',
    in: 'header',
    required: true,
    description:
      'Standard Webhooks: `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">` keyed with the bytes after `whsec_`; two, space-separated, while a secret is rotated.',
    schema: { type: 'string', pattern: '^v1,[A-Za-z0-9+/=]+( v1,[A-Za-z0-9+/=]+)*$' },
  },
  {
    name: 'user-agent',
    in: 'header',
    required: false,
    schema: { const: 'Herald-Webhooks' },
  },
]

const DELIVERY_RESPONSES = {
  '2XX': { description: 'Delivered.' },
  410: { description: 'Gone: Herald deletes the hook (and its pending deliveries).' },
  default: {
    description:
      'Any other status (redirects included), a timeout or a connection error: retried on HERALD_RETRY_SCHEDULE; Retry-After is honoured.',
  },
}

function delivery(summary: string, description: string, operationId: string, body: JsonSchema): Operation {
  return {
    post: {
      summary,
      description,
      operationId,
      tags: ['Webhooks'],
      parameters: DELIVERY_HEADERS,
      requestBody: { required: true, content: { 'application/json': { schema: body } } },
      responses: DELIVERY_RESPONSES,
    },
  }
}

/** The `webhooks` map: the delivery Herald makes, one entry per registered type, and one for the rest. */
function webhooksOf(
  types: readonly EventTypeVersion[],
  schemas: Record<string, JsonSchema>,
): Record<string, Operation> {
  const webhooks: Record<string, Operation> = {
    '*': delivery(
      'Delivery of an event',
      "What Herald POSTs to a hook's `target_url` for each event it matches: the event as reads return it. Events of registered types are described one type each.",
      'deliverEvent',
      ref('Event'),
    ),
  }
  const names = componentNames(types.map((entry) => entry.type))
  for (const entry of types) {
    const name = names.get(entry.type)!
    const dataName = `EventData.${name}`
    schemas[dataName] = {
      ...embedSchema(entry.schema, `#/components/schemas/${dataName}`),
      ...(entry.description === null ? {} : { description: entry.description }),
    }
    schemas[`Event.${name}`] = {
      allOf: [ref('Event')],
      properties: { type: { const: entry.type }, data: ref(dataName) },
      ...(entry.deprecated ? { deprecated: true } : {}),
    }
    webhooks[entry.type] = {
      ...delivery(
        `Delivery of a ${entry.type} event`,
        `${entry.description ?? ''}${entry.description ? '\n\n' : ''}Events of type \`${entry.type}\`, whose \`data\` follows version ${entry.version} of the registered schema.`,
        `deliver.${name}`,
        ref(`Event.${name}`),
      ),
    }
    if (entry.deprecated) (webhooks[entry.type]!['post'] as Operation)['deprecated'] = true
  }
  return webhooks
}

export interface OpenApiOptions {
  routes: readonly DocumentedRoute[]
  /** The registered event types (the latest version of each is described). */
  catalog: readonly EventTypeVersion[]
  publicUrl: string
}

export function buildOpenApi({ routes, catalog, publicUrl }: OpenApiOptions): Record<string, unknown> {
  const schemas: Record<string, JsonSchema> = structuredClone(components)
  const paths = structuredClone(pathsOf(routes))
  const webhooks = webhooksOf(latestVersions(catalog), schemas)
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://spec.openapis.org/oas/3.1/dialect/base',
    info: {
      title: 'Herald',
      version: HERALD_VERSION,
      summary: 'One event gateway: take an event once, store it durably, deliver it over every protocol.',
      description:
        'Made from the routes Herald serves. Streams (SSE, NDJSON) are GET /v1/topics/{topic}/events with an Accept header; the WebSocket messages are in /asyncapi.json. Errors are RFC 9457 problem+json. Without HERALD_API_KEY (loopback only) no credentials are needed.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: publicUrl }],
    tags: [
      { name: 'Topics', description: 'Publish, read, stream.' },
      { name: 'Webhooks', description: 'Webhooks and REST Hooks, their deliveries.' },
      { name: 'WebSub', description: 'The W3C WebSub hub and its subscriptions.' },
      { name: 'Event types', description: 'The catalog of event types and their JSON Schemas.' },
      { name: 'Administration', description: 'Keys, connections, cluster.' },
      { name: 'Operations', description: 'Probes, metrics, the console, the client, these documents.' },
    ],
    security: [{ bearer: [] }],
    paths,
    webhooks,
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'HERALD_API_KEY, a scoped key (hk_…) or a signed token (JWT).',
        },
        accessToken: {
          type: 'apiKey',
          in: 'query',
          name: 'access_token',
          description: 'The same, for streams only (EventSource cannot set headers).',
        },
      },
    },
  }
}
