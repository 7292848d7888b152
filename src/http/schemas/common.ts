/**
 * The pieces the routes' schemas share: JSON Schemas (2020-12, as OpenAPI 3.1 takes them) of what the
 * API answers, and helpers that write a route's responses. The schemas are documentation: Fastify
 * neither validates requests nor serializes answers with them (see `documentOnlySchemas`), because
 * the handlers check their input themselves, with precise problem+json errors.
 */
import type { FastifyInstance } from 'fastify'

export type JsonSchema = Record<string, unknown>

/** One response of a route, as Fastify's `schema.response` and OpenAPI write it. */
export interface ResponseSchema {
  description: string
  headers?: Record<string, { description: string; schema: JsonSchema }>
  content?: Record<string, { schema: JsonSchema }>
}

/** What each route declares as its Fastify `schema` (the OpenAPI operation is made from it). */
export interface RouteSchema {
  summary: string
  description?: string
  tags: string[]
  operationId: string
  params?: JsonSchema
  querystring?: JsonSchema
  headers?: JsonSchema
  body?: JsonSchema | { content: Record<string, { schema: JsonSchema }> }
  response: Record<string, ResponseSchema>
  /** Left out of the document (the CORS preflight, answered for any path). */
  hide?: boolean
  /**
   * A wildcard route (`/v1/topics/*`) serves several paths: each is documented as the path it is, with
   * its own operation. The route's own fields are then only a fallback.
   */
  'x-paths'?: Record<string, RouteSchema>
}

/**
 * Makes the routes' schemas documentation only: no validator (the handlers validate, with their own
 * errors), and answers serialized by `JSON.stringify`, which is what Fastify does for a route without
 * a response schema (a compiled serializer would drop undeclared properties). Call before any route.
 */
export function documentOnlySchemas(app: FastifyInstance): void {
  app.setValidatorCompiler(() => () => true)
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))
}

