import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { compareSchemas } from '../../src/event-types/compatibility.ts'

const base = {
  type: 'object',
  properties: { total: { type: 'number', minimum: 0 }, status: { enum: ['new', 'paid'] } },
  required: ['total'],
}

function verdict(next: unknown, previous: unknown = base) {
  return compareSchemas(previous, next)
}

describe('Schema compatibility (a new version against the previous one)', () => {
  test('the same schema, or one that accepts more, is compatible', () => {
    assert.equal(verdict(base).backward, 'compatible')
    assert.equal(verdict({ ...base, required: [] }).backward, 'compatible', 'a property no longer required')
    assert.equal(
      verdict({ ...base, properties: { ...base.properties, total: { type: ['number', 'string'] } } })
        .backward,
      'compatible',
      'a type widened, a bound dropped',
    )
    assert.equal(
      verdict({ ...base, properties: { ...base.properties, status: { enum: ['new', 'paid', 'void'] } } })
        .backward,
      'compatible',
    )
    assert.equal(verdict({ ...base, description: 'Annotations change nothing.' }).backward, 'compatible')
    assert.equal(verdict(true).backward, 'compatible')
    assert.equal(verdict({ type: 'number' }, { type: 'integer' }).backward, 'compatible', 'integer ⊂ number')
  })

  const breaking: Array<[string, unknown, string]> = [
    ['a new required property', { ...base, required: ['total', 'currency'] }, '/required'],
    [
      'a type narrowed',
      { ...base, properties: { ...base.properties, total: { type: 'integer' } } },
      '/properties/total/type',
    ],
    [
      'a lower bound raised',
      { ...base, properties: { ...base.properties, total: { type: 'number', minimum: 1 } } },
      '/properties/total/minimum',
    ],
    [
      'an upper bound added',
      { ...base, properties: { ...base.properties, total: { type: 'number', minimum: 0, maximum: 10 } } },
      '/properties/total/maximum',
    ],
    [
      'an enum value dropped',
      { ...base, properties: { ...base.properties, status: { enum: ['new'] } } },
      '/properties/status/enum',
    ],
    ['additional properties closed', { ...base, additionalProperties: false }, '/additionalProperties'],
    [
      'a new property constrained where any value was accepted',
      { ...base, properties: { ...base.properties, note: { type: 'string' } } },
      '/properties/note/type',
    ],
    ['nothing accepted', false, '/'],
    ['items must be unique', { type: 'array', uniqueItems: true }, '/uniqueItems'],
  ]
  for (const [what, next, pointer] of breaking) {
    test(`breaking: ${what}`, () => {
      const previous = (next as { type?: string }).type === 'array' ? { type: 'array' } : base
      const result = verdict(next, previous)
      assert.equal(result.backward, 'breaking', JSON.stringify(result))
      assert.ok(
        result.findings.some((f) => f.kind === 'breaking' && f.pointer === pointer),
        `${pointer} in ${JSON.stringify(result.findings)}`,
      )
    })
  }

  test('property names are data: one named like an object prototype member is compared as any other', () => {
    // The previous version allowed no property at all; a new optional one accepts more.
    const previous = { type: 'object', additionalProperties: false }
    const next = {
      type: 'object',
      properties: { constructor: { type: 'string' } },
      additionalProperties: false,
    }
    assert.equal(verdict(next, previous).backward, 'compatible', JSON.stringify(verdict(next, previous)))
  })

  test('what it cannot decide is reported as unknown, with its pointer, never as compatible', () => {
    const pattern = verdict({
      ...base,
      properties: { ...base.properties, code: true },
      allOf: [{ type: 'object' }],
    })
    assert.equal(pattern.backward, 'unknown')
    assert.deepEqual(
      pattern.findings.map((f) => [f.pointer, f.kind]),
      [['/allOf', 'unknown']],
    )
    const changedPattern = verdict({ type: 'string', pattern: '^b' }, { type: 'string', pattern: '^a' })
    assert.equal(changedPattern.backward, 'unknown')
  })
})
