import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MAX_RETRY_AFTER_MS, nextDelay, parseRetryAfter } from '../../src/delivery/retry.ts'

const SCHEDULE = [0, 500, 5_000, 300_000]

test('the schedule gives the delay before each attempt, then gives up', () => {
  const mid = () => 0.5 // no jitter at the middle of the range
  assert.equal(nextDelay(SCHEDULE, 1, undefined, mid), 500)
  assert.equal(nextDelay(SCHEDULE, 2, undefined, mid), 5_000)
  assert.equal(nextDelay(SCHEDULE, 3, undefined, mid), 300_000)
  assert.equal(nextDelay(SCHEDULE, 4, undefined, mid), null)
})

test('±20% jitter on delays of a second or more, none below', () => {
  assert.equal(
    nextDelay(SCHEDULE, 1, undefined, () => 0),
    500,
  )
  assert.equal(
    nextDelay(SCHEDULE, 1, undefined, () => 0.999),
    500,
  )
  assert.equal(
    nextDelay(SCHEDULE, 2, undefined, () => 0),
    4_000,
  )
  assert.equal(
    nextDelay(SCHEDULE, 2, undefined, () => 1),
    6_000,
  )
  const seen = new Set(Array.from({ length: 50 }, () => nextDelay(SCHEDULE, 3, undefined)))
  assert.ok(seen.size > 1, 'jitter varies')
  for (const delay of seen) assert.ok(delay! >= 240_000 && delay! <= 360_000)
})

test('Retry-After lengthens the delay, up to an hour, never shortens it', () => {
  assert.equal(
    nextDelay(SCHEDULE, 1, 2_000, () => 0.5),
    2_000,
  )
  assert.equal(
    nextDelay(SCHEDULE, 3, 2_000, () => 0.5),
    300_000,
  )
  assert.equal(
    nextDelay(SCHEDULE, 1, 10 * MAX_RETRY_AFTER_MS, () => 0.5),
    MAX_RETRY_AFTER_MS,
  )
  assert.equal(nextDelay(SCHEDULE, 4, 1_000), null, 'Retry-After does not extend the schedule')
})

test('Retry-After: seconds or an HTTP date', () => {
  const now = Date.parse('2026-11-23T08:00:00Z')
  assert.equal(parseRetryAfter('120', now), 120_000)
  assert.equal(parseRetryAfter(['3'], now), 3_000)
  assert.equal(parseRetryAfter('Mon, 23 Nov 2026 08:01:00 GMT', now), 60_000)
  assert.equal(parseRetryAfter('Mon, 23 Nov 2026 07:00:00 GMT', now), 0)
  assert.equal(parseRetryAfter('soon', now), undefined)
  assert.equal(parseRetryAfter('', now), undefined)
  assert.equal(parseRetryAfter(undefined, now), undefined)
})
