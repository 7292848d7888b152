import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { problemOf, publish, runCli, startTestServer, type TestServer } from './helpers.ts'

const ROOT_KEY = 'root-key-0123456789abcdef'

describe('herald keys', () => {
  let server: TestServer
  let env: Record<string, string>
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY })
    env = { HERALD_URL: server.url, HERALD_API_KEY: ROOT_KEY }
  })
  after(() => server.close())

  test('create prints the key once; list and show never do; revoke refuses it', async () => {
    const created = await runCli(
      [
        'keys',
        'create',
        '--name',
        'billing',
        '--scope',
        'publish:orders/*',
        '--scope',
        'subscribe:orders/**',
        '--rate-limit',
        '100/s',
      ],
      { env },
    )
    assert.equal(created.code, 0, created.stderr)
    const key = JSON.parse(created.stdout) as { id: string; key: string; scopes: unknown; rate_limit: string }
    assert.deepEqual(key.scopes, [
      { actions: ['publish'], topics: ['orders/*'] },
      { actions: ['subscribe'], topics: ['orders/**'] },
    ])
    assert.equal(key.rate_limit, '100/s')
    assert.equal(
      (await publish(server.url, 'orders/eu', { type: 't' }, { authorization: `Bearer ${key.key}` })).status,
      201,
    )

    const listed = await runCli(['keys', 'list'], { env })
    assert.equal(listed.code, 0, listed.stderr)
    assert.ok(listed.stdout.includes(key.id))
    assert.ok(!listed.stdout.includes(key.key))
    const shown = await runCli(['keys', 'show', key.id], { env })
    assert.equal(JSON.parse(shown.stdout).id, key.id)

    const revoked = await runCli(['keys', 'revoke', key.id], { env })
    assert.equal(revoked.code, 0, revoked.stderr)
    await problemOf(
      await publish(server.url, 'orders/eu', { type: 't' }, { authorization: `Bearer ${key.key}` }),
      401,
    )
    const again = await runCli(['keys', 'revoke', key.id], { env })
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /404/)
  })

  test('usage errors and server refusals are one clear line, exit code non-zero', async () => {
    for (const [args, message] of [
      [['keys'], /create, list, show, revoke/],
      [['keys', 'create', '--scope', 'publish:a'], /--name/],
      [['keys', 'create', '--name', 'x'], /--scope/],
      [['keys', 'create', '--name', 'x', '--scope', 'publish'], /<actions>:<topic patterns>/],
      [['keys', 'create', '--name', 'x', '--scope', 'steal:a'], /actions/],
      [['keys', 'revoke'], /one key id/],
    ] as const) {
      const run = await runCli([...args], { env })
      assert.notEqual(run.code, 0, args.join(' '))
      assert.match(run.stderr, message, args.join(' '))
    }
  })
})
