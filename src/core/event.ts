import { isUtf8 } from 'node:buffer'
import { randomFillSync } from 'node:crypto'
import { errors } from './errors.ts'

/** CloudEvents 1.0 attributes as Herald stores them (the extensions `topic` and `seq` are added by the store). */
export interface CloudEvent {
  specversion: '1.0'
  id: string
  source: string
  type: string
  subject?: string
  time: string
  datacontenttype?: string
  dataschema?: string
  data?: unknown
  data_base64?: string
  [extension: string]: unknown
}

/** What a publisher supplied for one event, validated; id, source and time may still be missing. */
export interface EventInput {
  id?: string
  source?: string
  type: string
  subject?: string
  time?: string
  datacontenttype?: string
  dataschema?: string
  data?: unknown
  data_base64?: string
  extensions?: Record<string, string | number | boolean>
}

/** An event ready for the store: everything but the position the store assigns. */
export interface NewEvent {
  id: string
  /** The CloudEvent's `source`, which with `id` identifies the event. */
  source: string
  /**
   * The id came from the client, so an earlier event in the topic with this `source` and `id` makes
   * this one a repeat. Generated ids are never deduplicated.
   */
  clientId: boolean
  /** The CloudEvent's `type`, which webhook subscriptions filter on. */
  type: string
  /** The CloudEvent serialized once, without `topic` and `seq` (see `withPosition`). */
  body: string
}

/**
 * A stored event: its position and its JSON, serialized once and shared by every reader. Its id and
 * other attributes are in the JSON: no reader needs them apart, and a read that does not fetch them
 * costs less per event (a catch-up is a read of every event).
 */
export interface StoredEvent {
  topic: string
  seq: number
  json: string
}

/** The events' JSON in string length: what the stores' and the log's byte budgets count. */
export function jsonBytes(events: readonly StoredEvent[]): number {
  let bytes = 0
  for (const event of events) bytes += event.json.length
  return bytes
}

const MAX_ID_LENGTH = 256
/** `datacontenttype`, whether an attribute or, in binary mode, the Content-Type header. */
const MAX_MEDIA_TYPE_LENGTH = 256
/**
 * Objects and arrays nest at most this deep in an event's `data` (`data` itself, when it is one, is
 * level 1). Deeper data would make serializing the event overflow the stack (JSON.stringify recurses).
 */
export const MAX_DATA_DEPTH = 100
/**
 * Events in one batch at most. A batch is validated, serialized and stored in one turn of the event
 * loop; small events within the body limit could otherwise number in the tens of thousands.
 */
export const MAX_BATCH_EVENTS = 1000
const MAX_ATTRIBUTE_LENGTH = 2048
/** CloudEvents extension attribute names: lowercase letters and digits, 20 characters at most (advised). */
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/
/** Attributes set by Herald, never by a publisher. */
const RESERVED = new Set(['topic', 'seq'])
const CORE_ATTRIBUTES = new Set([
  'specversion',
  'id',
  'source',
  'type',
  'subject',
  'time',
  'datacontenttype',
  'dataschema',
  'data',
  'data_base64',
])
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/
/** RFC 3339 date-time, as CloudEvents requires for `time`. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringAttribute(
  object: Record<string, unknown>,
  name: string,
  path: string,
  maxLength = MAX_ATTRIBUTE_LENGTH,
): string | undefined {
  const value = object[name]
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0) {
    throw errors.invalidEvent(`"${name}" must be a non-empty string.`, path + name)
  }
  if (value.length > maxLength) {
    throw errors.invalidEvent(`"${name}" has at most ${maxLength} characters.`, path + name)
  }
  assertWellFormed(value, name, path + name)
  return value
}

/**
 * CloudEvents Strings may not hold a lone surrogate (JSON `"\ud800"`): it is no Unicode character,
 * and stored as UTF-8 it would become U+FFFD, so that ids `"\ud800"`, `"\udfff"` and `"\ufffd"` would
 * be one id and the later events dropped as repeats of the first. `data` is exempt: it is stored as
 * JSON text, where the escape keeps it as sent.
 */
function assertWellFormed(value: string, name: string, field: string): void {
  if (!value.isWellFormed()) {
    throw errors.invalidEvent(
      `"${name}" is not well-formed Unicode: it holds a lone surrogate (such as \\ud800), which CloudEvents does not allow in a String.`,
      field,
    )
  }
}