export const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` })
const nullable = (type: string, extra: JsonSchema = {}): JsonSchema => ({ type: [type, 'null'], ...extra })
const time = (description?: string): JsonSchema => ({
  type: 'string',
  format: 'date-time',
  ...(description ? { description } : {}),
})
const nullableTime = (description?: string): JsonSchema => ({
  type: ['string', 'null'],
  format: 'date-time',
  ...(description ? { description } : {}),
})

export const TOPIC_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9][A-Za-z0-9._~-]*)*$'

/** The shared schemas: `components.schemas` of /openapi.json (and of /asyncapi.json where they fit). */
export const components: Record<string, JsonSchema> = {
  Problem: {
    type: 'object',
    description:
      'RFC 9457 problem details. `type` is urn:herald:problem:<code>; docs/errors.md lists the codes.',
    required: ['type', 'title', 'status', 'detail'],
    properties: {
      type: { type: 'string' },
      title: { type: 'string' },
      status: { type: 'integer', minimum: 400, maximum: 599 },
      detail: { type: 'string' },
      code: { type: 'string' },
      field: { type: 'string', description: 'The request field, header or parameter at fault.' },
      errors: {
        type: 'array',
        description: 'Each violation of a registered event type schema, by JSON Pointer.',
        items: {
          type: 'object',
          properties: { pointer: { type: 'string' }, message: { type: 'string' } },
        },
      },
    },
  },
  Event: {
    type: 'object',
    description:
      'A stored event: a CloudEvent 1.0 (structured mode, JSON) with the extension attributes `topic` and `seq`.',
    required: ['specversion', 'id', 'source', 'type', 'time', 'topic', 'seq'],
    properties: {
      specversion: { const: '1.0' },
      id: { type: 'string', minLength: 1 },
      source: { type: 'string', minLength: 1 },
      type: { type: 'string', minLength: 1 },
      subject: { type: 'string' },
      time: time(),
      datacontenttype: { type: 'string' },
      dataschema: { type: 'string', format: 'uri' },
      data: { description: 'The payload, as published (any JSON value).' },
      data_base64: { type: 'string', contentEncoding: 'base64' },
      topic: { type: 'string', pattern: TOPIC_PATTERN },
      seq: { type: 'integer', minimum: 1, description: '1, 2, 3… in each topic: no gaps, no reuse.' },
    },
    additionalProperties: { description: 'CloudEvents extension attributes.' },
  },
  EventInput: {
    type: 'object',
    description:
      'An event to publish. With application/json only these attributes; with application/cloudevents+json a structured CloudEvent, whose extension attributes are kept.',
    required: ['type'],
    properties: {
      specversion: { const: '1.0' },
      type: { type: 'string', minLength: 1, maxLength: 256 },
      data: {},
      data_base64: { type: 'string', contentEncoding: 'base64' },
      id: { type: 'string', minLength: 1, maxLength: 256 },
      source: { type: 'string', minLength: 1 },
      subject: { type: 'string' },
      time: time(),
      datacontenttype: { type: 'string' },
      dataschema: { type: 'string', format: 'uri' },
    },
  },
  Gap: {
    type: 'object',
    description:
      'The cursor could not be resumed where it was: events were pruned by retention, or it is past the head.',
    required: ['after', 'reason'],
    properties: {
      topic: { type: 'string' },
      after: { type: 'integer', minimum: 0 },
      first_seq: { type: 'integer', minimum: 1 },
      head_seq: { type: 'integer', minimum: 0 },
      reason: { enum: ['pruned', 'ahead'] },
    },
  },
  Topic: {
    type: 'object',
    required: ['topic', 'head_seq', 'first_seq', 'events', 'created_at', 'retention', 'url'],
    properties: {
      topic: { type: 'string', pattern: TOPIC_PATTERN },
      head_seq: { type: 'integer', minimum: 0 },
      first_seq: { type: 'integer', minimum: 1 },
      events: { type: 'integer', minimum: 0 },
      created_at: nullableTime('Null for a topic with no event yet.'),
      retention: {
        type: 'object',
        required: ['max_age_ms', 'max_events'],
        properties: {
          max_age_ms: nullable('integer'),
          max_events: nullable('integer'),
        },
      },
      url: { type: 'string', format: 'uri', description: 'The WebSub topic URL.' },
      types: {
        enum: ['any', 'registered'],
        description: '"registered": events of types not in the event-type catalog are refused (422).',
      },
    },
  },
  EventType: {
    type: 'object',
    description: 'One version of a registered event type.',
    required: ['type', 'version', 'schema', 'description', 'deprecated', 'created_at', 'url'],
    properties: {
      type: { type: 'string' },
      version: { type: 'integer', minimum: 1 },
      schema: { type: 'object', description: 'The JSON Schema 2020-12 that `data` must satisfy.' },
      description: { type: ['string', 'null'] },
      deprecated: { type: 'boolean' },
      created_at: time(),
      url: {
        type: 'string',
        format: 'uri',
        description: "This version's URL: the `dataschema` of its events.",
      },
    },
  },
  PresenceMember: {
    type: 'object',
    required: ['client', 'since'],
    properties: {
      client: { type: 'string' },
      sub: { type: 'string' },
      info: { description: 'The client JSON given when joining.' },
      since: time(),
    },
  },
  Filter: {
    description:
      'A CloudEvents Subscriptions API filter: one of exact, prefix, suffix (attribute → value), all, any (arrays of filters), not (a filter); a top-level array is `all`. An attribute may be data.<dotted path>.',
    anyOf: [
      {
        type: 'object',
        minProperties: 1,
        maxProperties: 1,
        properties: {
          exact: { type: 'object', additionalProperties: { type: 'string' } },
          prefix: { type: 'object', additionalProperties: { type: 'string' } },
          suffix: { type: 'object', additionalProperties: { type: 'string' } },
          all: { type: 'array', items: { $ref: '#/components/schemas/Filter' } },
          any: { type: 'array', items: { $ref: '#/components/schemas/Filter' } },
          not: { $ref: '#/components/schemas/Filter' },
        },
      },
      { type: 'array', items: { $ref: '#/components/schemas/Filter' } },
    ],
  },
  Hook: {
    type: 'object',
    required: ['id', 'target_url', 'topic', 'event', 'ordered', 'state', 'created_at', 'updated_at'],
    properties: {
      id: { type: 'string' },
      target_url: { type: 'string', format: 'uri' },
      topic: nullable('string'),
      event: nullable('string', { description: 'Event type pattern: `*` matches one segment run.' }),
      filter: {
        anyOf: [{ $ref: '#/components/schemas/Filter' }, { type: 'null' }],
        description: 'Null: every event.',
      },
      secret: { type: 'string', description: 'whsec_…; only in the answers that concern one hook.' },
      previous_secret_until: time('While a rotated secret still signs deliveries.'),
      ordered: { type: 'boolean' },
      max_in_flight: { type: 'integer', minimum: 1 },
      rate_limit: nullable('number'),
      state: { enum: ['active', 'paused', 'disabled'] },
      disabled_reason: nullable('string'),
      failing_since: nullableTime(),
      description: nullable('string'),
      created_at: time(),
      updated_at: time(),
    },
  },
  HookInput: {
    type: 'object',
    description: 'At least one of `topic` and `event` on creation.',
    properties: {
      target_url: { type: 'string', format: 'uri' },
      topic: nullable('string', { pattern: TOPIC_PATTERN }),
      event: nullable('string'),
      filter: {
        anyOf: [{ $ref: '#/components/schemas/Filter' }, { type: 'null' }],
        description: 'Null: every event.',
      },
      secret: { type: 'string', description: 'whsec_…; generated when not given.' },
      rotate_secret: {
        type: 'boolean',
        description: 'PATCH only: a new secret; the old one signs too for a while.',
      },
      verify: { type: 'boolean', description: 'REST Hooks handshake (X-Hook-Secret) before creation.' },
      ordered: { type: 'boolean' },
      max_in_flight: { type: 'integer', minimum: 1 },
      rate_limit: nullable('number', { exclusiveMinimum: 0 }),
      description: nullable('string'),
      state: { enum: ['active', 'paused'] },
    },
  },
  Attempt: {
    type: 'object',
    required: ['id', 'delivery', 'event_id', 'topic', 'seq', 'attempt', 'at', 'status', 'error'],
    properties: {
      id: { type: 'integer' },
      delivery: { type: 'integer' },
      event_id: { type: 'string' },
      topic: { type: 'string' },
      seq: { type: 'integer' },
      attempt: { type: 'integer', minimum: 1 },
      at: time(),
      status: nullable('integer', { description: 'Null when no status line came (see error).' }),
      error: nullable('string'),
      duration_ms: { type: 'number' },
      response: nullable('string', { description: 'The start of the answer body.' }),
    },
  },
  Delivery: {
    type: 'object',
    required: ['id', 'hook_id', 'event_id', 'topic', 'seq', 'state', 'attempts'],
    properties: {
      id: { type: 'integer' },
      hook_id: { type: 'string' },
      event_id: { type: 'string' },
      topic: { type: 'string' },
      seq: { type: 'integer' },
      state: { enum: ['pending', 'delivered', 'failed'] },
      attempts: { type: 'integer', minimum: 0 },
      next_attempt_at: nullableTime(),
      last_status: nullable('integer'),
      last_error: nullable('string'),
      created_at: time(),
      updated_at: time(),
    },
  },
  Scope: {
    type: 'object',
    required: ['actions', 'topics'],
    properties: {
      actions: { type: 'array', minItems: 1, items: { enum: ['publish', 'subscribe', 'admin'] } },
      topics: {
        type: 'array',
        minItems: 1,
        items: { type: 'string', description: 'orders, orders/*, orders/**, *' },
      },
    },
  },
  Key: {
    type: 'object',
    required: ['id', 'name', 'scopes', 'expires_at', 'rate_limit', 'created_at'],
    properties: {
      id: { type: 'string' },
      name: { type: 'string' },
      scopes: { type: 'array', items: { $ref: '#/components/schemas/Scope' } },
      expires_at: nullableTime(),
      rate_limit: nullable('string', { description: 'e.g. 100/s' }),
      created_at: time(),
      created_by: nullable('string'),
      key: { type: 'string', description: 'hk_…: the secret, in the answer to the creation only.' },
    },
  },
  Subscription: {
    type: 'object',
    required: ['id', 'topic', 'callback', 'state'],
    properties: {
      id: { type: 'string' },
      topic: { type: 'string', description: 'The topic URL' },
      herald_topic: nullable('string'),
      callback: { type: 'string' },
      state: { enum: ['active', 'expired'] },
      signed: { type: 'boolean' },
      lease_seconds: nullable('integer'),
      expires_at: nullableTime(),
      failing_since: nullableTime(),
      created_at: time(),
      updated_at: time(),
      attempts: { type: 'array', items: { $ref: '#/components/schemas/Attempt' } },
    },
  },
  Connection: {
    type: 'object',
    required: ['id', 'protocol', 'topics', 'since'],
    properties: {
      id: { type: 'string' },
      protocol: { enum: ['sse', 'ndjson', 'ws'] },
      topics: { type: 'array', items: { type: 'string' } },
      topic_count: { type: 'integer' },
      sub: { type: 'string' },
      actor: nullable('string'),
      remote: nullable('string'),
      since: time(),
    },
  },
}

const PROBLEM_CONTENT = { 'application/problem+json': { schema: ref('Problem') } }

/** A problem+json answer. */
export function problem(description: string): ResponseSchema {
  return { description, content: PROBLEM_CONTENT }
}

/** A JSON answer. */
export function json(
  description: string,
  schema: JsonSchema,
  headers?: ResponseSchema['headers'],
): ResponseSchema {
  return { description, content: { 'application/json': { schema } }, ...(headers ? { headers } : {}) }
}

/** An answer of another media type. */
export function media(
  description: string,
  type: string,
  schema: JsonSchema = { type: 'string' },
): ResponseSchema {
  return { description, content: { [type]: { schema } } }
}

export const noContent: ResponseSchema = { description: 'Done; no body.' }

/** A page: `{<items>:[…], next}` where `next` is the cursor of the next page (null at the end). */
export function page(items: string, item: JsonSchema, next: JsonSchema = nullable('string')): JsonSchema {
  return {
    type: 'object',
    required: [items, 'next'],
    properties: { [items]: { type: 'array', items: item }, next },
  }
}

export const errors = {
  400: problem('The request is not valid (the field at fault is named).'),
  404: problem('Not found.'),
  405: problem('Method not allowed on this path.'),
  406: problem('Not acceptable.'),
  413: problem('The body is over the limit (--body-limit).'),
  415: problem('Unsupported media type.'),
  422: problem('The content is refused (the field at fault is named).'),
  503: problem('Unavailable: draining, or the store is out of reach.'),
} as const

export const limitParam = { type: 'integer', minimum: 1, maximum: 1000, default: 100 }

export function object(properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return { type: 'object', properties, ...(required.length > 0 ? { required } : {}) }
}
