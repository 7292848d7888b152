import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { matches, parsePattern } from '../../src/access/patterns.ts'
import { loggableUrl } from '../../src/http/access.ts'

const reaches = (pattern: string, topic: string) => matches(parsePattern(pattern, 'p'), topic)

test('topic patterns: * is one segment, a final ** one or more, the rest literal', () => {
  const table: Array<[string, string, boolean]> = [
    ['orders', 'orders', true],
    ['orders', 'orders/eu', false],
    ['orders/*', 'orders/eu', true],
    ['orders/*', 'orders', false],
    ['orders/*', 'orders/eu/paris', false],
    ['orders/**', 'orders/eu', true],
    ['orders/**', 'orders/eu/paris', true],
    ['orders/**', 'orders', false],
    ['orders/**', 'ordersx/eu', false],
    ['*', 'billing', true],
    ['*', 'a/b', false],
    ['**', 'a/b/c', true],
    ['*/eu', 'orders/eu', true],
    ['*/eu', 'orders/us', false],
    ['a/*/c', 'a/b/c', true],
    ['a/*/c', 'a/b/d', false],
    ['ord', 'orders', false],
  ]
  for (const [pattern, topic, expected] of table)
    assert.equal(reaches(pattern, topic), expected, `${pattern} ~ ${topic}`)
})

test('patterns that are not patterns are refused with the field named', () => {
  for (const bad of ['', 'a//b', '**/a', 'a/**/b', 'a b', '/a', 'a/', '.a', 'a/*x', 'x'.repeat(201), 7]) {
    assert.throws(
      () => parsePattern(bad, 'scopes[0].topics[0]'),
      (error: { status: number; field: string }) =>
        error.status === 400 && error.field === 'scopes[0].topics[0]',
      String(bad),
    )
  }
})

test('a topic always reaches the pattern of itself and ** ; a pattern with no wildcard reaches only itself', () => {
  const segment = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,5}$/)
  const topic = fc.array(segment, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('/'))
  fc.assert(
    fc.property(topic, topic, (a, b) => {
      assert.ok(reaches(a, a))
      assert.ok(reaches('**', a))
      assert.equal(reaches(a, b), a === b)
      // `prefix/**` reaches exactly the topics under prefix.
      assert.equal(reaches(`${a}/**`, b), b.startsWith(`${a}/`))
    }),
  )
})

test('an access_token never reaches a log line whole', () => {
  assert.equal(
    loggableUrl('/v1/stream?topic=a&access_token=hk_secret&x=1'),
    '/v1/stream?topic=a&access_token=%5Bredacted%5D&x=1',
  )
  assert.equal(loggableUrl('/v1/topics/a/events?after=1'), '/v1/topics/a/events?after=1')
  assert.ok(!loggableUrl('/v1/ws?access_token=eyJ.a.b&access_token=again').includes('eyJ'))
  // The name as the query parser decodes it: access%5Ftoken is access_token too.
  assert.ok(!loggableUrl('/v1/stream?topic=a&access%5Ftoken=hk_secret').includes('hk_secret'))
})