/**
 * Validates one event given as a JSON object. `structured` is CloudEvents structured mode, which may
 * carry extension attributes; the plain mode (`application/json`) takes only the known attributes, so
 * that a misspelt field is an error rather than a silently stored extension.
 */
export function parseEventObject(value: unknown, structured: boolean, path = ''): EventInput {
  if (!isPlainObject(value)) {
    throw errors.invalidEvent('An event must be a JSON object.', path === '' ? undefined : path.slice(0, -1))
  }
  const specversion = value['specversion']
  if (specversion !== undefined && specversion !== '1.0') {
    throw errors.invalidEvent('Only CloudEvents "specversion": "1.0" is supported.', path + 'specversion')
  }
  if (structured && specversion === undefined) {
    throw errors.invalidEvent('A structured CloudEvent needs "specversion": "1.0".', path + 'specversion')
  }
  const type = stringAttribute(value, 'type', path, 256)
  if (type === undefined) throw errors.invalidEvent('"type" is required.', path + 'type')
  // The type becomes an SSE `event:` line (?named=true), where a line break would forge fields.
  if (CONTROL_CHARACTERS.test(type)) {
    throw errors.invalidEvent('"type" may not contain control characters.', path + 'type')
  }
  const input: EventInput = { type }
  const id = stringAttribute(value, 'id', path, MAX_ID_LENGTH)
  if (id !== undefined) input.id = id
  const source = stringAttribute(value, 'source', path)
  if (source !== undefined) input.source = source
  const subject = stringAttribute(value, 'subject', path)
  if (subject !== undefined) input.subject = subject
  const time = stringAttribute(value, 'time', path, 64)
  if (time !== undefined) input.time = validateTime(time, path + 'time')
  const datacontenttype = stringAttribute(value, 'datacontenttype', path, MAX_MEDIA_TYPE_LENGTH)
  if (datacontenttype !== undefined) input.datacontenttype = datacontenttype
  const dataschema = stringAttribute(value, 'dataschema', path)
  if (dataschema !== undefined) input.dataschema = dataschema
  if ('data' in value && 'data_base64' in value) {
    throw errors.invalidEvent('An event has "data" or "data_base64", not both.', path + 'data_base64')
  }
  if ('data' in value) input.data = checkData(value['data'], path + 'data')
  const dataBase64 = value['data_base64']
  if (dataBase64 !== undefined) {
    if (typeof dataBase64 !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(dataBase64)) {
      throw errors.invalidEvent('"data_base64" must be a base64 string.', path + 'data_base64')
    }
    input.data_base64 = dataBase64
  }
  for (const [name, attribute] of Object.entries(value)) {
    if (CORE_ATTRIBUTES.has(name)) continue
    if (RESERVED.has(name)) {
      throw errors.invalidEvent(`"${name}" is assigned by Herald and cannot be published.`, path + name)
    }
    if (!structured) {
      throw errors.invalidEvent(
        `Unknown field "${name}". Publish extension attributes as a CloudEvent (application/cloudevents+json).`,
        path + name,
      )
    }
    if (!EXTENSION_NAME.test(name)) {
      throw errors.invalidEvent(
        `"${name}" is not a CloudEvents attribute name (lowercase letters and digits, at most 20).`,
        path + name,
      )
    }
    if (typeof attribute !== 'string' && typeof attribute !== 'number' && typeof attribute !== 'boolean') {
      throw errors.invalidEvent(`Extension "${name}" must be a string, number or boolean.`, path + name)
    }
    if (typeof attribute === 'string') assertWellFormed(attribute, name, path + name)
    if (typeof attribute === 'number' && !Number.isFinite(attribute)) {
      throw errors.invalidEvent(
        `Extension "${name}" is a number too large for a double (such as 1e400), which JSON would store as null.`,
        path + name,
      )
    }
    input.extensions ??= {}
    input.extensions[name] = attribute
  }
  return input
}

/** One object or array inside `data`, while it is walked, and where it sits (for the error). */
interface DataFrame {
  value: object
  depth: number
  parent: DataFrame | undefined
  key: string
}

/**
 * `data`, once its nesting is known to be within MAX_DATA_DEPTH and its numbers finite. The walk keeps
 * its own stack, so that no depth of input can overflow the call stack while checking it.
 */
