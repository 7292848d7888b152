import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { eventOf, type Received, type Receiver, startReceiver } from './delivery/receiver.ts'
import { runCli, type ServerProcess, sleep, spawnServer, tempDir } from './helpers.ts'

/**
 * `herald hooks` end to end: a real `herald serve` process (with an API key, so that the CLI's key
 * conventions are exercised too), a real loopback receiver, and the CLI binary for every step.
 */

const KEY = 'cli-hooks-test-key'

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

interface HookJson {
  id: string
  secret?: string
  state: string
  topic: string | null
  event: string | null
  ordered: boolean
  previous_secret_until?: string
  [key: string]: unknown
}

interface AttemptJson {
  id: number
  delivery: number
  event_id: string
  seq: number
  attempt: number
  status: number | null
}

describe('herald hooks', () => {
  let server: ServerProcess
  let receiver: Receiver
  let dataDir: string

  /** Runs the CLI against the server, with HERALD_URL and HERALD_API_KEY in its environment. */
  function herald(args: string[], env: Record<string, string> = { HERALD_API_KEY: KEY }): Promise<Run> {
    return runCli(args, { env: { HERALD_URL: server.url, ...env } })
  }

  /** Runs the CLI, expects exit 0 and one line of JSON, and returns it parsed. */
  async function json<T>(args: string[]): Promise<T> {
    const run = await herald(args)
    assert.equal(run.code, 0, `herald ${args.join(' ')}: ${run.stderr}`)
    assert.equal(run.stdout.trim().split('\n').length, 1, 'one line of JSON')
    return JSON.parse(run.stdout) as T
  }

  async function attempts(hookId: string, count: number): Promise<AttemptJson[]> {
    const deadline = Date.now() + 15_000
    for (;;) {
      const log = await json<{ attempts: AttemptJson[] }>(['hooks', 'deliveries', hookId])
      if (log.attempts.length >= count) return log.attempts
      if (Date.now() > deadline) throw new Error(`${log.attempts.length} of ${count} attempts logged`)
      await sleep(100)
    }
  }

  function verify(request: Received, secret: string) {
    return new Webhook(secret).verify(request.body, {
      'webhook-id': String(request.headers['webhook-id']),
      'webhook-timestamp': String(request.headers['webhook-timestamp']),
      'webhook-signature': String(request.headers['webhook-signature']),
    }) as { id: string; seq: number; type: string }
  }

  before(async () => {
    receiver = await startReceiver()
    dataDir = await tempDir()
    server = await spawnServer(['--data', dataDir, '--allow-private-targets', 'true'], {
      HERALD_API_KEY: KEY,
    })
  })

  after(async () => {
    server.child.kill('SIGTERM')
    await server.exited
    await receiver.close()
    await rm(dataDir, { recursive: true, force: true })
  })

  test('create, list, publish, deliveries, pause/resume, rotate, replay, retry, delete', async () => {
    const target = `${receiver.url}/cli`
    const atTarget = (request: Received) => request.url === '/cli'

    // create
    const hook = await json<HookJson>([
      'hooks',
      'create',
      '--target-url',
      target,
      '--topic',
      'orders',
      '--event',
      'order.*',
      '--description',
      'from the CLI',
    ])
    assert.match(hook.id, /^hook_/)
    assert.match(hook.secret!, /^whsec_/)
    assert.deepEqual(
      [hook.state, hook.topic, hook.event, hook.ordered],
      ['active', 'orders', 'order.*', true],
    )
    assert.equal(hook['description'], 'from the CLI')

    // list: JSON without secrets, and a table
    const list = await json<{ hooks: HookJson[]; next: string | null }>(['hooks', 'list'])
    const listed = list.hooks.find((h) => h.id === hook.id)
    assert.ok(listed, 'the new hook is listed')
    assert.equal(listed.secret, undefined)
    const table = await herald(['hooks', 'list', '--table'])
    assert.equal(table.code, 0)
    assert.match(table.stdout, /^ID\s+STATE\s+TOPIC\s+EVENT/)
    assert.match(table.stdout, new RegExp(`${hook.id}\\s+active\\s+orders\\s+order\\.\\*\\s+ordered\\s+`))

    // publish: delivered, signed with the hook's secret, webhook-id = event id; other types filtered
    const first = await json<{ id: string; seq: number }>([
      'publish',
      'orders',
      '--type',
      'order.created',
      '--data',
      '{"n":1}',
    ])
    await json(['publish', 'orders', '--type', 'invoice.paid'])
    const [delivered] = await receiver.waitFor(1, atTarget)
    assert.equal(verify(delivered!, hook.secret!).id, first.id)
    assert.equal(delivered!.headers['webhook-id'], first.id)

    // deliveries: the attempt, as JSON, as a table, and one delivery with its attempt log
    const [attempt] = await attempts(hook.id, 1)
    assert.equal(attempt!.event_id, first.id)
    assert.equal(attempt!.attempt, 1)
    assert.equal(attempt!.status, 200)
    const byEvent = await json<{ attempts: AttemptJson[] }>([
      'hooks',
      'deliveries',
      hook.id,
      '--event',
      first.id,
    ])
    assert.equal(byEvent.attempts.length, 1)
    const attemptTable = await herald(['hooks', 'deliveries', hook.id, '--table'])
    assert.match(attemptTable.stdout, new RegExp(`orders#1\\s+${first.id}\\s+1\\s+\\S+\\s+\\S+ms\\s+200`))
    const one = await json<{ state: string; attempts: number; attempt_log: AttemptJson[] }>([
      'hooks',
      'deliveries',
      hook.id,
      String(attempt!.delivery),
    ])
    assert.deepEqual([one.state, one.attempts, one.attempt_log.length], ['delivered', 1, 1])

    // pause: queued, not sent; resume: sent
    const paused = await json<HookJson>(['hooks', 'update', hook.id, '--pause'])
    assert.equal(paused.state, 'paused')
    await json(['publish', 'orders', '--type', 'order.paid'])
    await sleep(500)
    assert.equal(receiver.received.filter(atTarget).length, 1, 'a paused hook sends nothing')
    const resumed = await json<HookJson>(['hooks', 'update', hook.id, '--resume'])
    assert.equal(resumed.state, 'active')
    const afterResume = await receiver.waitFor(2, atTarget)
    assert.equal(eventOf(afterResume[1]!).type, 'order.paid')

    // rotate: a new secret; the next delivery carries both signatures
    const rotated = await json<HookJson>(['hooks', 'update', hook.id, '--rotate-secret'])
    assert.match(rotated.secret!, /^whsec_/)
    assert.notEqual(rotated.secret, hook.secret)
    assert.ok(rotated.previous_secret_until, 'the old secret signs during the grace period')
    await json(['publish', 'orders', '--type', 'order.shipped'])
    const afterRotation = await receiver.waitFor(3, atTarget)
    const third = afterRotation[2]!
    assert.equal(String(third.headers['webhook-signature']).split(' ').length, 2)
    assert.equal(verify(third, rotated.secret!).type, 'order.shipped')
    assert.equal(verify(third, hook.secret!).type, 'order.shipped')
    await attempts(hook.id, 3) // settled before replaying

    // replay after seq 1: order.paid (3) and order.shipped (4) again, in order, with their original
    // webhook-ids; invoice.paid (2) does not match the hook's event pattern
    assert.deepEqual(await json(['hooks', 'replay', hook.id, '--after', '1']), { queued: 2 })
    const replayed = (await receiver.waitFor(5, atTarget)).slice(3)
    assert.deepEqual(
      replayed.map((request) => eventOf(request).seq),
      [3, 4],
    )
    assert.deepEqual(
      replayed.map((request) => request.headers['webhook-id']),
      [afterRotation[1]!.headers['webhook-id'], third.headers['webhook-id']],
    )
    await attempts(hook.id, 5)
    // --since takes a duration ago as well as a time
    assert.deepEqual(await json(['hooks', 'replay', hook.id, '--since', '1h', '--limit', '1']), {
      queued: 1,
    })
    assert.equal(eventOf((await receiver.waitFor(6, atTarget))[5]!).seq, 1)
    await attempts(hook.id, 6)

    // retry one delivery
    const retried = await json<{ id: number; state: string }>([
      'hooks',
      'retry',
      hook.id,
      String(attempt!.delivery),
    ])
    assert.deepEqual([retried.id, retried.state], [attempt!.delivery, 'pending'])
    assert.equal((await receiver.waitFor(7, atTarget))[6]!.headers['webhook-id'], first.id)
    const log = await attempts(hook.id, 7)
    assert.deepEqual(
      log.filter((a) => a.delivery === attempt!.delivery).map((a) => a.attempt),
      [3, 2, 1],
      'the first delivery: sent, replayed with --since, retried (newest first)',
    )

    // delete; then it is gone
    assert.deepEqual(await json(['hooks', 'delete', hook.id]), { id: hook.id, deleted: true })
    const gone = await herald(['hooks', 'get', hook.id])
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, new RegExp(`herald hooks: 404 Not found: There is no hook ${hook.id}\\.`))
  })

  test('bad input exits 1 with the problem detail; so does a missing API key', async () => {
    const scheme = await herald(['hooks', 'create', '--target-url', 'ftp://example.test/', '--topic', 't'])
    assert.equal(scheme.code, 1)
    assert.equal(scheme.stdout, '')
    assert.match(scheme.stderr, /422 Target URL not allowed: target_url must be http or https, not ftp:/)

    const range = await herald([
      'hooks',
      'create',
      '--target-url',
      `${receiver.url}/x`,
      '--topic',
      't',
      '--max-in-flight',
      '0',
    ])
    assert.equal(range.code, 1)
    assert.match(range.stderr, /400 Invalid request: "max_in_flight" is a whole number from 1 to 1000\./)

    const pattern = await herald(['hooks', 'create', '--target-url', `${receiver.url}/x`, '--event', 'a.b*'])
    assert.equal(pattern.code, 1)
    assert.match(pattern.stderr, /whole segments only/)

    const replay = await herald(['hooks', 'replay', 'hook_x', '--after', '1'])
    assert.equal(replay.code, 1)
    assert.match(replay.stderr, /404 Not found: There is no hook hook_x\./)

    // Usage errors are caught before any request.
    const usage = await herald(['hooks', 'create', '--topic', 't'])
    assert.equal(usage.code, 1)
    assert.match(usage.stderr, /--target-url is required/)
    const both = await herald(['hooks', 'replay', 'hook_x', '--after', '1', '--since', '1h'])
    assert.equal(both.code, 1)
    assert.match(both.stderr, /--after <seq> or --since <time>, one of them/)
    const unknown = await herald(['hooks', 'frobnicate'])
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /unknown command "frobnicate"/)

    const unauthorized = await herald(['hooks', 'list'], {})
    assert.equal(unauthorized.code, 1)
    assert.match(unauthorized.stderr, /^herald hooks: 401 /)
    const flag = await herald(['hooks', 'list', '--api-key', KEY], {})
    assert.equal(flag.code, 0, flag.stderr)

    const help = await herald(['hooks', '--help'])
    assert.equal(help.code, 0)
    for (const command of ['list', 'create', 'get', 'update', 'delete', 'deliveries', 'retry', 'replay']) {
      assert.match(help.stdout, new RegExp(`^  ${command}\\b`, 'm'))
    }
  })

  test('--filter on create and update: stored, shown, dropped with none; bad JSON or a bad filter exits 1', async () => {
    const hook = await json<HookJson & { filter: unknown }>([
      'hooks',
      'create',
      '--target-url',
      `${receiver.url}/filtered`,
      '--topic',
      'cli-filter',
      '--filter',
      '[{"exact":{"data.tier":"gold"}}]',
    ])
    assert.deepEqual(hook.filter, { exact: { 'data.tier': 'gold' } })
    const changed = await json<{ filter: unknown }>([
      'hooks',
      'update',
      hook.id,
      '--filter',
      '{"prefix":{"type":"a"}}',
    ])
    assert.deepEqual(changed.filter, { prefix: { type: 'a' } })
    const notJson = await herald(['hooks', 'update', hook.id, '--filter', '{'])
    assert.equal(notJson.code, 1)
    assert.match(notJson.stderr, /--filter is a filter as JSON/)
    const bad = await herald(['hooks', 'update', hook.id, '--filter', '{"sql":"true"}'])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /CESQL/)
    const dropped = await json<{ filter: unknown }>(['hooks', 'update', hook.id, '--filter', 'none'])
    assert.equal(dropped.filter, null)
    assert.equal((await herald(['hooks', 'delete', hook.id])).code, 0)
  })
})
