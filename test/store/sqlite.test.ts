import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'
import { ROOT, tempDir } from '../helpers.ts'
import { type StoreHarness, storeContract } from './contract.ts'
import { deliveryContract } from './delivery-contract.ts'

async function openSqlite(): Promise<StoreHarness> {
  const dataDir = await tempDir()
  let store: Store = new SqliteStore({ dataDir })
  return {
    get store() {
      return store
    },
    async reopen() {
      await store.close()
      store = new SqliteStore({ dataDir })
      return store
    },
    async cleanup() {
      await store.close()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

storeContract('SQLite', openSqlite)
deliveryContract('SQLite', openSqlite)

test('two processes appending to one SQLite file keep seq gapless (no in-process counter)', async () => {
  const dataDir = await tempDir()
  const script = `
    import { SqliteStore } from ${JSON.stringify(join(ROOT, 'src/store/sqlite/sqlite-store.ts'))}
    import { prepareEvent } from ${JSON.stringify(join(ROOT, 'src/core/event.ts'))}
    const store = new SqliteStore({ dataDir: process.argv[2] })
    const pending = []
    for (let i = 0; i < 300; i++) {
      pending.push(store.append('shared', [prepareEvent('shared', { type: 'w' + process.argv[3] }, new Date())], { now: Date.now() }))
      if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    }
    await Promise.all(pending)
    await store.close()`
  // A file, not --eval: the store's writer thread would inherit --input-type and refuse to load.
  const file = join(dataDir, 'writer.mjs')
  await writeFile(file, script)
  const run = (writer: number) =>
    new Promise<number | null>((resolve) =>
      spawn(process.execPath, [file, dataDir, String(writer)], {
        stdio: 'inherit',
      }).on('exit', resolve),
    )
  try {
    assert.deepEqual(await Promise.all([run(1), run(2)]), [0, 0])
    const store = new SqliteStore({ dataDir })
    const read = await store.read('shared', 0, 1000)
    await store.close()
    assert.deepEqual(
      read.map((e) => e.seq),
      Array.from({ length: 600 }, (_, i) => i + 1),
    )
    const writers = new Set(read.map((e) => JSON.parse(e.json).type))
    assert.deepEqual([...writers].sort(), ['w1', 'w2'])
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
})
