/**
 * The event-type catalog: a JSON Schema 2020-12 per event type, versioned. A schema that changes is a
 * new version; every version stays readable at its URL, which is the `dataschema` of the events
 * validated against it. The API documents (/openapi.json, /asyncapi.json) describe each type's latest
 * version.
 */

/** One version of a registered event type, as the API shows it. */
export interface EventTypeVersion {
  type: string
  /** 1 for the first schema, then +1 each time the schema changes. */
  version: number
  /** The JSON Schema 2020-12 that `data` of events of this type must satisfy. */
  schema: Record<string, unknown>
  description: string | null
  deprecated: boolean
  /** When this version was registered (ISO 8601). */
  created_at: string
}

import type { ValidateFunction } from 'ajv/dist/2020.js'
import { errors } from '../core/errors.ts'
import type { EventInput } from '../core/event.ts'
import { validateEventPattern } from '../core/event-pattern.ts'
import { isHeraldTopic } from '../core/topic.ts'
import type { EventTypeStore, StoredEventType, TopicTypes } from '../store/store.ts'
import { type Compatibility, compareSchemas } from './compatibility.ts'
import { assertBoundedCost, canonicalSchema, compileSchema, failuresOf } from './schemas.ts'

/** What a node's cache re-reads, and how often: a type registered on another node applies here within it. */
const REFRESH_MS = 1000
const MAX_DESCRIPTION_LENGTH = 2000
/** Bounds on the catalog, which every node holds in memory. */
const MAX_TYPES = 10_000
const MAX_VERSIONS = 1000
/** The path of a version's URL, the `dataschema` of events validated against it. */
const VERSION_PATH = /\/v1\/event-types\/([^/?#]+)\/versions\/(\d{1,9})$/

interface Compiled {
  record: StoredEventType
  /** Compiled on first use, then kept until the type changes. */
  validate?: ValidateFunction
  /** The latest version's URL (the `dataschema` stamped), made on first use. */
  url?: string
}

/**
 * The catalog as the rest of Herald uses it: registration with its compatibility report, and the
 * check every published event passes through (TopicLog.publish, whatever protocol brought it).
 *
 * The check runs on this node's cache of the latest versions and of the topics that take registered
 * types only, so that publishing reads nothing more from the store. The cache is updated at once for
 * what this node changes, and re-reads what other nodes changed every REFRESH_MS.
 */
export class EventTypes {
  private readonly store: EventTypeStore & {
    topicsRequiringTypes(): Promise<string[]>
    now(): number
  }
  private readonly publicUrl: string
  private readonly latest = new Map<string, Compiled>()
  /** Older versions named by a `dataschema`, compiled on first use. */
  private readonly older = new Map<string, ValidateFunction>()
  private requiring = new Set<string>()
  private readSince = 0
  private timer: NodeJS.Timeout | undefined
  private refreshing: Promise<void> | undefined

  constructor(
    store: EventTypeStore & { topicsRequiringTypes(): Promise<string[]>; now(): number },
    publicUrl: string,
  ) {
    this.store = store
    this.publicUrl = publicUrl.replace(/\/+$/, '')
  }

  /** Loads the catalog, then keeps it fresh until `close`. */
  async start(): Promise<void> {
    await this.refresh()
    this.timer = setInterval(() => {
      this.refreshing ??= this.refresh()
        .catch(() => {}) // the store is out of reach: the cache stays as it was, and is read again
        .finally(() => {
          this.refreshing = undefined
        })
    }, REFRESH_MS)
    this.timer.unref()
  }

  close(): void {
    clearInterval(this.timer)
  }

  private async refresh(): Promise<void> {
    // A margin for writes that committed with an earlier time than a read that ran before them.
    const since = this.readSince - 5 * REFRESH_MS
    const now = this.store.now()
    const [changed, requiring] = await Promise.all([
      this.store.eventTypesChangedSince(since),
      this.store.topicsRequiringTypes(),
    ])
    for (const record of changed) this.remember(record)
    this.requiring = new Set(requiring)
    this.readSince = now
  }

  private remember(record: StoredEventType): void {
    const known = this.latest.get(record.type)
    if (known && known.record.version > record.version) return
    if (known && known.record.version === record.version && known.record.schema === record.schema) {
      known.record = record // description or deprecation
      return
    }
    this.latest.set(record.type, { record })
  }

  /** The latest version of each type, by name, paged. */
  list(options: { after?: string; limit: number }): Promise<StoredEventType[]> {
    return this.store.eventTypes(options)
  }

  /** Every version of a type, oldest first. */
  versions(type: string): Promise<StoredEventType[]> {
    return this.store.eventTypeVersions(type)
  }

  /** One version of a type, or undefined. */
  version(type: string, version: number): Promise<StoredEventType | undefined> {
    return this.store.eventType(type, version)
  }

  /**
   * The latest version of every type, by name, as the API documents (/openapi.json, /asyncapi.json)
   * describe them: from this node's cache, so that serving a document reads nothing from the store.
   */
  async describeAll(): Promise<EventTypeVersion[]> {
    return [...this.latest.values()]
      .map((entry) => entry.record)
      .sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
      .map((record) => eventTypeView(record, (t, v) => this.versionUrl(t, v)))
  }

  /** Tells the cache of a topic's new setting at once (other nodes read it within REFRESH_MS). */
  topicConfigured(topic: string, types: TopicTypes): void {
    if (types === 'registered') this.requiring.add(topic)
    else this.requiring.delete(topic)
  }

  /** The URL of one version's schema: the `dataschema` of the events validated against it. */
  versionUrl(type: string, version: number): string {
    return `${this.publicUrl}/v1/event-types/${encodeURIComponent(type)}/versions/${version}`
  }

  /**
   * Registers a schema for `type`: a new version when it differs from the latest, else only the
   * description and deprecation change. A new version is compared with the one before it, and the
   * report says whether it refuses data the previous one accepted.
   */
  async register(
    type: unknown,
    body: unknown,
  ): Promise<{
    current: StoredEventType
    previous: StoredEventType | undefined
    compatibility?: Compatibility
  }> {
    const name = validateTypeName(type)
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw errors.invalidRequest(
        'Send a JSON object: {"schema":{…},"description"?:"…","deprecated"?:false}.',
      )
    }
    const fields = body as Record<string, unknown>
    for (const key of Object.keys(fields)) {
      if (key !== 'schema' && key !== 'description' && key !== 'deprecated') {
        throw errors.invalidRequest(
          `Unknown field "${key.slice(0, 50)}": schema, description and deprecated are.`,
          key,
        )
      }
    }
    if (!('schema' in fields))
      throw errors.invalidRequest('"schema" is required: a JSON Schema 2020-12.', 'schema')
    const schema = canonicalSchema(fields['schema'])
    assertBoundedCost(fields['schema'])
    const validate = compileSchema(schema) // refuses a schema Ajv cannot compile, before anything is stored
    const known = this.latest.get(name)
    if (known === undefined && this.latest.size >= MAX_TYPES) {
      throw errors.invalidRequest(`The catalog holds ${MAX_TYPES} event types, as many as it may.`, 'type')
    }
    if (known !== undefined && known.record.version >= MAX_VERSIONS && known.record.schema !== schema) {
      throw errors.invalidRequest(
        `"${name}" has ${MAX_VERSIONS} versions, as many as a type may: register the schema under a new type name.`,
        'schema',
      )
    }
    // Left out, the description and deprecation stay as they are (a new schema keeps its words).
    const current =
      'description' in fields && 'deprecated' in fields ? undefined : await this.store.eventType(name)
    const description = 'description' in fields ? fields['description'] : (current?.description ?? null)
    if (
      description !== null &&
      (typeof description !== 'string' || description.length > MAX_DESCRIPTION_LENGTH)
    ) {
      throw errors.invalidRequest(
        `"description" is text of at most ${MAX_DESCRIPTION_LENGTH} characters.`,
        'description',
      )
    }
    const deprecated = 'deprecated' in fields ? fields['deprecated'] : (current?.deprecated ?? false)
    if (typeof deprecated !== 'boolean')
      throw errors.invalidRequest('"deprecated" is true or false.', 'deprecated')
    const result = await this.store.putEventType(
      { type: name, schema, description, deprecated },
      this.store.now(),
    )
    this.remember(result.current)
    const cached = this.latest.get(name)
    if (cached && cached.record.version === result.current.version) cached.validate ??= validate
    if (result.previous === undefined || result.previous.version === result.current.version) return result
    return {
      ...result,
      compatibility: compareSchemas(JSON.parse(result.previous.schema), JSON.parse(result.current.schema)),
    }
  }

  /**
   * Checks events before they are stored: an event of a registered type must have JSON `data` its
   * schema accepts (the latest version, or the one its `dataschema` names), and is stamped with that
   * version's URL as its `dataschema`; a topic that takes registered types only refuses the others.
   * Returns the inputs to store (the same array when nothing was stamped).
   */
  async check(topic: string, inputs: EventInput[]): Promise<EventInput[]> {
    // Herald's own topics (herald.system, WebSub content) hold what Herald writes: a schema registered
    // for one of its types (`hook.created`…) must never stop Herald recording what happened.
    if (isHeraldTopic(topic)) return inputs
    if (this.latest.size === 0 && !this.requiring.has(topic)) return inputs
    const checked: EventInput[] = []
    for (let index = 0; index < inputs.length; index++) {
      const input = inputs[index]!
      const at = inputs.length > 1 ? `/${index}` : ''
      const known = this.latest.get(input.type)
      if (known === undefined) {
        if (this.requiring.has(topic)) {
          throw errors.unregisteredType(
            `Topic "${topic}" takes registered event types only, and "${input.type.slice(0, 200)}" is not one: register it with PUT /v1/event-types/{type}.`,
            `${at}/type`,
          )
        }
        checked.push(input)
        continue
      }
      const { version, validate } = await this.validatorFor(known, input, at)
      if (
        input.data_base64 !== undefined ||
        (input.datacontenttype !== undefined && !isJson(input.datacontenttype))
      ) {
        throw errors
          .schemaMismatch(
            `Events of type "${input.type}" carry JSON data (their schema validates it), not ${input.datacontenttype ?? 'binary data'}.`,
            `${at}/data`,
          )
          .with({ errors: [{ pointer: `${at}/data`, message: 'must be JSON' }] })
      }
      if (!validate(input.data ?? null)) {
        const failures = failuresOf(validate, at)
        throw errors
          .schemaMismatch(
            `The data does not match version ${version} of "${input.type}": ${failures[0]?.pointer} ${failures[0]?.message}.`,
            failures[0]?.pointer,
          )
          .with({ errors: failures, dataschema: this.versionUrl(input.type, version) })
      }
      // The inputs are this request's own, parsed for it (and hashed for idempotency before): stamped
      // in place rather than copied, as this runs for every event of a batch.
      if (version === known.record.version) {
        known.url ??= this.versionUrl(input.type, version)
        input.dataschema = known.url
      } else {
        input.dataschema = this.versionUrl(input.type, version)
      }
      checked.push(input)
    }
    return checked
  }

  private async validatorFor(
    known: Compiled,
    input: EventInput,
    at: string,
  ): Promise<{ version: number; validate: ValidateFunction }> {
    const latest = known.record
    if (input.dataschema === undefined) {
      known.validate ??= compileSchema(latest.schema)
      return { version: latest.version, validate: known.validate }
    }
    // Recognised by its path, so that a URL made by another node (another public URL) is one too.
    const match = VERSION_PATH.exec(input.dataschema)
    const version = match && decodeURIComponent(match[1]!) === input.type ? Number(match[2]) : undefined
    if (version === latest.version) {
      known.validate ??= compileSchema(latest.schema)
      return { version, validate: known.validate }
    }
    const record = version === undefined ? undefined : await this.store.eventType(input.type, version)
    if (record === undefined) {
      throw errors
        .schemaMismatch(
          `"dataschema" names no version of "${input.type}": leave it out (the latest version applies) or name one, ${this.versionUrl(input.type, latest.version)}.`,
          `${at}/dataschema`,
        )
        .with({ errors: [{ pointer: `${at}/dataschema`, message: 'names no version of this type' }] })
    }
    const key = `${record.type}\n${record.version}`
    let validate = this.older.get(key)
    if (!validate) {
      validate = compileSchema(record.schema)
      if (this.older.size >= 1000) this.older.clear() // a bound, not a policy: old versions in use are few
      this.older.set(key, validate)
    }
    return { version: record.version, validate }
  }
}

function isJson(mediaType: string): boolean {
  const base = mediaType.split(';', 1)[0]!.trim().toLowerCase()
  return base === 'application/json' || base.endsWith('+json')
}

/** A type name: an event type as publishers write it, without wildcards (and no `/`: it is a URL segment). */
export function validateTypeName(type: unknown): string {
  const name = validateEventPattern(type, 'type')
  if (name.includes('*') || name.includes('/')) {
    throw errors.invalidRequest('An event type to register has no "*" and no "/" ("order.created").', 'type')
  }
  return name
}

/** The API's view of one version. */
export function eventTypeView(record: StoredEventType, urlOf: (type: string, version: number) => string) {
  return {
    type: record.type,
    version: record.version,
    schema: JSON.parse(record.schema) as Record<string, unknown>,
    description: record.description,
    deprecated: record.deprecated,
    created_at: new Date(record.created_at).toISOString(),
    url: urlOf(record.type, record.version),
  } satisfies EventTypeVersion & { url: string }
}
