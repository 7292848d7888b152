import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { prepareEvent } from '../../src/core/event.ts'
import { openDatabase } from '../../src/store/sqlite/database.ts'
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.ts'
import type { Store } from '../../src/store/store.ts'
import { ROOT, tempDir } from '../helpers.ts'
import { type StoreHarness, storeContract } from './contract.ts'
import { deliveryContract } from './delivery-contract.ts'
import { leaderContract } from './leader-contract.ts'
import { presenceContract } from './presence-contract.ts'

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
leaderContract('SQLite', openSqlite)
presenceContract('SQLite', openSqlite)

test('SQLite: whoever claims the leadership leads, always in term 1 (one server per file)', async () => {
  const harness = await openSqlite()
  try {
    const { store } = harness
    assert.deepEqual(await store.claimLeadership('node-a', 10), { leader: 'node-a', term: 1, isMe: true })
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(await store.claimLeadership('node-b', 10), { leader: 'node-b', term: 1, isMe: true })
  } finally {
    await harness.cleanup()
  }
})

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

test('events stored before migration 003 keep their (source, id): a repeat of one is still recognised', async () => {
  const dataDir = await tempDir()
  try {
    // A database as migration 002 left it: events looked up by id alone.
    const db = openDatabase(dataDir, 'full')
    for (const file of ['001_init.sql', '002_hooks.sql']) {
      db.exec(readFileSync(join(ROOT, 'src/store/sqlite/migrations', file), 'utf8'))
    }
    db.exec('PRAGMA user_version = 2')
    db.prepare("INSERT INTO topics (name, head_seq, created_at) VALUES ('old', 2, 0)").run()
    const insert = db.prepare(
      'INSERT INTO events (topic_id, seq, id, stored_at, body) VALUES (1, ?, ?, 0, ?)',
    )
    const client = {
      seq: 1,
      id: 'e1',
      json: '{"specversion":"1.0","id":"e1","source":"urn:a","type":"t","topic":"old","seq":1}',
    }
    const generated = {
      seq: 2,
      id: '01J00000000000000000000000',
      json: '{"specversion":"1.0","id":"01J00000000000000000000000","source":"/v1/topics/old","type":"t","topic":"old","seq":2}',
    }
    for (const event of [client, generated]) insert.run(event.seq, event.id, event.json)
    db.close()

    const store = new SqliteStore({ dataDir })
    try {
      const now = new Date()
      const append = (input: { id: string; source?: string }) =>
        store.append('old', [prepareEvent('old', { type: 't', ...input }, now)], { now: now.getTime() })
      const repeat = await append({ id: 'e1', source: 'urn:a' })
      assert.deepEqual([repeat.stored, repeat.events[0]!.json], [0, client.json])
      const repeatOfGenerated = await append({ id: generated.id })
      assert.deepEqual([repeatOfGenerated.stored, repeatOfGenerated.events[0]!.json], [0, generated.json])
      const otherSource = await append({ id: 'e1', source: 'urn:b' })
      assert.deepEqual([otherSource.stored, otherSource.events[0]!.seq], [1, 3])
      assert.equal((await store.read('old', 0, 10)).length, 3)
    } finally {
      await store.close()
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true })
  }
})
