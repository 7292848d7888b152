import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { HeraldError } from '../../src/core/errors.ts'
import { FILTER_LIMITS, filterCounters, parseFilter, parseFilterText } from '../../src/core/filter.ts'

/** An event as a Feed hands it out: its JSON, with topic and seq. */
function event(fields: Record<string, unknown>): { json: string } {
  return {
    json: JSON.stringify({
      specversion: '1.0',
      id: 'e1',
      source: '/v1/topics/orders',
      type: 'order.created',
      time: '2026-01-01T00:00:00Z',
      topic: 'orders',
      seq: 7,
      ...fields,
    }),
  }
}

function matches(filter: unknown, fields: Record<string, unknown> = {}): boolean {
  return parseFilter(filter).matches(event(fields))
}

/** The 400 a bad filter is, with the words its detail must hold. */
function refused(filter: unknown, words: string, field?: string): void {
  assert.throws(
    () => (typeof filter === 'string' ? parseFilterText(filter) : parseFilter(filter)),
    (error: unknown) => {
      assert.ok(error instanceof HeraldError, `a HeraldError, not ${String(error)}`)
      assert.equal(error.status, 400)
      assert.equal(error.code, 'invalid-request')
      assert.ok(error.message.includes(words), `"${error.message}" says "${words}"`)
      if (field !== undefined) assert.equal(error.field, field)
      return true
    },
  )
}

test('exact, prefix and suffix compare an attribute as a string', () => {
  assert.equal(matches({ exact: { type: 'order.created' } }), true)
  assert.equal(matches({ exact: { type: 'order.create' } }), false)
  assert.equal(matches({ prefix: { type: 'order.' } }), true)
  assert.equal(matches({ prefix: { type: 'invoice.' } }), false)
  assert.equal(matches({ suffix: { type: '.created' } }), true)
  assert.equal(matches({ suffix: { type: '.deleted' } }), false)
  assert.equal(matches({ exact: { topic: 'orders' } }), true, "Herald's topic attribute")
  assert.equal(matches({ exact: { seq: '7' } }), true, 'a number attribute compares by its JSON text')
  assert.equal(matches({ exact: { region: 'eu' } }, { region: 'eu' }), true, 'an extension')
  assert.equal(matches({ exact: { flag: 'true' } }, { flag: true }), true, 'a boolean extension')
})

test('an absent attribute matches no exact, prefix or suffix, even an empty one; not of it does', () => {
  assert.equal(matches({ exact: { subject: '' } }), false)
  assert.equal(matches({ prefix: { subject: '' } }), false)
  assert.equal(matches({ suffix: { subject: '' } }), false)
  assert.equal(matches({ not: { exact: { subject: 'x' } } }), true)
  assert.equal(matches({ prefix: { subject: '' } }, { subject: 'a' }), true)
})

test('data.<path> reads into the data; numbers and booleans by their JSON text; objects, arrays, null never', () => {
  const data = { customer: { tier: 'gold', age: 42, vip: true, tags: ['a', 'b'], none: null, n: 1.5 } }
  assert.equal(matches({ exact: { 'data.customer.tier': 'gold' } }, { data }), true)
  assert.equal(matches({ exact: { 'data.customer.tier': 'silver' } }, { data }), false)
  assert.equal(matches({ exact: { 'data.customer.age': '42' } }, { data }), true)
  assert.equal(matches({ prefix: { 'data.customer.age': '4' } }, { data }), true)
  assert.equal(matches({ exact: { 'data.customer.n': '1.5' } }, { data }), true)
  assert.equal(matches({ exact: { 'data.customer.vip': 'true' } }, { data }), true)
  assert.equal(matches({ exact: { 'data.customer.tags.1': 'b' } }, { data }), true, 'an array index')
  assert.equal(matches({ exact: { 'data.customer.tags.01': 'b' } }, { data }), false)
  assert.equal(matches({ prefix: { 'data.customer': '' } }, { data }), false, 'an object')
  assert.equal(matches({ prefix: { 'data.customer.tags': '' } }, { data }), false, 'an array')
  assert.equal(matches({ prefix: { 'data.customer.none': '' } }, { data }), false, 'null')
  assert.equal(matches({ exact: { 'data.customer.missing': 'x' } }, { data }), false)
  assert.equal(matches({ exact: { 'data.x': 'y' } }, {}), false, 'no data')
  assert.equal(matches({ exact: { 'data.x': 'y' } }, { data: 'a string' }), false)
  assert.equal(matches({ exact: { 'data.toString': 'x' } }, { data: {} }), false, 'own members only')
  assert.equal(matches({ exact: { 'data.a b.c': 'd' } }, { data: { 'a b': { c: 'd' } } }), true)
})

