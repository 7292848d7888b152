/**
 * Each route's schema, by route: what GET /openapi.json says of it. A route names its schema in one
 * line (`schema: schemas.listHooks`), so that changes to the route files merge easily. Security is
 * not written here: the document derives it from the right each route declares (`config.right`).
 */
import {
  errors,
  json,
  limitParam,
  media,
  noContent,
  object,
  page,
  problem,
  type RouteSchema,
  ref,
  TOPIC_PATTERN,
} from './common.ts'

const idParams = (description: string) => object({ id: { type: 'string', description } }, ['id'])
const hookParams = idParams('The hook id (a WebSub subscription id too, for its deliveries).')
const deliveryParams = object(
  {
    id: { type: 'string', description: 'The hook id.' },
    delivery: { type: 'string', pattern: '^\\d+$', description: 'The delivery id.' },
  },
  ['id', 'delivery'],
)

const topicParam = {
  type: 'string',
  pattern: TOPIC_PATTERN,
  maxLength: 200,
  description:
    'The topic: segments joined by `/`, sent as they are (not percent-encoded): /v1/topics/orders/eu/events is topic orders/eu.',
}
const topicParams = object({ topic: topicParam }, ['topic'])
const filterParam = {
  type: 'string',
  description:
    'A CloudEvents Subscriptions API filter as JSON (see Filter): only matching events are sent; skipped events still advance the cursor.',
  contentMediaType: 'application/json',
}

const eventJson = json('The event.', ref('Event'))
const textPlain = (description: string) => media(description, 'text/plain')

const TOPICS = ['Topics']
const HOOKS = ['Webhooks']
const WEBSUB = ['WebSub']
const OPS = ['Operations']

