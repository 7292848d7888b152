import assert from 'node:assert/strict'
import { test } from 'node:test'
import { spawnServer, startTestServer } from '../helpers.ts'
import { dropSchema, skipWithoutPostgres, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { WsClient } from '../streams/clients.ts'

const skip = await skipWithoutPostgres()
const ROOT_KEY = 'presence-cluster-root-key-0123'
const root = { authorization: `Bearer ${ROOT_KEY}` }

interface Member {
  client: string
  sub?: string
  info?: unknown
}

function wsUrl(url: string): string {
  return `${url.replace('http', 'ws')}/v1/ws?access_token=${ROOT_KEY}`
}

function changes(client: WsClient, op: string) {
  return client.messages.filter((m) => m['op'] === op).map((m) => m['member'] as Member)
}

async function members(url: string, topic: string): Promise<Member[]> {
  const response = await fetch(`${url}/v1/topics/${topic}/presence`, { headers: root })
  assert.equal(response.status, 200)
  return ((await response.json()) as { members: Member[] }).members
}

/**
 * Two nodes on one PostgreSQL schema, node A a real process: a member joined on A is listed on B and
 * B's watcher hears the join (B reads the watched topics every second); one that unsubscribes on A
 * leaves on B; when A is killed (SIGKILL: no cleanup at all), its member is gone from B within the
 * 30 s TTL, and B's watcher hears the leave.
 */
test('presence across two nodes: join and leave reach the other node; a killed node’s members leave within 30 s', {
  skip,
  timeout: 90_000,
}, async () => {
  const schema = testSchema('presence')
  const a = await spawnServer(['--node-id', 'node-a'], {
    HERALD_DATABASE_URL: TEST_DATABASE_URL,
    HERALD_DATABASE_SCHEMA: schema,
    HERALD_API_KEY: ROOT_KEY,
  })
  let killed = false
  const b = await startTestServer({
    apiKey: ROOT_KEY,
    databaseUrl: TEST_DATABASE_URL,
    databaseSchema: schema,
    nodeId: 'node-b',
  })
  const onA = await WsClient.open(wsUrl(a.url))
  const stays = await WsClient.open(wsUrl(a.url))
  const watcher = await WsClient.open(wsUrl(b.url))
  try {
    watcher.send({ op: 'subscribe', topic: 'lobby', presence_events: true, ref: 'w' })
    assert.equal((await watcher.reply('w'))['op'], 'subscribed')

    let started = Date.now()
    onA.send({ op: 'subscribe', topic: 'lobby', presence: { info: { name: 'on-a' } }, ref: 'j' })
    assert.equal((await onA.reply('j'))['op'], 'subscribed')
    await watcher.until(() => changes(watcher, 'join').length === 1, 5000)
    const joinedIn = Date.now() - started
    assert.ok(joinedIn < 3000, `B's watcher heard A's join after ${joinedIn} ms`)
    const [joined] = changes(watcher, 'join')
    assert.deepEqual(joined!.info, { name: 'on-a' })
    assert.deepEqual(
      (await members(b.url, 'lobby')).map((m) => m.client),
      [joined!.client],
      'B lists the member joined on A',
    )

    started = Date.now()
    onA.send({ op: 'unsubscribe', topic: 'lobby', ref: 'u' })
    await onA.reply('u')
    await watcher.until(() => changes(watcher, 'leave').length === 1, 5000)
    assert.ok(Date.now() - started < 3000)
    assert.deepEqual(await members(b.url, 'lobby'), [])

    stays.send({ op: 'subscribe', topic: 'lobby', presence: { info: { name: 'dies' } }, ref: 's' })
    assert.equal((await stays.reply('s'))['op'], 'subscribed')
    await watcher.until(() => changes(watcher, 'join').length === 2, 5000)
    const doomed = changes(watcher, 'join')[1]!

    a.child.kill('SIGKILL')
    killed = true
    const killedAt = Date.now()
    await a.exited
    await watcher.until(() => changes(watcher, 'leave').length === 2, 35_000)
    const goneIn = Date.now() - killedAt
    assert.equal(changes(watcher, 'leave')[1]!.client, doomed.client)
    assert.ok(goneIn <= 32_000, `the killed node's member left after ${goneIn} ms (TTL 30 s, poll 1 s)`)
    assert.deepEqual(await members(b.url, 'lobby'), [], 'B no longer lists it')
  } finally {
    await watcher.close()
    if (!killed) {
      a.child.kill('SIGTERM')
      await a.exited
    }
    await b.close()
    await dropSchema(schema)
  }
})