test('all, any, not, and a top-level array as all', () => {
  const gold = { data: { tier: 'gold' } }
  const both = [{ prefix: { type: 'order.' } }, { exact: { 'data.tier': 'gold' } }]
  assert.equal(matches(both, gold), true)
  assert.equal(matches(both, { data: { tier: 'silver' } }), false)
  assert.equal(matches({ all: both }, gold), true)
  assert.equal(matches({ any: [{ exact: { type: 'x' } }, { exact: { 'data.tier': 'gold' } }] }, gold), true)
  assert.equal(matches({ any: [{ exact: { type: 'x' } }, { exact: { type: 'y' } }] }, gold), false)
  assert.equal(matches({ not: { exact: { type: 'order.created' } } }), false)
  assert.equal(matches({ not: { not: { exact: { type: 'order.created' } } } }), true)
})

test('equal filters written differently share one canonical key; different ones do not', () => {
  const key = (filter: unknown) => parseFilter(filter).key
  const a = { exact: { type: 'a' } }
  const b = { prefix: { subject: 'b' } }
  const c = { suffix: { 'data.x': 'c' } }
  assert.equal(key([a, b]), key({ all: [b, a] }))
  assert.equal(key({ all: [a, { all: [b, c] }] }), key({ all: [{ all: [c, a] }, b, a] }))
  assert.equal(key({ any: [a] }), key(a))
  assert.equal(key({ not: { not: a } }), key(a))
  assert.equal(key({ any: [a, b] }), key({ any: [b, a, b] }))
  assert.notEqual(key({ any: [a, b] }), key({ all: [a, b] }))
  assert.notEqual(key({ exact: { type: 'a' } }), key({ prefix: { type: 'a' } }))
  assert.notEqual(key({ not: a }), key(a))
  // The key is itself a filter, with the same key.
  assert.equal(key(JSON.parse(key({ all: [c, { any: [b, a] }] }))), key({ all: [{ any: [a, b] }, c] }))
})

test('each malformed shape is a 400 naming what is wrong', () => {
  refused('{"exact":', 'not valid JSON')
  refused('', 'not valid JSON')
  refused(null, 'JSON object with one dialect')
  refused('"type"', 'JSON object with one dialect')
  refused(42, 'JSON object with one dialect')
  refused({}, 'empty object')
  refused({ exact: { type: 'a' }, prefix: { type: 'a' } }, 'exactly one dialect')
  refused({ sql: "type = 'a'" }, 'CESQL')
  refused({ equals: { type: 'a' } }, 'Unknown dialect "equals"')
  refused({ exact: 'type' }, '"exact" is an object', 'filter/exact')
  refused({ exact: {} }, 'exactly one attribute; this one names 0')
  refused({ prefix: { type: 'a', subject: 'b' } }, 'exactly one attribute; this one names 2')
  refused({ exact: { type: 42 } }, 'is a string', 'filter/exact/type')
  refused({ exact: { type: null } }, 'is a string')
  refused({ exact: { Type: 'a' } }, 'not an attribute')
  refused({ exact: { 'ty-pe': 'a' } }, 'not an attribute')
  refused({ exact: { '': 'a' } }, 'not an attribute')
  refused({ exact: { data: 'a' } }, 'data.<path>')
  refused({ exact: { 'data.': 'a' } }, 'empty segment')
  refused({ exact: { 'data.a..b': 'a' } }, 'empty segment')
  refused({ exact: { type: '\ud800' } }, 'lone surrogate')
  refused({ all: [] }, 'empty list')
  refused({ any: {} }, 'non-empty array', 'filter/any')
  refused([], 'empty list')
  refused({ all: [[{ exact: { type: 'a' } }]] }, 'JSON object with one dialect', 'filter/all/0')
  refused({ not: [{ exact: { type: 'a' } }] }, 'JSON object with one dialect', 'filter/not')
  refused({ all: [{ exact: { type: 'a' } }, { nope: 1 }] }, 'Unknown dialect', 'filter/all/1')
})

