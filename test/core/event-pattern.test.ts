import assert from 'node:assert/strict'
import { test } from 'node:test'
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
