import assert from 'node:assert/strict'
import { describe } from 'node:test'
import { type StoreHarness, storeTest } from './contract.ts'

const LEASE = 60_000

/**
 * The leadership every Store backend keeps (see MaintenanceStore in src/store/store.ts), as far as
 * one node sees it. Two nodes contending for it on one database: test/store/postgres.test.ts.
 */
export function leaderContract(
  name: string,
  open: () => Promise<StoreHarness>,
  options: { skip?: string | false } = {},
): void {
  describe(`Leadership contract: ${name}`, { skip: options.skip ?? false }, () => {
    const withStore = storeTest(open)

    withStore(
      'a node that claims leads; renewing keeps its term; the nodes list shows it',
      async ({ store }) => {
        await store.joinCluster('node-a')
        await store.joinCluster('node-b')
        assert.deepEqual(
          (await store.nodes()).map((node) => [node.id, node.leader]),
          [
            ['node-a', false],
            ['node-b', false],
          ],
          'no leader before anyone claims',
        )
        const first = await store.claimLeadership('node-a', LEASE)
        assert.equal(first.isMe, true)
        assert.equal(first.leader, 'node-a')
        assert.ok(first.term >= 1)
        const renewed = await store.claimLeadership('node-a', LEASE)
        assert.deepEqual(renewed, first, 'a renewal keeps the term')
        assert.deepEqual(
          (await store.nodes()).map((node) => [node.id, node.leader]),
          [
            ['node-a', true],
            ['node-b', false],
          ],
        )
      },
    )

    withStore('a released leadership is taken by the next claim, in a later term', async ({ store }) => {
      await store.joinCluster('node-a')
      await store.joinCluster('node-b')
      const first = await store.claimLeadership('node-a', LEASE)
      await store.releaseLeadership('node-b') // not the leader: changes nothing
      assert.deepEqual(
        (await store.nodes()).map((node) => node.leader),
        [true, false],
      )
      await store.releaseLeadership('node-a')
      assert.deepEqual(
        (await store.nodes()).map((node) => node.leader),
        [false, false],
        'released: no one leads',
      )
      const next = await store.claimLeadership('node-b', LEASE)
      assert.equal(next.isMe, true)
      assert.equal(next.leader, 'node-b')
      assert.ok(next.term >= first.term, 'terms never go back')
      assert.deepEqual(
        (await store.nodes()).map((node) => node.leader),
        [false, true],
      )
    })

    withStore('a leader that leaves the cluster is no longer listed', async ({ store }) => {
      await store.joinCluster('node-a')
      await store.claimLeadership('node-a', LEASE)
      await store.releaseLeadership('node-a')
      await store.leaveCluster('node-a')
      assert.deepEqual(await store.nodes(), [])
    })
  })
}