test('each bound is enforced: bytes, depth, expressions, value length, path segments', () => {
  let deep: unknown = { exact: { type: 'a' } }
  for (let i = 1; i < FILTER_LIMITS.depth; i++) deep = { not: deep }
  assert.ok(parseFilter(deep), 'depth 8 is allowed')
  refused({ not: deep }, 'deeper than 8')
  const leaves = (n: number) => Array.from({ length: n }, (_, i) => ({ exact: { type: `t${i}` } }))
  assert.ok(parseFilter({ any: leaves(63) }), '64 expressions are allowed')
  refused({ any: leaves(64) }, 'more than 64 expressions')
  refused({ any: leaves(100_000) }, 'more than 64 expressions')
  assert.ok(parseFilter({ exact: { type: 'x'.repeat(1024) } }))
  refused({ exact: { type: 'x'.repeat(1025) } }, 'at most 1024 characters')
  const path = (n: number) => `data.${Array.from({ length: n }, () => 'a').join('.')}`
  assert.ok(parseFilter({ exact: { [path(16)]: 'x' } }))
  refused({ exact: { [path(17)]: 'x' } }, 'at most 16 segments')
  const big = { any: Array.from({ length: 5 }, (_, i) => ({ exact: { type: `${i}${'y'.repeat(1000)}` } })) }
  refused(big, 'more than 4096 bytes')
  refused(JSON.stringify(big), 'more than 4096 bytes')
  refused(`${' '.repeat(4097)}{}`, 'more than 4096 bytes')
  refused('['.repeat(5000), 'more than 4096 bytes')
  refused('['.repeat(4000), 'not valid JSON')
  refused(`${'{"not":'.repeat(500)}{"exact":{"type":"a"}}${'}'.repeat(500)}`, 'deeper than 8')
})

test('an event is parsed once and a filter key evaluated once per event, however many ask', () => {
  const one = event({ data: { tier: 'gold' } })
  const filters = [
    parseFilter({ all: [{ exact: { 'data.tier': 'gold' } }, { prefix: { type: 'order' } }] }),
    parseFilter([{ prefix: { type: 'order' } }, { exact: { 'data.tier': 'gold' } }]),
    parseFilter({ exact: { type: 'order.created' } }),
  ]
  const before = { ...filterCounters }
  for (let subscriber = 0; subscriber < 100; subscriber++) {
    for (const filter of filters) assert.equal(filter.matches(one), true)
  }
  assert.equal(filterCounters.parses - before.parses, 1)
  assert.equal(filterCounters.evaluations - before.evaluations, 2, 'two distinct filters')
  // Another event object (another read of it) is evaluated on its own.
  parseFilter({ exact: { type: 'order.created' } }).matches(event({}))
  assert.equal(filterCounters.evaluations - before.evaluations, 3)
})

test('any JSON is a filter or a 400 from Herald, never another error, and quickly', () => {
  const attribute = fc.oneof(
    fc.constantFrom('type', 'source', 'subject', 'topic', 'data.a', 'data.a.b', 'data', 'X', ''),
    fc.string({ maxLength: 30 }),
  )
  const dialect = fc.oneof(
    fc.constantFrom('exact', 'prefix', 'suffix', 'all', 'any', 'not', 'sql'),
    fc.string({ maxLength: 8 }),
  )
  const { filter: shaped } = fc.letrec((tie) => ({
    filter: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.dictionary(dialect, fc.dictionary(attribute, fc.oneof(fc.string(), fc.jsonValue())), {
        maxKeys: 2,
      }),
      fc.dictionary(dialect, fc.array(tie('filter'), { maxLength: 4 }), { maxKeys: 2 }),
      fc.dictionary(dialect, tie('filter'), { maxKeys: 2 }),
      fc.array(tie('filter'), { maxLength: 4 }),
      fc.jsonValue(),
    ),
  }))
  const sample = event({ subject: 'abc', data: { a: { b: 'c' } } })
  fc.assert(
    fc.property(fc.oneof(shaped, fc.jsonValue()), fc.boolean(), (value, asText) => {
      const started = performance.now()
      try {
        const compiled = asText ? parseFilterText(JSON.stringify(value) ?? 'undefined') : parseFilter(value)
        assert.equal(typeof compiled.matches(sample), 'boolean')
        assert.equal(
          parseFilter(JSON.parse(compiled.key)).key,
          compiled.key,
          'the key is its own canonical form',
        )
      } catch (error) {
        if (!(error instanceof HeraldError) || error.status !== 400) throw error
      }
      assert.ok(performance.now() - started < 200, 'parsed in well under a second')
    }),
    { numRuns: 3000 },
  )
  fc.assert(
    fc.property(fc.string({ maxLength: 5000 }), (text) => {
      try {
        parseFilterText(text)
      } catch (error) {
        if (!(error instanceof HeraldError) || error.status !== 400) throw error
      }
    }),
    { numRuns: 1000 },
  )
})
