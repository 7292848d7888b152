/**
 * GET /asyncapi.json: AsyncAPI 3.0 of Herald's event-driven side, from a client's point of view: a
 * client sends events (publish) and receives them (SSE, NDJSON, long polls, the WebSocket). The
 * envelope is the same Event schema /openapi.json declares; each registered event type adds a message
 * whose payload embeds its schema as `data`.
 */
import type { EventTypeVersion } from '../../event-types/catalog.ts'
import { type JsonSchema, components as openApiSchemas, TOPIC_PATTERN } from '../schemas/common.ts'
import { componentNames, embedSchema, HERALD_VERSION, latestVersions } from './catalog.ts'

const schema = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` })
const message = (name: string): JsonSchema => ({ $ref: `#/components/messages/${name}` })
const ref = { type: ['string', 'number'], description: 'Echoed from the client message it answers.' }
const topic = { type: 'string', pattern: TOPIC_PATTERN }

/** A WebSocket message: `{"op": <op>, …}`. */
function op(name: string, properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema {
  return {
    type: 'object',
    required: ['op', ...required],
    properties: { op: { const: name }, ref, ...properties },
  }
}

/** The WebSocket protocol (docs/api.md, WebSocket and Presence), one message per op. */
const WS_MESSAGES: Record<string, { summary: string; payload: JsonSchema; from: 'client' | 'server' }> = {
  auth: {
    summary: 'Authenticate, or extend the credentials before they expire.',
    from: 'client',
    payload: op('auth', { token: { type: 'string' } }, ['token']),
  },
  subscribe: {
    summary: 'Follow a topic: its backlog after `after` first, then live.',
    from: 'client',
    payload: op(
      'subscribe',
      {
        topic,
        after: { type: 'integer', minimum: 0 },
        filter: schema('Filter'),
        presence: { type: 'object', properties: { info: {} } },
        presence_events: { type: 'boolean' },
      },
      ['topic'],
    ),
  },
  unsubscribe: {
    summary: 'Stop following a topic.',
    from: 'client',
    payload: op('unsubscribe', { topic }, ['topic']),
  },
  publishOverSocket: {
    summary: 'Publish an event.',
    from: 'client',
    payload: {
      allOf: [schema('EventInput')],
      required: ['op', 'topic', 'type'],
      properties: { op: { const: 'publish' }, ref, topic },
    },
  },
  presenceQuery: {
    summary: "Ask for a topic's members.",
    from: 'client',
    payload: op('presence', { topic }, ['topic']),
  },
  authenticated: { summary: 'The credentials were taken.', from: 'server', payload: op('authenticated', {}) },
  subscribed: {
    summary: 'The subscription is on.',
    from: 'server',
    payload: op('subscribed', { topic }, ['topic']),
  },
  unsubscribed: {
    summary: 'The subscription is off.',
    from: 'server',
    payload: op('unsubscribed', { topic }, ['topic']),
  },
  event: {
    summary: 'An event of a followed topic.',
    from: 'server',
    payload: op('event', { topic, event: schema('Event') }, ['topic', 'event']),
  },
  published: {
    summary: 'The event published over the socket, stored.',
    from: 'server',
    payload: op('published', { event: schema('Event') }, ['event']),
  },
  gap: {
    summary:
      'The subscription could not resume at `after`: delivery goes on from `first_seq` or after `head_seq`.',
    from: 'server',
    payload: {
      allOf: [schema('Gap')],
      required: ['op', 'topic'],
      properties: { op: { const: 'gap' }, topic },
    },
  },
  presence: {
    summary: "A topic's members.",
    from: 'server',
    payload: op('presence', { topic, members: { type: 'array', items: schema('PresenceMember') } }, [
      'topic',
      'members',
    ]),
  },
  join: {
    summary: 'A member joined (to subscribers that asked for presence_events).',
    from: 'server',
    payload: op('join', { topic, member: schema('PresenceMember') }, ['topic', 'member']),
  },
  leave: {
    summary: 'A member left.',
    from: 'server',
    payload: op('leave', { topic, member: schema('PresenceMember') }, ['topic', 'member']),
  },
  error: {
    summary: 'A refused message; the socket stays open.',
    from: 'server',
    payload: op(
      'error',
      {
        status: { type: 'integer' },
        title: { type: 'string' },
        detail: { type: 'string' },
        code: { type: 'string' },
        type: { type: 'string' },
        field: { type: 'string' },
        retry_after: { type: 'number', description: 'Seconds, with a 429 or a 503.' },
      },
      ['status', 'title', 'detail'],
    ),
  },
}

/** The schemas of /openapi.json that messages use, as AsyncAPI schemas (draft-07 based, no `const`-free types lost). */
function sharedSchemas(): Record<string, JsonSchema> {
  const names = ['Event', 'EventInput', 'Gap', 'PresenceMember', 'Filter']
  return Object.fromEntries(names.map((name) => [name, structuredClone(openApiSchemas[name]!)]))
}

const channelRef = (name: string) => ({ $ref: `#/channels/${name}` })
const channelMessage = (channel: string, name: string) => ({ $ref: `#/channels/${channel}/messages/${name}` })

export interface AsyncApiOptions {
  catalog: readonly EventTypeVersion[]
  publicUrl: string
}

export function buildAsyncApi({ catalog, publicUrl }: AsyncApiOptions): Record<string, unknown> {
  const url = new URL(publicUrl)
  const secure = url.protocol === 'https:'
  const host = url.host
  const pathname = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  const schemas = sharedSchemas()
  const messages: Record<string, JsonSchema> = {
    Event: {
      name: 'Event',
      title: 'An event',
      summary: 'A CloudEvent 1.0 with the extension attributes topic and seq, as Herald stores and sends it.',
      contentType: 'application/json',
      payload: schema('Event'),
    },
  }
  const eventMessages: Record<string, JsonSchema> = { Event: message('Event') }

  const types = latestVersions(catalog)
  const names = componentNames(types.map((entry) => entry.type))
  for (const entry of types) {
    const name = names.get(entry.type)!
    const dataName = `EventData.${name}`
    schemas[dataName] = embedSchema(entry.schema, `#/components/schemas/${dataName}`)
    messages[`Event.${name}`] = {
      name: `Event.${name}`,
      title: `A ${entry.type} event`,
      summary: `${entry.description ?? `Events of type ${entry.type}`} (schema version ${entry.version}).`,
      contentType: 'application/json',
      payload: {
        allOf: [schema('Event')],
        properties: { type: { const: entry.type }, data: schema(dataName) },
      },
      ...(entry.deprecated ? { deprecated: true } : {}),
    }
    eventMessages[`Event.${name}`] = message(`Event.${name}`)
  }

  const wsMessages: Record<string, JsonSchema> = {}
  for (const [name, spec] of Object.entries(WS_MESSAGES)) {
    const id = `ws.${name}`
    messages[id] = {
      name: id,
      title: `${spec.from === 'client' ? 'Client' : 'Server'}: ${name}`,
      summary: spec.summary,
      contentType: 'application/json',
      payload: spec.payload,
    }
    wsMessages[name] = message(id)
  }
  const fromClient = Object.keys(WS_MESSAGES).filter((name) => WS_MESSAGES[name]!.from === 'client')
  const fromServer = Object.keys(WS_MESSAGES).filter((name) => WS_MESSAGES[name]!.from === 'server')
  const eventNames = Object.keys(eventMessages)

  const topicParameter = {
    topic: {
      description: 'A topic: segments joined by `/` (`[A-Za-z0-9][A-Za-z0-9._~-]*`), at most 200 characters.',
    },
  }
  const security = [{ $ref: '#/components/securitySchemes/bearer' }]

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Herald',
      version: HERALD_VERSION,
      description:
        "Herald's event-driven interface, described from a client's side: a client sends events to a topic (HTTP publish, or the WebSocket) and receives them (Server-Sent Events, NDJSON, long polls, the WebSocket). Webhook and WebSub deliveries are in /openapi.json (`webhooks`).",
      license: { name: 'Apache-2.0' },
    },
    defaultContentType: 'application/json',
    servers: {
      http: {
        host,
        protocol: secure ? 'https' : 'http',
        ...(pathname ? { pathname } : {}),
        title: 'HTTP',
        description: 'Publish (POST) and polls (GET, long poll with wait=).',
        security,
      },
      sse: {
        host,
        protocol: secure ? 'https' : 'http',
        ...(pathname ? { pathname } : {}),
        title: 'Server-Sent Events and NDJSON over HTTP',
        description:
          'GET with `Accept: text/event-stream` (frames `id: <cursor>`, `data: <event JSON>`) or `Accept: application/x-ndjson`; resume with Last-Event-ID. The key may be sent as ?access_token=.',
        security: [...security, { $ref: '#/components/securitySchemes/accessToken' }],
      },
      ws: {
        host,
        protocol: secure ? 'wss' : 'ws',
        pathname: `${pathname}/v1/ws`,
        title: 'WebSocket',
        description: 'RFC 6455, subprotocol `herald.v1` (optional); JSON text messages with an `op`.',
        security: [...security, { $ref: '#/components/securitySchemes/accessToken' }],
        bindings: { ws: { bindingVersion: '0.1.0' } },
      },
    },
    channels: {
      topicEvents: {
        address: '/v1/topics/{topic}/events',
        title: "A topic's events",
        description:
          'POST publishes (201 means durable); GET reads a page, long polls, or streams (SSE, NDJSON) by Accept.',
        servers: [{ $ref: '#/servers/http' }, { $ref: '#/servers/sse' }],
        parameters: topicParameter,
        messages: eventMessages,
      },
      stream: {
        address: '/v1/stream',
        title: 'Several topics in one stream',
        description: 'GET /v1/stream?topic=a&topic=b: SSE or NDJSON over several topics, one cursor token.',
        servers: [{ $ref: '#/servers/sse' }],
        messages: eventMessages,
      },
      webSocket: {
        address: '/v1/ws',
        title: 'The WebSocket',
        servers: [{ $ref: '#/servers/ws' }],
        messages: wsMessages,
      },
    },
    operations: {
      publish: {
        action: 'send',
        title: 'Publish an event',
        summary:
          'POST /v1/topics/{topic}/events (the request body is an EventInput; the answer the Event stored).',
        channel: channelRef('topicEvents'),
        messages: eventNames.map((name) => channelMessage('topicEvents', name)),
      },
      subscribe: {
        action: 'receive',
        title: "Receive a topic's events",
        summary: 'GET /v1/topics/{topic}/events: a poll, a long poll, an SSE or an NDJSON stream.',
        channel: channelRef('topicEvents'),
        messages: eventNames.map((name) => channelMessage('topicEvents', name)),
      },
      subscribeMany: {
        action: 'receive',
        title: 'Receive the events of several topics',
        channel: channelRef('stream'),
        messages: eventNames.map((name) => channelMessage('stream', name)),
      },
      webSocketSend: {
        action: 'send',
        title: 'Messages a client sends over the WebSocket',
        channel: channelRef('webSocket'),
        messages: fromClient.map((name) => channelMessage('webSocket', name)),
      },
      webSocketReceive: {
        action: 'receive',
        title: 'Messages Herald sends over the WebSocket',
        channel: channelRef('webSocket'),
        messages: fromServer.map((name) => channelMessage('webSocket', name)),
      },
    },
    components: {
      schemas,
      messages,
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'HERALD_API_KEY, a scoped key (hk_…) or a signed token (JWT). Over the WebSocket also {"op":"auth"}.',
        },
        accessToken: {
          type: 'httpApiKey',
          in: 'query',
          name: 'access_token',
          description: 'The same, in the query (streams and the WebSocket).',
        },
      },
    },
  }
}
