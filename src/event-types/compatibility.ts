/**
 * Whether a new version of a type's schema still accepts what the previous one accepted (backward
 * compatibility for consumers of stored events and for publishers that have not changed yet).
 *
 * Deciding inclusion of JSON Schemas in general is out of reach, so this walks both schemas side by
 * side and reports each change it can classify: `breaking` when the change makes some data that the
 * previous version accepted invalid (a property now required, a type narrowed, a bound tightened, a
 * value dropped from an enum, additional properties closed…), and `unknown` when it cannot tell (a
 * changed `pattern`, `$ref`, `allOf`/`anyOf`/`oneOf`/`not`, conditionals…). It never reports a change it
 * did not look at as compatible: anything not understood is `unknown`, with its pointer.
 */

export interface Finding {
  /** JSON pointer into the new schema. */
  pointer: string
  kind: 'breaking' | 'unknown'
  message: string
}

export interface Compatibility {
  /** `compatible`: no finding; `breaking`: at least one; `unknown`: only changes it could not classify. */
  backward: 'compatible' | 'breaking' | 'unknown'
  findings: Finding[]
}

/** Keywords that never change what validates (annotations, and formats, which Herald does not check). */
const ANNOTATIONS = new Set([
  'title',
  'description',
  'examples',
  'default',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  'format',
  '$schema',
  '$id',
  'contentMediaType',
  'contentEncoding',
  'contentSchema',
])
/** Lower bounds: a larger value in the new schema, or one added, refuses more. */
const LOWER_BOUNDS = ['minimum', 'exclusiveMinimum', 'minLength', 'minItems', 'minProperties', 'minContains']
/** Upper bounds: a smaller value, or one added, refuses more. */
const UPPER_BOUNDS = ['maximum', 'exclusiveMaximum', 'maxLength', 'maxItems', 'maxProperties', 'maxContains']
const HANDLED = new Set([
  ...ANNOTATIONS,
  ...LOWER_BOUNDS,
  ...UPPER_BOUNDS,
  'type',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'prefixItems',
  'enum',
  'const',
  'multipleOf',
  'uniqueItems',
])
const MAX_FINDINGS = 50

type Schema = boolean | Record<string, unknown>

export function compareSchemas(previous: unknown, next: unknown): Compatibility {
  const findings: Finding[] = []
  walk(previous as Schema, next as Schema, '', findings)
  const kept = findings.slice(0, MAX_FINDINGS)
  const backward = kept.some((f) => f.kind === 'breaking')
    ? 'breaking'
    : kept.length > 0
      ? 'unknown'
      : 'compatible'
  return { backward, findings: kept }
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b) // both canonical: keys sorted at registration
}

function pointerSegment(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1')
}

function walk(previous: Schema | undefined, next: Schema | undefined, at: string, out: Finding[]): void {
  if (out.length >= MAX_FINDINGS) return
  const before: Schema = previous ?? true
  const after: Schema = next ?? true
  if (same(before, after)) return
  if (after === true || (typeof after === 'object' && Object.keys(after).every((k) => ANNOTATIONS.has(k)))) {
    return // the new schema accepts everything here
  }
  if (after === false) {
    out.push({ pointer: at || '/', kind: 'breaking', message: 'Nothing is accepted here any more.' })
    return
  }
  if (before === false) return // nothing was accepted: whatever is now accepted is more
  const b = before === true ? {} : before
  const a = after
  for (const keyword of Object.keys(a)) {
    if (!HANDLED.has(keyword) && !same(b[keyword], a[keyword])) {
      out.push({
        pointer: `${at}/${pointerSegment(keyword)}`,
        kind: 'unknown',
        message: `"${keyword}" ${Object.hasOwn(b, keyword) ? 'changed' : 'was added'}: Herald cannot tell whether it refuses data the previous version accepted.`,
      })
    }
  }
  compareType(b['type'], a['type'], at, out)
  for (const keyword of LOWER_BOUNDS) compareBound(keyword, b[keyword], a[keyword], at, out, (x, y) => y > x)
  for (const keyword of UPPER_BOUNDS) compareBound(keyword, b[keyword], a[keyword], at, out, (x, y) => y < x)
  compareValues(b, a, at, out)
  if (a['multipleOf'] !== undefined && !same(b['multipleOf'], a['multipleOf'])) {
    const x = b['multipleOf']
    const y = a['multipleOf']
    // A multiple of y stays one of x only when y divides x (integers only: floats are not exact).
    const fine =
      typeof x === 'number' && typeof y === 'number' && Number.isInteger(x / y) && Number.isInteger(y)
    if (!fine)
      out.push({ pointer: `${at}/multipleOf`, kind: 'breaking', message: `"multipleOf" is now ${y}.` })
  }
  if (a['uniqueItems'] === true && b['uniqueItems'] !== true) {
    out.push({ pointer: `${at}/uniqueItems`, kind: 'breaking', message: 'Items must now be unique.' })
  }
  compareObject(b, a, at, out)
  if (a['items'] !== undefined || b['items'] !== undefined) {
    walk(b['items'] as Schema | undefined, a['items'] as Schema | undefined, `${at}/items`, out)
  }
  const beforeTuple = (b['prefixItems'] as Schema[] | undefined) ?? []
  const afterTuple = (a['prefixItems'] as Schema[] | undefined) ?? []
  for (let i = 0; i < afterTuple.length; i++) {
    // Where the previous tuple ended, its `items` (or anything) applied.
    walk(beforeTuple[i] ?? (b['items'] as Schema | undefined), afterTuple[i], `${at}/prefixItems/${i}`, out)
  }
}

