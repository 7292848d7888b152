import { errors } from './errors.ts'

/**
 * CloudEvents Subscriptions API filters (CNCF v1.0, §3.2.4): `exact`, `prefix`, `suffix` (one
 * attribute → a string), `all` and `any` (a non-empty array of filters), `not` (one filter); a
 * top-level array is `all`. An attribute is a CloudEvents attribute or extension name (lowercase
 * letters and digits), or Herald's extension `data.<dotted path>`, which reads into the event's JSON
 * `data`. Values compare as strings: a number or boolean compares by its JSON text ("42", "true");
 * an object, an array, null or an absent attribute matches no `exact`, `prefix` or `suffix`.
 *
 * Matching uses `===`, `startsWith` and `endsWith` only: no regular expression ever sees a client's
 * string. A filter that does not parse is a 400 naming what is wrong, never a match-all.
 */

/** Bounds on a filter (each refused past it with a 400). */
export const FILTER_LIMITS = {
  /** Its JSON text, in bytes (UTF-8). */
  bytes: 4096,
  /** Nesting: a lone expression is depth 1, an expression inside an `all` depth 2, and so on. */
  depth: 8,
  /** Expressions in all (every dialect object counts, `all`/`any`/`not` included). */
  expressions: 64,
  /** Characters of one value. */
  valueLength: 1024,
  /** Segments of a `data.<path>`. */
  pathSegments: 16,
} as const

/** The longest CloudEvents attribute name (CloudEvents 1.0 advises 20 characters at most). */
const MAX_ATTRIBUTE_NAME = 20
/** The longest array index a data path segment may be (a segment of digits indexes an array). */
const MAX_INDEX_DIGITS = 7

type Comparison = 'exact' | 'prefix' | 'suffix'

/** A parsed filter, normalized (see `normalize`). */
export type FilterNode =
  | { op: Comparison; attribute: string; value: string }
  | { op: 'all' | 'any'; of: FilterNode[] }
  | { op: 'not'; of: FilterNode }

/** What a filter reads: an event's JSON (a StoredEvent, or the deliveries' view of a new event). */
export interface FilterableEvent {
  readonly json: string
}

export interface CompiledFilter {
  /** The canonical form: equal filters, however written (order, nesting, repeats), share it. */
  readonly key: string
  /** The canonical filter as JSON (a valid filter itself): what is stored and shown. */
  readonly canonical: unknown
  /** Whether the event passes; memoized per event object and filter key (see `verdictOf`). */
  matches(event: FilterableEvent): boolean
}

/**
 * How many times a filter was evaluated, and event JSON parsed, for a verdict (the memo's misses):
 * tests read them to prove one evaluation per event and distinct filter, whatever the subscribers.
 */
export const filterCounters = { evaluations: 0, parses: 0 }

// ---- parsing ---------------------------------------------------------------------------------------

const DIALECTS = new Set(['exact', 'prefix', 'suffix', 'all', 'any', 'not'])

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function invalid(detail: string, field: string): never {
  throw errors.invalidRequest(detail, field)
}

/** A key or dialect name for a message: quoted, and cut short when long. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)
}

function isAttributeName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_ATTRIBUTE_NAME) return false
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39))) return false
  }
  return true
}

/** Checks an attribute: a CloudEvents name, or `data.` and 1 to 16 non-empty segments. */
function checkAttribute(attribute: string, field: string): void {
  if (attribute.startsWith('data.')) {
    if (attribute.length > FILTER_LIMITS.valueLength) {
      invalid(`A data path has at most ${FILTER_LIMITS.valueLength} characters.`, field)
    }
    if (!attribute.isWellFormed())
      invalid('A data path is not well-formed Unicode (a lone surrogate).', field)
    const segments = attribute.slice(5).split('.')
    if (segments.length > FILTER_LIMITS.pathSegments) {
      invalid(`A data path has at most ${FILTER_LIMITS.pathSegments} segments after "data.".`, field)
    }
    if (segments.includes('')) invalid(`The data path ${quote(attribute)} has an empty segment.`, field)
    return
  }
  if (attribute === 'data' || attribute === 'data_base64') {
    invalid(
      '"data" is not compared whole: name a field inside it, as "data.<path>" (data.customer.tier).',
      field,
    )
  }
  if (!isAttributeName(attribute)) {
    invalid(
      `${quote(attribute)} is not an attribute: an attribute name is 1 to ${MAX_ATTRIBUTE_NAME} lowercase letters and digits (type, source, subject, topic…), or "data.<path>".`,
      field,
    )
  }
}

