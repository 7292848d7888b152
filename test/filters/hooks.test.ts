import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { HeraldConfig } from '../../src/config/config.ts'
import { filterCounters } from '../../src/core/filter.ts'
import { type Receiver, startReceiver } from '../delivery/receiver.ts'
import { problemOf, publish, readAll, sleep, startTestServer, type TestServer } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'

/**
 * Hooks with a filter, on both stores: created and updated with one (a bad one is a 400 and changes
 * nothing), shown in the hook view, and evaluated at fan-out: each dialect delivers exactly the
 * events it matches to a real receiver.
 */

const skipPostgres = await skipWithoutPostgres()
const schema = testSchema('flt')

for (const backend of [
  { name: 'SQLite', skip: false as const, config: {} },
  {
    name: 'PostgreSQL',
    skip: skipPostgres,
    config: { databaseUrl: TEST_DATABASE_URL, databaseSchema: schema } satisfies Partial<HeraldConfig>,
  },
]) {
  describe(`hook filters: ${backend.name}`, { skip: backend.skip }, () => {
    let server: TestServer
    let receiver: Receiver
    before(async () => {
      receiver = await startReceiver()
      server = await startTestServer({
        allowPrivateTargets: true,
        retryScheduleMs: [0, 100],
        deliveryTimeoutMs: 2_000,
        ...backend.config,
      })
    })
    after(async () => {
      await server?.close()
      await receiver?.close()
      if (backend.name === 'PostgreSQL') await dropSchema(schema)
    })

    const api = async (method: string, path: string, body?: unknown) =>
      fetch(`${server.url}${path}`, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      })

    test('each dialect delivers exactly the events it matches', async () => {
      const topic = 'hf-orders'
      const cases: Array<[string, unknown]> = [
        ['exact', { exact: { 'data.customer.tier': 'gold' } }],
        ['prefix', { prefix: { type: 'order.pa' } }],
        ['suffix', { suffix: { subject: '-eu' } }],
        ['all', [{ prefix: { type: 'order.' } }, { exact: { 'data.total': '42' } }]],
        ['any', { any: [{ exact: { type: 'order.refunded' } }, { exact: { 'data.rush': 'true' } }] }],
        ['not', { not: { exact: { 'data.customer.tier': 'gold' } } }],
        ['none', null],
      ]
      const hooks = new Map<string, string>()
      for (const [name, filter] of cases) {
        const response = await api('POST', '/v1/hooks', {
          target_url: `${receiver.url}/${name}`,
          topic,
          ...(filter === null ? {} : { filter }),
        })
        const hook = (await response.json()) as { id: string; filter: unknown }
        assert.equal(response.status, 201)
        hooks.set(name, hook.id)
        if (filter === null) assert.equal(hook.filter, null)
        else
          assert.ok(
            hook.filter !== null && typeof hook.filter === 'object',
            `${name}: the view shows the filter`,
          )
      }
      const events = [
        { type: 'order.created', subject: 'o1-eu', data: { customer: { tier: 'gold' }, total: 42 } },
        {
          type: 'order.paid',
          subject: 'o2-us',
          data: { customer: { tier: 'silver' }, total: 10, rush: true },
        },
        { type: 'order.refunded', data: { customer: { tier: 'gold' } } },
        { type: 'user.created', subject: 'u-eu', data: { total: 42 } },
        { type: 'order.paid', data: 'not an object' },
      ]
      // One batch, so one fan-out sees them all.
      assert.equal((await publish(server.url, topic, events)).status, 201)
      const expected: Record<string, number[]> = {
        exact: [1, 3],
        prefix: [2, 5],
        suffix: [1, 4],
        all: [1],
        any: [2, 3],
        not: [2, 4, 5],
        none: [1, 2, 3, 4, 5],
      }
      const total = Object.values(expected).reduce((sum, seqs) => sum + seqs.length, 0)
      await receiver.waitFor(total)
      await sleep(300)
      for (const [name, seqs] of Object.entries(expected)) {
        const got = receiver.received
          .filter((request) => request.url === `/${name}`)
          .map((request) => (JSON.parse(request.body) as { seq: number }).seq)
          .sort((a, b) => a - b)
        assert.deepEqual(got, seqs, name)
      }
      assert.equal(receiver.received.length, total, 'no delivery more')
      for (const id of hooks.values()) assert.equal((await api('DELETE', `/v1/hooks/${id}`)).status, 204)
    })

    test('fan-out parses an event only when a candidate hook has a filter, once for all of them', async () => {
      const plain = (await (
        await api('POST', '/v1/hooks', { target_url: `${receiver.url}/p`, topic: 'hf-lazy' })
      ).json()) as { id: string }
      let before = { ...filterCounters }
      assert.equal((await publish(server.url, 'hf-lazy', [{ type: 'x' }, { type: 'y' }])).status, 201)
      assert.equal(filterCounters.parses - before.parses, 0, 'no hook with a filter: no parse')
      const filtered = []
      for (const filter of [
        { exact: { type: 'x' } },
        [{ exact: { type: 'x' } }],
        { prefix: { type: 'y' } },
      ]) {
        const response = await api('POST', '/v1/hooks', {
          target_url: `${receiver.url}/f`,
          topic: 'hf-lazy',
          filter,
        })
        filtered.push(((await response.json()) as { id: string }).id)
      }
      before = { ...filterCounters }
      assert.equal(
        (await publish(server.url, 'hf-lazy', [{ type: 'x' }, { type: 'y' }, { type: 'z' }])).status,
        201,
      )
      assert.equal(filterCounters.parses - before.parses, 3, 'each event parsed once')
      assert.equal(filterCounters.evaluations - before.evaluations, 6, 'three events by two distinct filters')
      for (const id of [plain.id, ...filtered]) {
        assert.equal((await api('DELETE', `/v1/hooks/${id}`)).status, 204)
      }
    })

    test('a filter is set, changed and removed with PATCH; a bad one is a 400 that changes nothing', async () => {
      const created = await api('POST', '/v1/hooks', {
        target_url: `${receiver.url}/patch`,
        topic: 'hf-patch',
        filter: { all: [{ exact: { type: 'b' } }, { exact: { type: 'b' } }] },
      })
      const hook = (await created.json()) as { id: string; filter: unknown }
      assert.deepEqual(hook.filter, { exact: { type: 'b' } }, 'stored in its canonical form')
      for (const bad of [{}, { exact: { type: 1 } }, { sql: 'true' }, [], 'type = b', { not: [] }]) {
        const answer = await api('PATCH', `/v1/hooks/${hook.id}`, { filter: bad })
        const problem = await problemOf(answer, 400)
        assert.ok(problem.field?.startsWith('filter'), JSON.stringify(bad))
        const refused = await api('POST', '/v1/hooks', {
          target_url: `${receiver.url}/x`,
          topic: 'hf-patch',
          filter: bad,
        })
        assert.ok((await problemOf(refused, 400)).field?.startsWith('filter'))
      }
      // The audit trail records the filter a hook was created with.
      const trail = await readAll(server.url, 'herald.system')
      const audited = trail.find((event) => event.type === 'hook.created' && event.subject === hook.id)
      assert.ok(audited, 'hook.created in the audit trail')
      assert.deepEqual((audited.data as { filter: unknown }).filter, { exact: { type: 'b' } })
      const now = (await (await api('GET', `/v1/hooks/${hook.id}`)).json()) as { filter: unknown }
      assert.deepEqual(now.filter, { exact: { type: 'b' } }, 'unchanged by the refused ones')
      const changed = await api('PATCH', `/v1/hooks/${hook.id}`, { filter: { prefix: { type: 'a' } } })
      assert.deepEqual(((await changed.json()) as { filter: unknown }).filter, { prefix: { type: 'a' } })
      const start = receiver.received.length
      await publish(server.url, 'hf-patch', [{ type: 'b' }, { type: 'ab' }])
      await receiver.waitFor(start + 1)
      const cleared = await api('PATCH', `/v1/hooks/${hook.id}`, { filter: null })
      assert.equal(((await cleared.json()) as { filter: unknown }).filter, null)
      await publish(server.url, 'hf-patch', [{ type: 'c' }])
      await receiver.waitFor(start + 2)
      await sleep(300)
      const seqs = receiver.received
        .slice(start)
        .filter((request) => request.url === '/patch')
        .map((request) => (JSON.parse(request.body) as { seq: number }).seq)
      assert.deepEqual(seqs, [2, 3])
      const listed = (await (await api('GET', '/v1/hooks')).json()) as {
        hooks: Array<{ id: string; filter: unknown }>
      }
      assert.equal(listed.hooks.find((each) => each.id === hook.id)?.filter, null)
      assert.equal((await api('DELETE', `/v1/hooks/${hook.id}`)).status, 204)
    })
  })
}
