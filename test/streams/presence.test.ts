import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { problemOf, sleep, startTestServer, type TestServer } from '../helpers.ts'
import { WsClient } from './clients.ts'

const ROOT_KEY = 'presence-root-key-0123456789'
const root = { authorization: `Bearer ${ROOT_KEY}` }

interface Member {
  client: string
  sub?: string
  info?: unknown
  since: string
}

function wsUrl(server: TestServer, token = ROOT_KEY): string {
  return `${server.url.replace('http', 'ws')}/v1/ws?access_token=${token}`
}

async function newKey(url: string, scopes: Array<{ actions: string[]; topics: string[] }>) {
  const response = await fetch(`${url}/v1/keys`, {
    method: 'POST',
    headers: { ...root, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'presence', scopes }),
  })
  assert.equal(response.status, 201)
  return (await response.json()) as { id: string; key: string }
}

function presenceEvents(client: WsClient, topic: string) {
  return client.messages.filter(
    (m) => (m['op'] === 'join' || m['op'] === 'leave') && m['topic'] === topic,
  ) as Array<{ op: 'join' | 'leave'; topic: string; member: Member }>
}

async function listed(client: WsClient, topic: string, ref: string): Promise<Member[]> {
  client.send({ op: 'presence', topic, ref })
  const reply = await client.reply(ref)
  assert.equal(reply['op'], 'presence', JSON.stringify(reply))
  assert.equal(reply['topic'], topic)
  return reply['members'] as Member[]
}