interface ParseState {
  expressions: number
}

function parseNode(
  value: unknown,
  depth: number,
  field: string,
  state: ParseState,
  top: boolean,
): FilterNode {
  if (depth > FILTER_LIMITS.depth) {
    invalid(`The filter nests deeper than ${FILTER_LIMITS.depth} levels.`, field)
  }
  if (++state.expressions > FILTER_LIMITS.expressions) {
    invalid(`The filter has more than ${FILTER_LIMITS.expressions} expressions.`, field)
  }
  if (top && Array.isArray(value)) return { op: 'all', of: parseList(value, depth, field, state) }
  if (!isPlainObject(value)) {
    invalid(
      'A filter is a JSON object with one dialect: exact, prefix, suffix, all, any or not (or, at the top, an array of filters).',
      field,
    )
  }
  const keys = Object.keys(value)
  if (keys.length !== 1) {
    invalid(
      keys.length === 0
        ? 'An empty object is no filter: give one dialect (exact, prefix, suffix, all, any or not).'
        : `A filter expression has exactly one dialect; this one has ${keys.length} keys (put several in "all").`,
      field,
    )
  }
  const dialect = keys[0]!
  const body = value[dialect]
  const at = `${field}/${dialect.length > 40 ? '…' : dialect}`
  if (!DIALECTS.has(dialect)) {
    invalid(
      dialect === 'sql'
        ? 'The "sql" dialect (CESQL) is not supported: use exact, prefix, suffix, all, any or not.'
        : `Unknown dialect ${quote(dialect)}: use exact, prefix, suffix, all, any or not.`,
      field,
    )
  }
  if (dialect === 'all' || dialect === 'any') {
    if (!Array.isArray(body)) invalid(`"${dialect}" is a non-empty array of filters.`, at)
    return { op: dialect, of: parseList(body, depth, at, state) }
  }
  if (dialect === 'not') return { op: 'not', of: parseNode(body, depth + 1, at, state, false) }
  const op = dialect as Comparison
  if (!isPlainObject(body)) invalid(`"${op}" is an object with one attribute and its string value.`, at)
  const attributes = Object.keys(body)
  if (attributes.length !== 1) {
    invalid(
      `"${op}" names exactly one attribute; this one names ${attributes.length} (put several in "all").`,
      at,
    )
  }
  const attribute = attributes[0]!
  const where = `${at}/${attribute.length > 40 ? '…' : attribute}`
  checkAttribute(attribute, where)
  const given = body[attribute]
  if (typeof given !== 'string') {
    invalid(
      `The value of ${quote(attribute)} in "${op}" is a string (numbers and booleans are compared as their JSON text: "42", "true").`,
      where,
    )
  }
  if (given.length > FILTER_LIMITS.valueLength) {
    invalid(`A filter value has at most ${FILTER_LIMITS.valueLength} characters.`, where)
  }
  if (!given.isWellFormed()) invalid('A filter value is not well-formed Unicode (a lone surrogate).', where)
  return { op, attribute, value: given }
}

function parseList(value: unknown[], depth: number, field: string, state: ParseState): FilterNode[] {
  if (value.length === 0) invalid('An empty list of filters: give at least one.', field)
  if (value.length > FILTER_LIMITS.expressions) {
    invalid(`The filter has more than ${FILTER_LIMITS.expressions} expressions.`, field)
  }
  return value.map((item, index) => parseNode(item, depth + 1, `${field}/${index}`, state, false))
}

