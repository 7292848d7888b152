import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import { RE2JS } from 're2js'
import { errors } from '../core/errors.ts'

/**
 * JSON Schemas given by administrators, compiled once with Ajv (JSON Schema 2020-12) and run on
 * every publish of their type. What a schema may hold is bounded here, at registration, because what
 * it costs is paid at every publish:
 * - `pattern` and `patternProperties` run on RE2 (re2js: linear time), never on the backtracking
 *   RegExp engine, so no schema can make a publish take exponential time on crafted data. RE2 has
 *   no lookaround and no backreferences: a schema using them is refused at registration.
 * - No remote `$ref` is ever fetched (Ajv without `loadSchema`): a `$ref` outside the schema fails
 *   to compile, and registration says so.
 * - `format` is an annotation (2020-12's format-annotation vocabulary, the default): not checked.
 * - Text at most MAX_SCHEMA_BYTES, nesting at most MAX_SCHEMA_DEPTH.
 * Each schema compiles in its own Ajv instance, so two versions with the same `$id` never clash.
 */

export const MAX_SCHEMA_BYTES = 64 * 1024
const MAX_SCHEMA_DEPTH = 32

/** Ajv's `code.regExp`: patterns compiled by RE2. `toString` is what Ajv caches compiled patterns by. */
function linearRegExp(pattern: string, flags: string) {
  let compiled: RE2JS
  try {
    compiled = RE2JS.compile(pattern)
  } catch (error) {
    throw errors.invalidRequest(
      `The pattern ${JSON.stringify(pattern.slice(0, 100))} is not one Herald can match in linear time (RE2 syntax: no lookaround, no backreferences): ${(error as Error).message}`,
      'schema',
    )
  }
  return { test: (text: string) => compiled.matcher(text).find(), toString: () => `/${pattern}/${flags}` }
}

/** The schema as JSON text with object keys sorted: equal schemas have equal text, whatever their key order. */
export function canonicalSchema(schema: unknown): string {
  if (
    typeof schema !== 'boolean' &&
    (typeof schema !== 'object' || schema === null || Array.isArray(schema))
  ) {
    throw errors.invalidRequest('"schema" is a JSON Schema: an object (or true / false).', 'schema')
  }
  const text = JSON.stringify(sortKeys(schema, 0))
  if (Buffer.byteLength(text) > MAX_SCHEMA_BYTES) {
    throw errors.invalidRequest(`"schema" has at most ${MAX_SCHEMA_BYTES / 1024} KiB of JSON.`, 'schema')
  }
  return text
}

function sortKeys(value: unknown, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (depth > MAX_SCHEMA_DEPTH) {
    throw errors.invalidRequest(`"schema" nests at most ${MAX_SCHEMA_DEPTH} levels deep.`, 'schema')
  }
  if (Array.isArray(value)) return value.map((item) => sortKeys(item, depth + 1))
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort()) {
    sorted[key] = sortKeys((value as Record<string, unknown>)[key], depth + 1)
  }
  return sorted
}

const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null'])
/** Arrays at most this long may be checked for unique items of any kind (pairwise: n² comparisons). */
const MAX_PAIRWISE_UNIQUE = 1000
/** Values, not schemas: their keys are data (`{"uniqueItems":true}` there is no keyword). */
const VALUE_KEYWORDS = new Set(['enum', 'const', 'default', 'examples'])

/**
 * Refuses what would make validating one publish take time quadratic in its size: `uniqueItems` on
 * items of any kind is checked pair by pair (a 1 MiB array of 500,000 small objects would take hours),
 * so it needs items of one scalar type (checked with a hash, in one pass) or a `maxItems` of at most
 * MAX_PAIRWISE_UNIQUE.
 */
export function assertBoundedCost(schema: unknown, pointer = ''): void {
  if (typeof schema !== 'object' || schema === null) return
  if (Array.isArray(schema)) {
    for (const [index, item] of schema.entries()) assertBoundedCost(item, `${pointer}/${index}`)
    return
  }
  const object = schema as Record<string, unknown>
  if (object['uniqueItems'] === true) {
    const items = object['items'] as Record<string, unknown> | undefined
    const scalar = typeof items?.['type'] === 'string' && SCALAR_TYPES.has(items['type'])
    const maxItems = object['maxItems']
    if (!scalar && !(typeof maxItems === 'number' && maxItems <= MAX_PAIRWISE_UNIQUE)) {
      throw errors.invalidRequest(
        `At ${pointer || '/'}, "uniqueItems" needs "items" of one scalar type (string, number, integer, boolean, null) or "maxItems" of at most ${MAX_PAIRWISE_UNIQUE}: otherwise every publish compares its items pair by pair.`,
        'schema',
      )
    }
  }
  for (const [key, value] of Object.entries(object)) {
    if (!VALUE_KEYWORDS.has(key)) assertBoundedCost(value, `${pointer}/${key}`)
  }
}

/** Compiles a schema's canonical text; an invalid schema is a 400 naming what Ajv found. */
export function compileSchema(text: string): ValidateFunction {
  const ajv = new Ajv2020({
    allErrors: true,
    // Unknown keywords are refused (a typo such as "requried" would otherwise accept everything);
    // the stricter checks refuse schemas 2020-12 allows (`required` naming a property not described).
    strict: true,
    strictRequired: false,
    strictTypes: false,
    strictTuples: false,
    validateFormats: false,
    logger: false,
    code: { regExp: linearRegExp as never },
  })
  try {
    return ajv.compile(JSON.parse(text) as object)
  } catch (error) {
    if (error instanceof Error && error.name === 'HeraldError') throw error
    throw errors.invalidRequest(
      `"schema" is not a valid JSON Schema 2020-12: ${(error as Error).message}`,
      'schema',
    )
  }
}

/** At most this many failures are reported for one event. */
const MAX_REPORTED = 20

/** Ajv's failures as `{pointer, message}`, the pointer from the event's root (`/data/total`). */
export function failuresOf(
  validate: ValidateFunction,
  prefix: string,
): Array<{ pointer: string; message: string }> {
  return (validate.errors ?? []).slice(0, MAX_REPORTED).map((failure) => ({
    pointer: `${prefix}/data${failure.instancePath}`,
    message: failure.message ?? failure.keyword,
  }))
}