function checkData(data: unknown, field: string): unknown {
  if (typeof data === 'number' && !Number.isFinite(data)) throw nonFiniteNumber(field, undefined, '')
  if (typeof data !== 'object' || data === null) return data
  const pending: DataFrame[] = [{ value: data, depth: 1, parent: undefined, key: '' }]
  for (let frame = pending.pop(); frame !== undefined; frame = pending.pop()) {
    const container = frame.value as Record<string, unknown>
    const keys = Array.isArray(container) ? undefined : Object.keys(container)
    const length = keys === undefined ? (container as unknown as unknown[]).length : keys.length
    for (let i = 0; i < length; i++) {
      const key = keys === undefined ? String(i) : keys[i]!
      const child = container[key]
      if (typeof child === 'number') {
        if (!Number.isFinite(child)) throw nonFiniteNumber(field, frame, key)
        continue
      }
      if (typeof child !== 'object' || child === null) continue
      if (frame.depth === MAX_DATA_DEPTH) {
        throw errors.invalidEvent(
          `"data" nests objects and arrays more than ${MAX_DATA_DEPTH} levels deep.`,
          field,
        )
      }
      pending.push({ value: child, depth: frame.depth + 1, parent: frame, key })
    }
  }
  return data
}

/**
 * A number JSON.parse read as ±Infinity (1e400, -1e400…): serialized, it would become `null`, so it is
 * refused rather than changed. The detail says where, as a JSON Pointer into `data` (RFC 6901).
 */
function nonFiniteNumber(field: string, frame: DataFrame | undefined, key: string) {
  const segments: string[] = []
  for (let at: DataFrame | undefined = frame; at?.parent !== undefined; at = at.parent) segments.push(at.key)
  segments.reverse()
  if (frame !== undefined) segments.push(key)
  const pointer = segments
    .map((segment) => `/${segment.replaceAll('~', '~0').replaceAll('/', '~1')}`)
    .join('')
  const where = pointer === '' ? '' : ` at ${pointer.length > 200 ? `${pointer.slice(0, 200)}…` : pointer}`
  return errors.invalidEvent(
    `"data" holds a number too large for a double${where} (such as 1e400), which JSON would store as null. Send it as a string.`,
    field,
  )
}

function validateTime(time: string, field: string): string {
  if (!RFC3339.test(time) || Number.isNaN(Date.parse(time))) {
    throw errors.invalidEvent('"time" must be an RFC 3339 timestamp.', field)
  }
  return time
}

/** Validates a JSON body: one event, or an array of them (a batch, stored atomically). */
export function parseEventBody(body: unknown, structured: boolean): { inputs: EventInput[]; batch: boolean } {
  if (Array.isArray(body)) {
    if (body.length === 0) throw errors.invalidEvent('A batch holds at least one event.')
    if (body.length > MAX_BATCH_EVENTS) {
      throw errors.payloadTooLarge(
        `A batch holds at most ${MAX_BATCH_EVENTS} events; this one has ${body.length}: split it.`,
      )
    }
    return {
      inputs: body.map((item, index) => parseEventObject(item, structured, `[${index}].`)),
      batch: true,
    }
  }
  return { inputs: [parseEventObject(body, structured)], batch: false }
}

/**
 * CloudEvents HTTP binary mode: attributes in `ce-*` headers, the body is the data in its own
 * media type. Header values are percent-decoded as the HTTP binding requires.
 */
export function parseBinaryEvent(
  headers: Record<string, string | string[] | undefined>,
  body: unknown,
  contentType: string | undefined,
): EventInput {
  const attributes: Record<string, unknown> = {}
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith('ce-') || raw === undefined) continue
    const text = Array.isArray(raw) ? raw.join(',') : raw
    let decoded: string
    try {
      decoded = decodeURIComponent(text)
    } catch {
      throw errors.invalidEvent(`Header "${name}" is not validly percent-encoded.`, name)
    }
    attributes[name.slice(3)] = decoded
  }
  if (attributes['specversion'] === undefined) attributes['specversion'] = '1.0'
  for (const name of ['data', 'data_base64', 'datacontenttype']) {
    if (name in attributes)
      throw errors.invalidEvent(`"ce-${name}" is not a binary-mode header.`, `ce-${name}`)
  }
  const input = parseEventObject(attributes, true)
  if (contentType) {
    if (contentType.length > MAX_MEDIA_TYPE_LENGTH) {
      throw errors.invalidEvent(
        `The Content-Type, stored as "datacontenttype", has at most ${MAX_MEDIA_TYPE_LENGTH} characters.`,
        'Content-Type',
      )
    }
    input.datacontenttype = contentType
  }
  if (body === undefined || body === null || (Buffer.isBuffer(body) && body.length === 0)) return input
  if (!Buffer.isBuffer(body)) {
    // Already parsed JSON: the body parser took it as UTF-8 (its charset checked there).
    input.data = checkData(body, 'data')
  } else if (contentType && isJsonMediaType(contentType)) {
    assertUtf8Json(contentType)
    input.data = checkData(parseJsonBytes(body), 'data')
  } else if (contentType && isTextMediaType(contentType) && isUtf8Charset(contentType) && isUtf8(body)) {
    input.data = body.toString('utf8')
  } else {
    // Text in another charset, or bytes that are not the UTF-8 they claim to be, is kept as the bytes
    // that were sent: decoding it as UTF-8 would store U+FFFD in place of every byte it cannot read,
    // and transcoding would store other bytes than the publisher's (which a signature may cover).
    // `datacontenttype` keeps the charset, so a reader knows how to decode them.
    input.data_base64 = body.toString('base64')
  }
  return input
}