// ---- the canonical form ----------------------------------------------------------------------------

/** The node as the JSON of its filter expression. */
function toJson(node: FilterNode): unknown {
  switch (node.op) {
    case 'all':
    case 'any':
      return { [node.op]: node.of.map(toJson) }
    case 'not':
      return { not: toJson(node.of) }
    default:
      return { [node.op]: { [node.attribute]: node.value } }
  }
}

/**
 * Equal meaning, one form: `all`/`any` inside the same dialect are flattened, their members sorted
 * and repeats dropped, a one-member `all`/`any` is its member, `not` of `not` is what it negates.
 */
function normalize(node: FilterNode): { node: FilterNode; key: string } {
  if (node.op === 'not') {
    const inner = normalize(node.of)
    if (inner.node.op === 'not') return normalize(inner.node.of)
    const result: FilterNode = { op: 'not', of: inner.node }
    return { node: result, key: JSON.stringify(toJson(result)) }
  }
  if (node.op === 'all' || node.op === 'any') {
    const members = new Map<string, FilterNode>()
    const add = (child: FilterNode) => {
      const normal = normalize(child)
      if (normal.node.op === node.op) for (const grand of normal.node.of) add(grand)
      else members.set(normal.key, normal.node)
    }
    for (const child of node.of) add(child)
    const keys = [...members.keys()].sort()
    if (keys.length === 1) return { node: members.get(keys[0]!)!, key: keys[0]! }
    const result: FilterNode = { op: node.op, of: keys.map((key) => members.get(key)!) }
    return { node: result, key: JSON.stringify(toJson(result)) }
  }
  return { node, key: JSON.stringify(toJson(node)) }
}

/** Parses and checks a filter given as JSON (a body field, a WebSocket message); a 400 if it is not one. */
export function parseFilter(value: unknown, field = 'filter'): CompiledFilter {
  const state: ParseState = { expressions: 0 }
  const tree = parseNode(value, 1, field, state, true)
  const { node, key } = normalize(tree)
  // The bounds above keep the text small (64 expressions of 1 KiB at most); the byte limit is on the
  // filter as written, which for a value given as JSON is its compact serialization.
  const bytes = Buffer.byteLength(JSON.stringify(value))
  if (bytes > FILTER_LIMITS.bytes)
    invalid(`The filter has more than ${FILTER_LIMITS.bytes} bytes of JSON.`, field)
  return compile(node, key)
}

/** Parses a filter given as JSON text (`?filter=`); a 400 naming `field` if it is not one. */
export function parseFilterText(text: string, field = 'filter'): CompiledFilter {
  if (Buffer.byteLength(text) > FILTER_LIMITS.bytes) {
    invalid(`The filter has more than ${FILTER_LIMITS.bytes} bytes of JSON.`, field)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    invalid('The filter is not valid JSON.', field)
  }
  return parseFilter(value, field)
}

const compiledByText = new Map<string, CompiledFilter>()
const MATCHES_NOTHING: CompiledFilter = { key: '', canonical: null, matches: () => false }
const MAX_COMPILED_CACHE = 1000

/**
 * A stored filter (a hook's, checked when it was set) compiled once and kept: fan-out looks hooks' filters
 * up on every append. A bounded cache: past its size the oldest entry goes.
 */
export function storedFilter(text: string): CompiledFilter {
  let compiled = compiledByText.get(text)
  if (compiled === undefined) {
    try {
      compiled = parseFilterText(text)
    } catch {
      // Checked when it was stored: only a row edited by hand (or a bound lowered since) gets here,
      // and it matches nothing rather than everything (STANDARDS §9.2).
      compiled = MATCHES_NOTHING
    }
    if (compiledByText.size >= MAX_COMPILED_CACHE) compiledByText.delete(compiledByText.keys().next().value!)
    compiledByText.set(text, compiled)
  }
  return compiled
}

