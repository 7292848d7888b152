import assert from 'node:assert/strict'
import { test } from 'node:test'
import { fanOut } from '../../src/delivery/fan-out.ts'
import { disableReason, outcomeHealth } from '../../src/delivery/hook-health.ts'

test('a hook recovers when its latest outcome is a success; failures before it do not count', () => {
  const health = outcomeHealth([
    { hookId: 'a', result: 'retry' },
    { hookId: 'b', result: 'delivered' },
    { hookId: 'a', result: 'delivered' },
    { hookId: 'b', result: 'failed' },
    { hookId: 'c', result: 'gone' },
  ])
  assert.deepEqual(health.countsAsFailure, [false, false, false, true, true])
  assert.deepEqual(health.recovered, ['a'])
})

test('a webhook failing for disableAfterMs is disabled, a WebSub subscription never', () => {
  const since = Date.parse('2026-01-01T00:00:00Z')
  const hook = { kind: 'webhook' as const, state: 'active' as const, failing_since: since }
  assert.equal(disableReason(hook, since + 999, 1000), undefined)
  assert.equal(disableReason(hook, since + 1000, 1000), 'failing continuously since 2026-01-01T00:00:00.000Z')
  assert.equal(disableReason({ ...hook, kind: 'websub' }, since + 5000, 1000), undefined)
  assert.equal(disableReason({ ...hook, state: 'disabled' }, since + 5000, 1000), undefined)
  assert.equal(disableReason({ ...hook, failing_since: null }, since + 5000, 1000), undefined)
})

test('fan-out: one delivery per matching event; an ordered queue has one due, and none when busy', () => {
  const events = [
    { seq: 1, id: 'e1', type: 'order.created', json: '{}' },
    { seq: 2, id: 'e2', type: 'user.created', json: '{}' },
    { seq: 3, id: 'e3', type: 'order.paid', json: '{}' },
  ]
  const created = fanOut(
    [
      { id: 'all', event: null, ordered: false, queueBusy: false },
      { id: 'orders', event: 'order.*', ordered: true, queueBusy: false },
      { id: 'busy', event: 'order.*', ordered: true, queueBusy: true },
    ],
    events,
    100,
  )
  assert.deepEqual(
    created.map((d) => [d.hookId, d.seq, d.dueAt]),
    [
      ['all', 1, 100],
      ['all', 2, 100],
      ['all', 3, 100],
      ['orders', 1, 100],
      ['orders', 3, null],
      ['busy', 1, null],
      ['busy', 3, null],
    ],
  )
})