export function isJsonMediaType(contentType: string): boolean {
  const type = contentType.split(';')[0]!.trim().toLowerCase()
  return type === 'application/json' || type.endsWith('+json')
}

function isTextMediaType(contentType: string): boolean {
  return contentType.trim().toLowerCase().startsWith('text/')
}

/** The `charset` parameter of a media type, lowercase and unquoted, or undefined. */
function charsetOf(contentType: string): string | undefined {
  for (const parameter of contentType.split(';').slice(1)) {
    const equals = parameter.indexOf('=')
    if (equals === -1 || parameter.slice(0, equals).trim().toLowerCase() !== 'charset') continue
    const value = parameter
      .slice(equals + 1)
      .trim()
      .toLowerCase()
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value
  }
  return undefined
}

/** No charset (UTF-8 is then assumed, as it is for JSON), or UTF-8 by name. */
function isUtf8Charset(contentType: string): boolean {
  const charset = charsetOf(contentType)
  return charset === undefined || charset === 'utf-8' || charset === 'utf8'
}

/**
 * JSON text is UTF-8 (RFC 8259 §8.1) and is read as such: a JSON body labelled with another charset is
 * refused rather than misread.
 */
export function assertUtf8Json(contentType: string | undefined): void {
  if (contentType === undefined || isUtf8Charset(contentType)) return
  throw errors.unsupportedMediaType(
    `JSON is sent as UTF-8 (RFC 8259 §8.1), not charset=${charsetOf(contentType)}.`,
    'Content-Type',
  )
}

/**
 * JSON text from a body's bytes. They must be UTF-8 (RFC 8259 §8.1): decoding would otherwise turn
 * every byte it cannot read into U+FFFD, and Herald would store other data than was sent.
 */
export function parseJsonBytes(bytes: Buffer): unknown {
  if (bytes.length === 0) throw errors.invalidJson('The body is empty, but its Content-Type says it is JSON.')
  if (!isUtf8(bytes)) {
    throw errors.invalidJson('The body is not valid UTF-8, which JSON text must be (RFC 8259 §8.1).')
  }
  try {
    return JSON.parse(bytes.toString('utf8'))
  } catch {
    throw errors.invalidJson('The body is not valid JSON, but its Content-Type says it is.')
  }
}

/** Fills what the publisher left out and serializes the event once. */
export function prepareEvent(topic: string, input: EventInput, now: Date): NewEvent {
  return new Defaults(topic, now).prepare(input)
}

/**
 * Prepares the events of one request, which share their defaults: the time they were received, the
 * millisecond part of generated ids, the topic's source. Each is worked out once per request, not
 * once per event.
 */
export function prepareEvents(topic: string, inputs: EventInput[], now: Date): NewEvent[] {
  const defaults = new Defaults(topic, now)
  const events = new Array<NewEvent>(inputs.length)
  for (let i = 0; i < inputs.length; i++) events[i] = defaults.prepare(inputs[i]!)
  return events
}

/** What a request's events take when the publisher left it out. */
class Defaults {
  private readonly source: string
  private readonly time: string
  private readonly idTime: string
  /** The start of an event's JSON when it has the topic's source: the text up to `"type":`. */
  private readonly sourceJson: string
  private readonly timeJson: string

  constructor(topic: string, now: Date) {
    this.source = `/v1/topics/${topic}`
    this.time = now.toISOString()
    this.idTime = ulidTime(now.getTime())
    this.sourceJson = JSON.stringify(this.source)
    this.timeJson = JSON.stringify(this.time)
  }