// ---- evaluation ----------------------------------------------------------------------------------

/**
 * What is known of one event: its parsed JSON (null: not a JSON object), and each filter's verdict by
 * key.
 *
 * Why this gives one evaluation per event and distinct filter, not one per subscriber: a topic's live
 * Feed (src/log/feeds.ts) reads each new batch once and hands the same StoredEvent objects to every
 * subscription, and a hook fan-out sees each new event as one object for every candidate hook. Keyed by
 * that object, the first subscriber with a filter parses the event's JSON (once, whatever the filters)
 * and records the verdict under the filter's canonical key; every other subscriber with an equal filter,
 * however written, finds it here. A WeakMap holds nothing once the event is let go. (A catch-up read
 * makes its own objects: a subscriber reading its backlog evaluates what it reads itself.)
 */
interface EventMemo {
  parsed: Record<string, unknown> | null | undefined
  verdicts: Map<string, boolean>
}

const memos = new WeakMap<FilterableEvent, EventMemo>()

function memoOf(event: FilterableEvent): EventMemo {
  let memo = memos.get(event)
  if (memo === undefined) {
    memo = { parsed: undefined, verdicts: new Map() }
    memos.set(event, memo)
  }
  return memo
}

function parsedOf(event: FilterableEvent, memo: EventMemo): Record<string, unknown> | null {
  if (memo.parsed === undefined) {
    filterCounters.parses++
    let parsed: unknown = null
    try {
      parsed = JSON.parse(event.json)
    } catch {
      parsed = null
    }
    memo.parsed = isPlainObject(parsed) ? parsed : null
  }
  return memo.parsed
}

/** An attribute's value as the string it compares as; undefined when absent, null, an object or an array. */
function attributeText(event: Record<string, unknown> | null, attribute: string): string | undefined {
  if (event === null) return undefined
  let value: unknown
  if (attribute.startsWith('data.')) {
    value = event['data']
    let start = 5
    while (start <= attribute.length) {
      let end = attribute.indexOf('.', start)
      if (end === -1) end = attribute.length
      const segment = attribute.slice(start, end)
      value = step(value, segment)
      if (value === undefined) return undefined
      start = end + 1
    }
  } else {
    value = Object.hasOwn(event, attribute) ? event[attribute] : undefined
  }
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return JSON.stringify(value)
  return undefined
}

/** One step down a data path: an object's own member, or an array's element for a segment of digits. */
function step(value: unknown, segment: string): unknown {
  if (Array.isArray(value)) {
    if (segment.length > MAX_INDEX_DIGITS) return undefined
    for (let i = 0; i < segment.length; i++) {
      const c = segment.charCodeAt(i)
      if (c < 0x30 || c > 0x39) return undefined
    }
    if (segment.length > 1 && segment[0] === '0') return undefined
    return value[Number(segment)]
  }
  if (isPlainObject(value)) return Object.hasOwn(value, segment) ? value[segment] : undefined
  return undefined
}

function evaluate(node: FilterNode, event: Record<string, unknown> | null): boolean {
  switch (node.op) {
    case 'all':
      return node.of.every((child) => evaluate(child, event))
    case 'any':
      return node.of.some((child) => evaluate(child, event))
    case 'not':
      return !evaluate(node.of, event)
    default: {
      const text = attributeText(event, node.attribute)
      if (text === undefined) return false // absent never matches (STANDARDS §9.1)
      if (node.op === 'exact') return text === node.value
      if (node.op === 'prefix') return text.startsWith(node.value)
      return text.endsWith(node.value)
    }
  }
}

function compile(node: FilterNode, key: string): CompiledFilter {
  return {
    key,
    canonical: toJson(node),
    matches(event) {
      const memo = memoOf(event)
      const known = memo.verdicts.get(key)
      if (known !== undefined) return known
      filterCounters.evaluations++
      const verdict = evaluate(node, parsedOf(event, memo))
      memo.verdicts.set(key, verdict)
      return verdict
    },
  }
}