describe('WebSocket presence (one node)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY, maxPresenceMembers: 3 })
  })
  after(async () => {
    await server.close()
  })

  test('join with info; the presence op and GET …/presence list members; events go only to watchers; leave on unsubscribe and close', async () => {
    const watcher = await WsClient.open(wsUrl(server))
    const quiet = await WsClient.open(wsUrl(server))
    const key = await newKey(server.url, [{ actions: ['subscribe'], topics: ['room/**'] }])
    const alice = await WsClient.open(wsUrl(server, key.key))
    try {
      watcher.send({ op: 'subscribe', topic: 'room/1', presence_events: true, ref: 'w' })
      assert.equal((await watcher.reply('w'))['op'], 'subscribed')
      quiet.send({ op: 'subscribe', topic: 'room/1', ref: 'q' })
      assert.equal((await quiet.reply('q'))['op'], 'subscribed')

      alice.send({ op: 'subscribe', topic: 'room/1', presence: { info: { name: 'Alice' } }, ref: 'a' })
      assert.equal((await alice.reply('a'))['op'], 'subscribed')
      await watcher.until(() => presenceEvents(watcher, 'room/1').length === 1)
      const [join] = presenceEvents(watcher, 'room/1')
      assert.equal(join!.op, 'join')
      assert.equal(join!.member.sub, `key:${key.id}`, 'a key is named key:<id>')
      assert.deepEqual(join!.member.info, { name: 'Alice' })
      assert.match(join!.member.client, /^[0-9A-Z]{26}$/, 'a server-made id')
      assert.ok(!Number.isNaN(Date.parse(join!.member.since)))

      const members = await listed(quiet, 'room/1', 'list1')
      assert.deepEqual(members, [join!.member], 'the watcher is not a member: it did not ask presence')
      const http = await fetch(`${server.url}/v1/topics/room/1/presence`, { headers: root })
      assert.equal(http.status, 200)
      assert.deepEqual(await http.json(), { members: [join!.member] })

      // The root key has no sub; a second member joins without info.
      watcher.send({ op: 'subscribe', topic: 'room/1', presence: {}, presence_events: true, ref: 'w2' })
      await watcher.reply('w2')
      const two = await listed(quiet, 'room/1', 'list2')
      assert.equal(two.length, 2)
      const rootMember = two.find((m) => m.client !== join!.member.client)!
      assert.equal(rootMember.sub, undefined)
      assert.equal(rootMember.info, undefined)

      alice.send({ op: 'unsubscribe', topic: 'room/1', ref: 'u' })
      await alice.reply('u')
      await watcher.until(() => presenceEvents(watcher, 'room/1').some((e) => e.op === 'leave'))
      const leave = presenceEvents(watcher, 'room/1').find((e) => e.op === 'leave')!
      assert.equal(leave.member.client, join!.member.client)

      // Join again, then close the socket: a leave.
      alice.send({ op: 'subscribe', topic: 'room/1', presence: { info: { name: 'Alice' } }, ref: 'a2' })
      await alice.reply('a2')
      const alices = (op: string) =>
        presenceEvents(watcher, 'room/1').filter(
          (e) => e.op === op && e.member.client === join!.member.client,
        )
      await watcher.until(() => alices('join').length === 2)
      await alice.close()
      await watcher.until(() => alices('leave').length === 2)
      assert.deepEqual(
        (await listed(quiet, 'room/1', 'list3')).map((m) => m.client),
        [rootMember.client],
      )
      await sleep(300)
      assert.deepEqual(presenceEvents(quiet, 'room/1'), [], 'no events to a subscriber that did not ask')
    } finally {
      await watcher.close()
      await quiet.close()
      await alice.close()
    }
  })

  test('rights: a key without subscribe on the topic is refused (403), over HTTP and the socket', async () => {
    const key = await newKey(server.url, [{ actions: ['subscribe', 'publish'], topics: ['mine'] }])
    const bearer = { authorization: `Bearer ${key.key}` }
    await problemOf(await fetch(`${server.url}/v1/topics/theirs/presence`, { headers: bearer }), 403)
    assert.equal((await fetch(`${server.url}/v1/topics/mine/presence`, { headers: bearer })).status, 200)
    await problemOf(await fetch(`${server.url}/v1/topics/theirs/presence`), 401)
    const ws = await WsClient.open(wsUrl(server, key.key))
    try {
      ws.send({ op: 'presence', topic: 'theirs', ref: 'p' })
      const refused = await ws.reply('p')
      assert.equal(refused['op'], 'error')
      assert.equal(refused['status'], 403)
      ws.send({ op: 'subscribe', topic: 'theirs', presence: {}, ref: 's' })
      assert.equal((await ws.reply('s'))['status'], 403)
      assert.deepEqual(
        await (await fetch(`${server.url}/v1/topics/theirs/presence`, { headers: root })).json(),
        { members: [] },
        'a refused subscribe joins nothing',
      )
    } finally {
      await ws.close()
    }
  })

  test('"presence" is a reserved topic segment; other methods on …/presence are 405', async () => {
    const problem = await problemOf(
      await fetch(`${server.url}/v1/topics/a/presence/events`, {
        method: 'POST',
        headers: { ...root, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 't' }),
      }),
      400,
    )
    assert.match(problem.detail, /"presence" is reserved/)
    await problemOf(
      await fetch(`${server.url}/v1/topics/a/presence`, {
        method: 'POST',
        headers: { ...root, 'content-type': 'application/json' },
        body: '{}',
      }),
      405,
    )
  })

  test('bounds: info over 1 KiB or too deep is a 400; past --max-presence-members the subscribe is refused', async () => {
    const clients = await Promise.all([1, 2, 3, 4, 5].map(() => WsClient.open(wsUrl(server))))
    try {
      const [first] = clients
      first!.send({
        op: 'subscribe',
        topic: 'full',
        presence: { info: { text: 'x'.repeat(1100) } },
        ref: 'big',
      })
      const big = await first!.reply('big')
      assert.equal(big['status'], 400)
      assert.equal(big['field'], 'presence.info')
      let deep: unknown = 1
      for (let i = 0; i < 12; i++) deep = { deep }
      first!.send({ op: 'subscribe', topic: 'full', presence: { info: deep }, ref: 'deep' })
      assert.equal((await first!.reply('deep'))['field'], 'presence.info')
      first!.send({ op: 'subscribe', topic: 'full', presence: 'yes', ref: 'bad' })
      assert.equal((await first!.reply('bad'))['field'], 'presence')

      for (const [i, client] of clients.slice(0, 3).entries()) {
        client.send({ op: 'subscribe', topic: 'full', presence: { info: { i } }, ref: `j${i}` })
        assert.equal((await client.reply(`j${i}`))['op'], 'subscribed')
      }
      // Joining again (new info) is not a new member.
      clients[0]!.send({ op: 'subscribe', topic: 'full', presence: { info: { i: 'again' } }, ref: 'again' })
      assert.equal((await clients[0]!.reply('again'))['op'], 'subscribed')
      clients[3]!.send({ op: 'subscribe', topic: 'full', presence: {}, ref: 'over' })
      const over = await clients[3]!.reply('over')
      assert.equal(over['op'], 'error')
      assert.equal(over['status'], 400)
      assert.equal(over['field'], 'presence')
      // Nothing was subscribed: a publish does not reach it. A subscribe without presence works.
      clients[4]!.send({ op: 'subscribe', topic: 'full', ref: 'plain' })
      assert.equal((await clients[4]!.reply('plain'))['op'], 'subscribed')
      const members = (await (
        await fetch(`${server.url}/v1/topics/full/presence`, { headers: root })
      ).json()) as { members: Member[] }
      assert.equal(members.members.length, 3)
      assert.deepEqual(members.members[0]!.info, { i: 'again' })
      // One leaves: there is room again.
      await clients[1]!.close()
      const retry = async (n: number): Promise<Record<string, unknown>> => {
        clients[3]!.send({ op: 'subscribe', topic: 'full', presence: {}, ref: `retry${n}` })
        return clients[3]!.reply(`retry${n}`)
      }
      let answer = await retry(0)
      for (let n = 1; answer['op'] !== 'subscribed' && n < 50; n++) {
        await sleep(50)
        answer = await retry(n)
      }
      assert.equal(answer['op'], 'subscribed')
    } finally {
      await Promise.all(clients.map((client) => client.close()))
    }
  })
})