function typesOf(value: unknown): Set<string> | undefined {
  if (value === undefined) return undefined
  return new Set(Array.isArray(value) ? (value as string[]) : [value as string])
}

function compareType(before: unknown, after: unknown, at: string, out: Finding[]): void {
  const a = typesOf(after)
  if (a === undefined) return
  const b = typesOf(before) ?? new Set(['null', 'boolean', 'object', 'array', 'number', 'string'])
  // An integer is a number, so "number" accepts what "integer" did.
  const lost = [...b].filter((t) => !a.has(t) && !(t === 'integer' && a.has('number')))
  if (lost.length > 0) {
    out.push({
      pointer: `${at}/type`,
      kind: 'breaking',
      message: `No longer accepted: ${lost.join(', ')}.`,
    })
  }
}

function compareBound(
  keyword: string,
  before: unknown,
  after: unknown,
  at: string,
  out: Finding[],
  tighter: (before: number, after: number) => boolean,
): void {
  if (typeof after !== 'number') return
  if (typeof before !== 'number' || tighter(before, after)) {
    out.push({
      pointer: `${at}/${keyword}`,
      kind: 'breaking',
      message:
        typeof before === 'number'
          ? `"${keyword}" went from ${before} to ${after}.`
          : `"${keyword}" ${after} was added.`,
    })
  }
}

/** `enum` and `const`: every value accepted before must still be listed. */
function compareValues(
  b: Record<string, unknown>,
  a: Record<string, unknown>,
  at: string,
  out: Finding[],
): void {
  const allowed = (s: Record<string, unknown>): unknown[] | undefined =>
    Object.hasOwn(s, 'const') ? [s['const']] : Array.isArray(s['enum']) ? (s['enum'] as unknown[]) : undefined
  const after = allowed(a)
  if (after === undefined) return
  const before = allowed(b)
  const keyword = Object.hasOwn(a, 'const') ? 'const' : 'enum'
  if (before === undefined) {
    out.push({
      pointer: `${at}/${keyword}`,
      kind: 'breaking',
      message: `"${keyword}" now restricts the values.`,
    })
    return
  }
  const dropped = before.filter((value) => !after.some((kept) => same(kept, value)))
  if (dropped.length > 0) {
    out.push({
      pointer: `${at}/${keyword}`,
      kind: 'breaking',
      message: `No longer accepted: ${dropped
        .map((v) => JSON.stringify(v))
        .join(', ')
        .slice(0, 200)}.`,
    })
  }
}

function compareObject(
  b: Record<string, unknown>,
  a: Record<string, unknown>,
  at: string,
  out: Finding[],
): void {
  const required = new Set((b['required'] as string[] | undefined) ?? [])
  for (const name of (a['required'] as string[] | undefined) ?? []) {
    if (!required.has(name)) {
      out.push({ pointer: `${at}/required`, kind: 'breaking', message: `"${name}" is now required.` })
    }
  }
  const beforeProps = (b['properties'] as Record<string, Schema> | undefined) ?? {}
  const afterProps = (a['properties'] as Record<string, Schema> | undefined) ?? {}
  const beforeRest = b['additionalProperties'] as Schema | undefined
  const afterRest = a['additionalProperties'] as Schema | undefined
  for (const [name, schema] of Object.entries(afterProps)) {
    // A property the previous version did not name was checked by its additionalProperties (if any).
    walk(
      Object.hasOwn(beforeProps, name) ? beforeProps[name] : beforeRest,
      schema,
      `${at}/properties/${pointerSegment(name)}`,
      out,
    )
  }
  for (const [name, schema] of Object.entries(beforeProps)) {
    if (Object.hasOwn(afterProps, name)) continue
    // Now checked by the new additionalProperties.
    walk(schema, afterRest, `${at}/properties/${pointerSegment(name)}`, out)
  }
  if (afterRest !== undefined) walk(beforeRest, afterRest, `${at}/additionalProperties`, out)
}
