import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { HeraldError } from '../../src/core/errors.ts'
import { eventRoot, matchesEventType, validateEventPattern } from '../../src/core/event-pattern.ts'

test('* stands for one or more whole segments', () => {
  const cases: Array<[string, string, boolean]> = [
    ['order.*', 'order.created', true],
    ['order.*', 'order.line.added', true],
    ['order.*', 'order', false],
    ['order.*', 'orders.created', false],
    ['*.deleted', 'invoice.deleted', true],
    ['*.deleted', 'invoice.line.deleted', true],
    ['*.deleted', 'deleted', false],
    ['order.*.added', 'order.line.added', true],
    ['order.*.added', 'order.added', false],
    ['*', 'anything.at.all', true],
    ['order.created', 'order.created', true],
    ['order.created', 'order.createdx', false],
    ['a+b.(c)', 'a+b.(c)', true],
    ['a+b.(c)', 'aab.(c)', false],
  ]
  for (const [pattern, type, expected] of cases) {
    assert.equal(matchesEventType(pattern, type), expected, `${pattern} vs ${type}`)
  }
})

test('patterns are validated; the root is the first segment', () => {
  for (const bad of ['', 'order.', '.order', 'order..x', 'order.*ed', 'a b', 'x'.repeat(201), 5, null]) {
    assert.throws(() => validateEventPattern(bad), HeraldError, String(bad))
  }
  assert.equal(validateEventPattern('com.example.*'), 'com.example.*')
  assert.equal(eventRoot('order.*'), 'order')
  assert.equal(eventRoot('*.deleted'), '*')
  assert.equal(eventRoot('ping'), 'ping')
})

/** The former definition, a regular expression: the reference on inputs too small to make it backtrack long. */
function reference(pattern: string, type: string): boolean {
  const source = pattern
    .split('.')
    .map((segment) => (segment === '*' ? '[^.]+(?:\\.[^.]+)*' : segment.replace(/[\\^$+?()[\]{}|]/g, '\\$&')))
    .join('\\.')
  return new RegExp(`^${source}$`).test(type)
}

test('the segment matcher agrees with the former regular expression (property, seeded)', () => {
  const segment = fc.constantFrom('a', 'b', 'ab', '')
  const patternSegment = fc.constantFrom('a', 'b', 'ab', '*')
  fc.assert(
    fc.property(
      fc.array(patternSegment, { minLength: 1, maxLength: 6 }),
      fc.array(segment, { minLength: 1, maxLength: 8 }),
      (pattern, type) => {
        const p = pattern.join('.')
        const t = type.join('.')
        assert.equal(matchesEventType(p, t), reference(p, t), `${p} vs ${t}`)
      },
    ),
    { seed: 1012, numRuns: 5000 },
  )
})

test('the worst case of the former regular expression is answered at once (defect: ~65 s)', () => {
  const pattern = validateEventPattern('*.*.*.*.*.*.*.*.*.*.z')
  const type = Array.from({ length: 50 }, (_, i) => `s${i}`).join('.')
  const started = performance.now()
  for (let i = 0; i < 100; i++) assert.equal(matchesEventType(pattern, type), false)
  assert.equal(matchesEventType(pattern, `${type}.z`), true)
  // A bound on the order of growth, not a speed claim: the old code took ~65 s for one match.
  assert.ok(performance.now() - started < 1000, `100 matches took ${performance.now() - started} ms`)
})
