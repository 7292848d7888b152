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
