import assert from 'node:assert/strict'
import { describe } from 'node:test'
import type { PresenceRecord } from '../../src/store/store.ts'
import { type StoreHarness, storeTest } from './contract.ts'

const T0 = 1_700_000_000_000
const TTL = 30_000

function member(topic: string, client: string, fields: Partial<PresenceRecord> = {}): PresenceRecord {
  return {
    topic,
    client,
    node_id: 'node-a',
    sub: null,
    info: null,
    since: T0,
    expires_at: T0 + TTL,
    ...fields,
  }
}

/** Presence members every Store backend keeps (PresenceStore in src/store/store.ts). */
export function presenceContract(
  name: string,
  open: () => Promise<StoreHarness>,
  options: { skip?: string | false } = {},
): void {
  describe(`Presence contract: ${name}`, { skip: options.skip ?? false }, () => {
    const withStore = storeTest(open)

    withStore('members join, are listed per topic in order, update, and leave', async ({ store }) => {
      assert.equal(await store.joinPresence(member('room', 'c2', { since: T0 + 1 }), 10, T0), true)
      assert.equal(
        await store.joinPresence(member('room', 'c1', { sub: 'alice', info: '{"name":"A"}' }), 10, T0),
        true,
      )
      assert.equal(await store.joinPresence(member('other', 'c1'), 10, T0), true)
      const listed = await store.presence(['room'], T0)
      assert.deepEqual(
        listed.map((m) => [m.client, m.sub, m.info, m.since]),
        [
          ['c1', 'alice', '{"name":"A"}', T0],
          ['c2', null, null, T0 + 1],
        ],
      )
      assert.deepEqual(
        (await store.presence(['room', 'other', 'none'], T0)).map((m) => `${m.topic}:${m.client}`),
        ['other:c1', 'room:c1', 'room:c2'],
      )
      // Joining again updates the member (its info), keeping when it joined.
      assert.equal(
        await store.joinPresence(member('room', 'c1', { info: '{"name":"B"}', since: T0 + 5 }), 10, T0),
        true,
      )
      const updated = (await store.presence(['room'], T0)).find((m) => m.client === 'c1')!
      assert.equal(updated.info, '{"name":"B"}')
      assert.equal(updated.since, T0)
      assert.equal(await store.leavePresence('room', 'c1'), true)
      assert.equal(await store.leavePresence('room', 'c1'), false)
      assert.deepEqual(
        (await store.presence(['room'], T0)).map((m) => m.client),
        ['c2'],
      )
    })

    withStore('a topic takes at most maxMembers live members; a member may join again', async ({ store }) => {
      assert.equal(await store.joinPresence(member('room', 'c1'), 2, T0), true)
      assert.equal(await store.joinPresence(member('room', 'c2'), 2, T0), true)
      assert.equal(await store.joinPresence(member('room', 'c3'), 2, T0), false, 'full')
      assert.equal(await store.joinPresence(member('room', 'c2', { info: '1' }), 2, T0), true, 'already in')
      assert.equal(await store.joinPresence(member('elsewhere', 'c3'), 2, T0), true, 'per topic')
      // An expired member does not count.
      assert.equal(await store.joinPresence(member('room', 'c3'), 2, T0 + TTL), true)
    })

    withStore(
      'expired members are not listed; refresh keeps a node’s alive; prune and clear delete',
      async ({ store }) => {
        await store.joinPresence(member('room', 'a1'), 10, T0)
        await store.joinPresence(member('room', 'a2'), 10, T0)
        await store.joinPresence(member('room', 'b1', { node_id: 'node-b' }), 10, T0)
        assert.equal(await store.refreshPresence('node-a', T0 + 2 * TTL), 2)
        const later = T0 + TTL
        assert.deepEqual(
          (await store.presence(['room'], later)).map((m) => m.client),
          ['a1', 'a2'],
          'node-b did not refresh: its member is gone at its expiry',
        )
        assert.equal(await store.prunePresence(later), 1)
        assert.equal(await store.prunePresence(later), 0)
        assert.equal(await store.clearPresence('node-a'), 2)
        assert.deepEqual(await store.presence(['room'], T0), [])
      },
    )
  })
}