  prepare(input: EventInput): NewEvent {
    const id = input.id ?? this.idTime + ulidRandom()
    const source = input.source ?? this.source
    const prepared = { id, source, clientId: input.id !== undefined, type: input.type, body: '' }
    // Without extensions, the event's JSON is written here, attribute by attribute in the order
    // JSON.stringify(cloudEvent) gives them, each serialized by JSON.stringify: the same text, without
    // building the CloudEvent object first. (Extensions keep the object: a name of digits only, such
    // as "123", comes first in an object's keys, and so in its JSON.)
    if (input.extensions === undefined) {
      const body = this.serialize(input, id, source)
      if (body !== undefined) {
        prepared.body = body
        return prepared
      }
    }
    const event: CloudEvent = {
      specversion: '1.0',
      id,
      source,
      type: input.type,
      time: input.time ?? this.time,
    }
    if (input.subject !== undefined) event.subject = input.subject
    if (input.datacontenttype !== undefined) event.datacontenttype = input.datacontenttype
    else if (input.data !== undefined) event.datacontenttype = 'application/json'
    if (input.dataschema !== undefined) event.dataschema = input.dataschema
    if (input.extensions) Object.assign(event, input.extensions)
    if (input.data !== undefined) event.data = input.data
    if (input.data_base64 !== undefined) event.data_base64 = input.data_base64
    prepared.body = JSON.stringify(event)
    return prepared
  }

  /** The event's JSON, or undefined when its data has no JSON text (JSON.stringify then omits it). */
  private serialize(input: EventInput, id: string, source: string): string | undefined {
    let json = `{"specversion":"1.0","id":${JSON.stringify(id)},"source":${source === this.source ? this.sourceJson : JSON.stringify(source)},"type":${JSON.stringify(input.type)},"time":${input.time === undefined ? this.timeJson : JSON.stringify(input.time)}`
    if (input.subject !== undefined) json += `,"subject":${JSON.stringify(input.subject)}`
    if (input.datacontenttype !== undefined) {
      json += `,"datacontenttype":${JSON.stringify(input.datacontenttype)}`
    } else if (input.data !== undefined) json += ',"datacontenttype":"application/json"'
    if (input.dataschema !== undefined) json += `,"dataschema":${JSON.stringify(input.dataschema)}`
    if (input.data !== undefined) {
      const data = JSON.stringify(input.data) as string | undefined
      if (data === undefined) return undefined
      json += `,"data":${data}`
    }
    if (input.data_base64 !== undefined) json += `,"data_base64":${JSON.stringify(input.data_base64)}`
    return `${json}}`
  }
}

/** Adds the position to a serialized event without parsing it again: `{…}` → `{…,"topic":…,"seq":…}`. */
export function withPosition(body: string, topic: string, seq: number): string {
  return positioned(topic)(body, seq)
}

/** `withPosition` for one topic, its name serialized once for all the events it positions. */
export function positioned(topic: string): (body: string, seq: number) => string {
  const field = `,"topic":${JSON.stringify(topic)},"seq":`
  return (body, seq) => `${body.slice(0, -1)}${field}${seq}}`
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/** Whether `text` has the shape of a ULID: 26 characters of Crockford's base32, as `ulid()` makes. */
export function isUlid(text: string): boolean {
  if (text.length !== 26) return false
  for (const c of text) if (!CROCKFORD.includes(c)) return false
  return true
}

const randomPool = Buffer.alloc(4096)
let randomOffset = randomPool.length

/** A ULID: 48 bits of milliseconds and 80 random bits, 26 characters that sort by time. */
export function ulid(nowMs: number = Date.now()): string {
  return ulidTime(nowMs) + ulidRandom()
}

/** The first 10 characters of a ULID: its milliseconds. */
function ulidTime(nowMs: number): string {
  let time = ''
  let rest = nowMs
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[rest % 32] + time
    rest = Math.floor(rest / 32)
  }
  return time
}

/** The last 16 characters of a ULID: 80 random bits. */
function ulidRandom(): string {
  if (randomOffset + 16 > randomPool.length) {
    randomFillSync(randomPool)
    randomOffset = 0
  }
  let random = ''
  for (let i = 0; i < 16; i++) random += CROCKFORD[randomPool[randomOffset + i]! & 31]
  randomOffset += 16
  return random
}