export const schemas = {
  // --- Operations and pages -----------------------------------------------------------------------
  healthz: {
    summary: 'Liveness',
    tags: OPS,
    operationId: 'healthz',
    response: { 200: json('The process lives.', object({ status: { const: 'ok' } }, ['status'])) },
  },
  readyz: {
    summary: 'Readiness',
    tags: OPS,
    operationId: 'readyz',
    response: {
      200: json('Ready for traffic.', object({ status: { const: 'ready' } }, ['status'])),
      503: problem('Starting, draining, or the store cannot write.'),
    },
  },
  metrics: {
    summary: 'Prometheus metrics',
    description: 'Text exposition format; metric names start with `herald_`.',
    tags: OPS,
    operationId: 'metrics',
    response: { 200: textPlain('The metrics.') },
  },
  console: {
    summary: 'The console',
    description: 'The browser console (or, without a build, a page saying how to make one).',
    tags: OPS,
    operationId: 'console',
    response: { 200: media('The page.', 'text/html') },
  },
  consoleAsset: {
    summary: 'Console files',
    tags: OPS,
    operationId: 'consoleAssetWildcard',
    params: object({ '*': { type: 'string' } }, ['*']),
    response: {},
    'x-paths': {
      '/console/assets/{file}': {
        summary: 'A file of the console',
        description: 'Served only when the console is built; hashed names, cached for good.',
        tags: OPS,
        operationId: 'consoleAsset',
        params: object({ file: { type: 'string' } }, ['file']),
        response: {
          200: media('The file (script, style, image), of its own type.', '*/*'),
          404: errors[404],
        },
      },
    },
  },
  clientBundle: {
    summary: 'The client SDK as an ES module',
    tags: OPS,
    operationId: 'clientBundle',
    response: { 200: media('The module.', 'text/javascript'), 404: problem('The client is not built.') },
  },
  openapi: {
    summary: 'This document',
    description: 'OpenAPI 3.1 of every route, with a `webhooks` entry per registered event type.',
    tags: OPS,
    operationId: 'openapi',
    response: { 200: json('OpenAPI 3.1.', { type: 'object', required: ['openapi'] }), 503: errors[503] },
  },
  asyncapi: {
    summary: 'The AsyncAPI document',
    description: 'AsyncAPI 3.0: servers (HTTP, SSE, WebSocket), channels, operations and messages.',
    tags: OPS,
    operationId: 'asyncapi',
    response: { 200: json('AsyncAPI 3.0.', { type: 'object', required: ['asyncapi'] }), 503: errors[503] },
  },
  preflight: {
    summary: 'CORS preflight',
    tags: OPS,
    operationId: 'preflight',
    hide: true,
    response: { 204: noContent },
  },

  // --- Topics ---------------------------------------------------------------------------------------
  listTopics: {
    summary: 'List topics',
    description: 'The topics these credentials may read, by name.',
    tags: TOPICS,
    operationId: 'listTopics',
    querystring: object({ after: { type: 'string' }, limit: limitParam }),
    response: { 200: json('A page of topics.', page('topics', ref('Topic'))), 400: errors[400] },
  },
  readTopic: {
    summary: 'Topics: read',
    tags: TOPICS,
    operationId: 'readTopic',
    params: object({ '*': { type: 'string' } }, ['*']),
    response: {},
    'x-paths': {
      '/v1/topics/{topic}': {
        summary: "A topic's metadata",
        description:
          'With WebSub discovery: `Link: <hub>; rel="hub", <topic URL>; rel="self"`. A topic with no event is not an error.',
        tags: TOPICS,
        operationId: 'getTopic',
        params: topicParams,
        response: {
          200: json('The topic.', ref('Topic'), {
            Link: { description: 'The WebSub hub and the topic URL.', schema: { type: 'string' } },
          }),
          400: errors[400],
        },
      },
      '/v1/topics/{topic}/events': {
        summary: 'Read events: poll, long poll, SSE or NDJSON',
        description:
          'A page of events after `after` (JSON); held until one exists with `wait` or `Prefer: wait=`. With `Accept: text/event-stream` a Server-Sent Events stream, with `Accept: application/x-ndjson` an NDJSON stream (these two take the key as `?access_token=` too, and resume with `Last-Event-ID` or `last_event_id`).',
        tags: TOPICS,
        operationId: 'readEvents',
        params: topicParams,
        querystring: object({
          after: { type: 'integer', minimum: 0, default: 0, description: 'The seq to read after.' },
          limit: { ...limitParam, description: 'Events per page.' },
          wait: {
            type: 'number',
            minimum: 0,
            maximum: 60,
            description: 'Long poll: seconds to wait for an event.',
          },
          last_event_id: { type: 'string', description: 'Streams: the cursor to resume after.' },
          named: { type: 'boolean', description: 'SSE: an `event: <type>` line per event.' },
          filter: filterParam,
          access_token: { type: 'string', description: 'Streams only: the key or token.' },
        }),
        headers: object({
          accept: { type: 'string', description: 'text/event-stream or application/x-ndjson for a stream.' },
          prefer: { type: 'string', description: 'wait=<seconds> (RFC 7240): long poll.' },
          'last-event-id': { type: 'string', description: 'Streams: resume after this cursor.' },
        }),
        response: {
          200: {
            description: 'A page of events, or a stream.',
            content: {
              'application/json': {
                schema: object(
                  {
                    events: { type: 'array', items: ref('Event') },
                    next: {
                      type: 'integer',
                      minimum: 0,
                      description: 'The last seq returned, else `after`.',
                    },
                    gap: ref('Gap'),
                  },
                  ['events', 'next'],
                ),
              },
              'text/event-stream': {
                schema: {
                  type: 'string',
                  description: '`id: <seq>` and `data: <event JSON>` frames; `event: gap` signals.',
                },
              },
              'application/x-ndjson': {
                schema: {
                  type: 'string',
                  description: 'One event JSON per line; a gap line is `{"gap":…}`.',
                },
              },
            },
          },
          400: errors[400],
          503: problem('Draining, or past --max-connections (Retry-After).'),
        },
      },
      '/v1/topics/{topic}/events/{seq}': {
        summary: 'One event',
        tags: TOPICS,
        operationId: 'getEvent',
        params: object(
          {
            topic: topicParam,
            seq: { type: 'integer', minimum: 1, description: 'Its position in the topic.' },
          },
          ['topic', 'seq'],
        ),
        response: { 200: eventJson, 400: errors[400], 404: problem('Never published, or pruned.') },
      },
      '/v1/topics/{topic}/presence': {
        summary: "A topic's presence members",
        tags: TOPICS,
        operationId: 'getPresence',
        params: topicParams,
        response: {
          200: json(
            'The members, in the order they joined.',
            object({ members: { type: 'array', items: ref('PresenceMember') } }, ['members']),
          ),
          400: errors[400],
        },
      },
    },
  },
  writeTopic: {
    summary: 'Topics: publish',
    tags: TOPICS,
    operationId: 'writeTopic',
    params: object({ '*': { type: 'string' } }, ['*']),
    response: {},
    'x-paths': {
      '/v1/topics/{topic}/events': {
        summary: 'Publish events',
        description:
          'One event (201 with it, `Location` its URL) or an array published atomically (201 with the array). Also CloudEvents structured (`application/cloudevents+json`, `application/cloudevents-batch+json`) and binary mode (`ce-*` headers, body = data). A repeat (`Idempotency-Key`, or a client `source`+`id` already stored) answers the original with 200 and stores nothing. 201 means durable.',
        tags: TOPICS,
        operationId: 'publishEvents',
        params: topicParams,
        headers: object({
          'idempotency-key': { type: 'string', minLength: 1, maxLength: 255 },
          'ce-type': {
            type: 'string',
            description: 'Binary mode: the event type (and the other ce-* attributes).',
          },
        }),
        body: {
          content: {
            'application/json': {
              schema: {
                oneOf: [ref('EventInput'), { type: 'array', items: ref('EventInput'), maxItems: 1000 }],
              },
            },
            'application/cloudevents+json': { schema: ref('EventInput') },
            'application/cloudevents-batch+json': { schema: { type: 'array', items: ref('EventInput') } },
          },
        },
        response: {
          200: json('A repeat: the events stored before.', {
            oneOf: [ref('Event'), { type: 'array', items: ref('Event') }],
          }),
          201: json(
            'Stored durably.',
            { oneOf: [ref('Event'), { type: 'array', items: ref('Event') }] },
            { Location: { description: "The event's URL (one event).", schema: { type: 'string' } } },
          ),
          400: errors[400],
          405: errors[405],
          413: errors[413],
          415: errors[415],
          422: errors[422],
          503: errors[503],
        },
      },
    },
  },
  configureTopic: {
    summary: 'Topics: configure',
    tags: TOPICS,
    operationId: 'configureTopicWildcard',
    params: object({ '*': { type: 'string' } }, ['*']),
    response: {},
    'x-paths': {
      '/v1/topics/{topic}': {
        summary: "Set a topic's retention",
        tags: TOPICS,
        operationId: 'configureTopic',
        params: topicParams,
        body: object(
          {
            retention: object({
              max_age: {
                type: ['string', 'null'],
                description: 'A duration: 90s, 30m, 12h, 7d (at least 1s).',
              },
              max_events: { type: ['integer', 'null'], minimum: 1 },
            }),
          },
          ['retention'],
        ),
        response: { 200: json('The topic.', ref('Topic')), 400: errors[400], 405: errors[405] },
      },
    },
  },
  stream: {
    summary: 'Stream several topics (SSE or NDJSON)',
    description:
      'One stream over several topics; its cursor is an opaque token holding every position. Resume with `Last-Event-ID` or `last_event_id`.',
    tags: TOPICS,
    operationId: 'streamTopics',
    querystring: object(
      {
        topic: { type: 'array', items: { type: 'string', pattern: TOPIC_PATTERN }, minItems: 1 },
        last_event_id: { type: 'string' },
        named: { type: 'boolean' },
        filter: filterParam,
        access_token: { type: 'string' },
      },
      ['topic'],
    ),
    response: {
      200: {
        description: 'The stream.',
        content: {
          'text/event-stream': { schema: { type: 'string' } },
          'application/x-ndjson': { schema: { type: 'string' } },
        },
      },
      400: errors[400],
      406: problem('Accept asks for neither stream.'),
      503: errors[503],
    },
  },

  // --- Webhooks -----------------------------------------------------------------------------------
  createHook: {
    summary: 'Create a webhook',
    tags: HOOKS,
    operationId: 'createHook',
    body: { ...ref('HookInput'), required: ['target_url'] },
    response: {
      201: json('The hook, with its secret.', ref('Hook')),
      400: errors[400],
      422: problem('Target refused (SSRF guard), invalid secret, or the REST Hooks handshake failed.'),
    },
  },
  listHooks: {
    summary: 'List webhooks',
    tags: HOOKS,
    operationId: 'listHooks',
    querystring: object({ after: { type: 'string' }, limit: limitParam }),
    response: {
      200: json('A page of hooks (without secrets).', page('hooks', ref('Hook'))),
      400: errors[400],
    },
  },
  getHook: {
    summary: 'One webhook',
    tags: HOOKS,
    operationId: 'getHook',
    params: hookParams,
    response: { 200: json('The hook.', ref('Hook')), 404: errors[404] },
  },
  updateHook: {
    summary: 'Change a webhook',
    description: 'Any field of the creation, `state` (active, paused) and `rotate_secret`.',
    tags: HOOKS,
    operationId: 'updateHook',
    params: hookParams,
    body: ref('HookInput'),
    response: { 200: json('The hook.', ref('Hook')), 400: errors[400], 404: errors[404], 422: errors[422] },
  },
  testHook: {
    summary: 'Send a test event to a webhook now',
    tags: HOOKS,
    operationId: 'testHook',
    params: hookParams,
    response: {
      200: json(
        'What the target answered.',
        object(
          {
            event_id: { type: 'string' },
            status: { type: ['integer', 'null'] },
            duration_ms: { type: 'number' },
            response: { type: ['string', 'null'] },
            error: { type: ['string', 'null'] },
          },
          ['event_id', 'status', 'duration_ms', 'response', 'error'],
        ),
      ),
      404: errors[404],
    },
  },
  deleteHook: {
    summary: 'Delete a webhook',
    tags: HOOKS,
    operationId: 'deleteHook',
    params: hookParams,
    response: { 204: noContent, 404: errors[404] },
  },
  listAttempts: {
    summary: "A hook's attempts log",
    tags: HOOKS,
    operationId: 'listAttempts',
    params: hookParams,
    querystring: object({
      limit: limitParam,
      before: { type: 'integer', minimum: 1 },
      delivery: { type: 'integer', minimum: 1 },
      event: { type: 'string' },
    }),
    response: {
      200: json('Attempts, newest first.', page('attempts', ref('Attempt'), { type: ['integer', 'null'] })),
      400: errors[400],
      404: errors[404],
    },
  },
  getDelivery: {
    summary: 'One delivery and its attempts',
    tags: HOOKS,
    operationId: 'getDelivery',
    params: deliveryParams,
    response: {
      200: json('The delivery.', {
        allOf: [ref('Delivery')],
        properties: { attempt_log: { type: 'array', items: ref('Attempt') } },
        required: ['attempt_log'],
      }),
      404: errors[404],
    },
  },
  retryDelivery: {
    summary: 'Deliver one again',
    tags: HOOKS,
    operationId: 'retryDelivery',
    params: deliveryParams,
    response: { 202: json('Queued.', ref('Delivery')), 404: errors[404] },
  },
  replayHook: {
    summary: 'Redeliver a range of events',
    tags: HOOKS,
    operationId: 'replayHook',
    params: hookParams,
    body: object({
      after: { type: 'integer', minimum: 0, description: 'A seq (or give since).' },
      since: { type: 'string', format: 'date-time' },
      topic: { type: 'string', pattern: TOPIC_PATTERN },
      limit: { type: 'integer', minimum: 1, maximum: 10000 },
    }),
    response: {
      202: json('Queued.', object({ queued: { type: 'integer', minimum: 0 } }, ['queued'])),
      400: errors[400],
      404: errors[404],
    },
  },
  listDeliveries: {
    summary: 'Deliveries across hooks',
    tags: HOOKS,
    operationId: 'listDeliveries',
    querystring: object({
      state: { enum: ['pending', 'delivered', 'failed'] },
      hook: { type: 'string' },
      topic: { type: 'string', pattern: TOPIC_PATTERN },
      since: { type: 'string', format: 'date-time' },
      until: { type: 'string', format: 'date-time' },
      before: { type: 'integer', minimum: 1 },
      limit: limitParam,
    }),
    response: {
      200: json(
        'Deliveries, newest first.',
        page('deliveries', ref('Delivery'), { type: ['integer', 'null'] }),
      ),
      400: errors[400],
    },
  },
  retryDeliveries: {
    summary: 'Retry the failed deliveries that match',
    tags: HOOKS,
    operationId: 'retryDeliveries',
    body: object(
      {
        state: { const: 'failed' },
        since: { type: 'string', format: 'date-time' },
        hook: { type: 'string' },
        topic: { type: 'string' },
        limit: { type: 'integer', minimum: 1, maximum: 10000 },
      },
      ['state'],
    ),
    response: {
      202: json(
        'Queued.',
        object({ queued: { type: 'integer' }, more: { type: 'boolean' } }, ['queued', 'more']),
      ),
      400: errors[400],
    },
  },

  // --- WebSub ---------------------------------------------------------------------------------------
  hub: {
    summary: 'The WebSub hub',
    description:
      'W3C WebSub: hub.mode=subscribe|unsubscribe|publish, hub.topic, hub.callback, hub.lease_seconds, hub.secret. Answers are plain text, errors included.',
    tags: WEBSUB,
    operationId: 'websubHub',
    body: {
      content: {
        'application/x-www-form-urlencoded': {
          schema: object(
            {
              'hub.mode': { enum: ['subscribe', 'unsubscribe', 'publish'] },
              'hub.topic': { type: 'string' },
              'hub.callback': { type: 'string' },
              'hub.lease_seconds': { type: 'integer' },
              'hub.secret': { type: 'string', maxLength: 199 },
              'hub.url': { type: 'string' },
            },
            ['hub.mode'],
          ),
        },
      },
    },
    response: {
      202: textPlain('Accepted: verification of intent follows (or the publish is taken).'),
      400: textPlain('The request is not valid.'),
      // The hub's refusals are plain text, the access check's included.
      401: textPlain('No key, or not a valid one (unless --websub-public).'),
      403: textPlain('The credentials do not hold the "admin" right.'),
      429: textPlain('Over the request budget (Retry-After).'),
      500: textPlain('The hub failed; the error has been logged.'),
      413: textPlain('The body is over the limit.'),
      415: textPlain('Not form-encoded.'),
      503: textPlain('Unavailable (Retry-After).'),
    },
  },
  hubPage: {
    summary: 'The hub, read with GET',
    tags: WEBSUB,
    operationId: 'websubHubGet',
    response: { 405: textPlain('A hub is POSTed to (Allow: POST).') },
  },
  listSubscriptions: {
    summary: 'WebSub subscriptions',
    tags: WEBSUB,
    operationId: 'listSubscriptions',
    querystring: object({ topic: { type: 'string' }, after: { type: 'string' }, limit: limitParam }),
    response: { 200: json('A page.', page('subscriptions', ref('Subscription'))), 400: errors[400] },
  },
  listVerifications: {
    summary: 'WebSub verifications of intent',
    tags: WEBSUB,
    operationId: 'listVerifications',
    querystring: object({ topic: { type: 'string' }, limit: limitParam }),
    response: {
      200: json(
        'Newest first.',
        object(
          {
            verifications: {
              type: 'array',
              items: object({
                id: { type: 'integer' },
                mode: { type: 'string' },
                topic_url: { type: 'string' },
                callback: { type: 'string' },
                state: { type: 'string' },
                error: { type: ['string', 'null'] },
                requested_at: { type: ['string', 'null'], format: 'date-time' },
                completed_at: { type: ['string', 'null'], format: 'date-time' },
              }),
            },
          },
          ['verifications'],
        ),
      ),
      400: errors[400],
    },
  },
  getSubscription: {
    summary: 'One WebSub subscription',
    tags: WEBSUB,
    operationId: 'getSubscription',
    params: idParams('The subscription id.'),
    response: { 200: json('With its latest attempts.', ref('Subscription')), 404: errors[404] },
  },
  deleteSubscription: {
    summary: 'Delete a WebSub subscription',
    tags: WEBSUB,
    operationId: 'deleteSubscription',
    params: idParams('The subscription id.'),
    response: { 204: noContent, 404: errors[404] },
  },

  // --- Event types ----------------------------------------------------------------------------------
  registerEventType: {
    summary: 'Register an event type (a new version when the schema changes)',
    tags: ['Event types'],
    operationId: 'registerEventType',
    params: object({ type: { type: 'string' } }, ['type']),
    body: object(
      {
        schema: { type: ['object', 'boolean'], description: 'A JSON Schema 2020-12 for `data`.' },
        description: { type: ['string', 'null'] },
        deprecated: { type: 'boolean' },
      },
      ['schema'],
    ),
    response: {
      200: json('Updated (a new version when the schema changed, with a compatibility report).', {
        allOf: [ref('EventType')],
        properties: {
          compatibility: object(
            {
              backward: { enum: ['compatible', 'breaking', 'unknown'] },
              findings: { type: 'array', items: { type: 'object' } },
            },
            ['backward', 'findings'],
          ),
        },
      }),
      201: json('Registered.', ref('EventType')),
      400: errors[400],
      422: errors[422],
    },
  },
  listEventTypes: {
    summary: 'List event types',
    tags: ['Event types'],
    operationId: 'listEventTypes',
    querystring: object({ after: { type: 'string' }, limit: limitParam }),
    response: {
      200: json('The latest version of each.', page('event_types', ref('EventType'))),
      400: errors[400],
    },
  },
  getEventType: {
    summary: 'One event type, and its versions',
    tags: ['Event types'],
    operationId: 'getEventType',
    params: object({ type: { type: 'string' } }, ['type']),
    response: {
      200: json('Its latest version, and the list of all.', {
        allOf: [ref('EventType')],
        properties: {
          versions: {
            type: 'array',
            items: object(
              {
                version: { type: 'integer' },
                url: { type: 'string', format: 'uri' },
                created_at: { type: 'string', format: 'date-time' },
              },
              ['version', 'url', 'created_at'],
            ),
          },
        },
        required: ['versions'],
      }),
      400: errors[400],
      404: errors[404],
    },
  },
  getEventTypeVersion: {
    summary: 'One version of an event type (its URL is the dataschema of its events)',
    tags: ['Event types'],
    operationId: 'getEventTypeVersion',
    params: object({ type: { type: 'string' }, version: { type: 'integer', minimum: 1 } }, [
      'type',
      'version',
    ]),
    response: {
      200: {
        description: 'The version; with `Accept: application/schema+json`, the schema itself.',
        content: {
          'application/json': { schema: ref('EventType') },
          'application/schema+json': { schema: { type: ['object', 'boolean'] } },
        },
      },
      400: errors[400],
      404: errors[404],
    },
  },

  // --- Administration -------------------------------------------------------------------------------
  cluster: {
    summary: 'The cluster',
    tags: ['Administration'],
    operationId: 'getCluster',
    response: {
      200: json(
        'Store, bus and nodes.',
        object(
          {
            store: { enum: ['sqlite', 'postgres'] },
            bus: { enum: ['local', 'redis', 'nats'] },
            nodes: {
              type: 'array',
              items: object(
                {
                  id: { type: 'string' },
                  started_at: { type: 'string', format: 'date-time' },
                  heartbeat_at: { type: 'string', format: 'date-time' },
                  leader: { type: 'boolean' },
                },
                ['id', 'started_at', 'heartbeat_at', 'leader'],
              ),
            },
          },
          ['store', 'bus', 'nodes'],
        ),
      ),
    },
  },
  createKey: {
    summary: 'Create a scoped key',
    tags: ['Administration'],
    operationId: 'createKey',
    body: object(
      {
        name: { type: 'string', minLength: 1 },
        scopes: { type: 'array', minItems: 1, items: ref('Scope') },
        expires_at: { type: ['string', 'null'], format: 'date-time' },
        rate_limit: { type: ['string', 'null'], description: 'e.g. 100/s' },
      },
      ['name', 'scopes'],
    ),
    response: {
      201: json('The key, with its secret `key` shown this once.', {
        allOf: [ref('Key')],
        required: ['key'],
      }),
      400: errors[400],
    },
  },
  listKeys: {
    summary: 'List scoped keys',
    tags: ['Administration'],
    operationId: 'listKeys',
    querystring: object({ after: { type: 'string' }, limit: limitParam }),
    response: { 200: json('A page (never the secrets).', page('keys', ref('Key'))), 400: errors[400] },
  },
  getKey: {
    summary: 'One scoped key',
    tags: ['Administration'],
    operationId: 'getKey',
    params: idParams('The key id.'),
    response: { 200: json('The key (never its secret).', ref('Key')), 404: errors[404] },
  },
  deleteKey: {
    summary: 'Revoke a scoped key',
    tags: ['Administration'],
    operationId: 'deleteKey',
    params: idParams('The key id.'),
    response: { 204: noContent, 404: errors[404] },
  },
  listConnections: {
    summary: "This node's open streams and sockets",
    tags: ['Administration'],
    operationId: 'listConnections',
    querystring: object({
      protocol: { enum: ['sse', 'ndjson', 'ws'] },
      after: { type: 'string' },
      limit: limitParam,
    }),
    response: {
      200: json(
        'Oldest first.',
        object(
          {
            node: { type: 'string' },
            connections: { type: 'array', items: ref('Connection') },
            next: { type: ['string', 'null'] },
          },
          ['node', 'connections', 'next'],
        ),
      ),
      400: errors[400],
    },
  },
  closeConnection: {
    summary: 'Close a connection of this node',
    tags: ['Administration'],
    operationId: 'closeConnection',
    params: idParams('The connection id.'),
    response: { 204: noContent, 404: errors[404] },
  },
} satisfies Record<string, RouteSchema>
