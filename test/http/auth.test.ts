import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { problemOf, publish, spawnServer, startTestServer, type TestServer, tempDir } from '../helpers.ts'

const KEY = 'test-key-0123456789'

describe('auth with HERALD_API_KEY', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: KEY })
  })
  after(() => server.close())

  test('no key → 401 with WWW-Authenticate, and nothing stored', async () => {
    const response = await publish(server.url, 'secure', { type: 't' })
    const problem = await problemOf(response, 401)
    assert.equal(problem.type, 'urn:herald:problem:unauthorized')
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer/)
  })

  test('a wrong key → 401 invalid_token', async () => {
    const response = await publish(server.url, 'secure', { type: 't' }, { authorization: 'Bearer wrong' })
    await problemOf(response, 401)
    assert.match(response.headers.get('www-authenticate') ?? '', /invalid_token/)
    await problemOf(
      await fetch(`${server.url}/v1/topics/secure/events`, { headers: { authorization: 'Basic abc' } }),
      401,
    )
  })

  test('the right key publishes and reads; ?access_token= is for streams only', async () => {
    const auth = { authorization: `Bearer ${KEY}` }
    assert.equal((await publish(server.url, 'secure', { type: 't' }, auth)).status, 201)
    await problemOf(await fetch(`${server.url}/v1/topics/secure/events?access_token=${KEY}`), 401)
    const read = await fetch(`${server.url}/v1/topics/secure/events`, { headers: auth })
    assert.equal(read.status, 200)
    assert.equal(((await read.json()) as { events: unknown[] }).events.length, 1)
    const viaQuery = await fetch(`${server.url}/v1/topics/secure/events?access_token=${KEY}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"type":"t"}',
    })
    await problemOf(viaQuery, 401)
  })

  test('health, readiness and metrics stay open for probes', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      assert.equal((await fetch(`${server.url}${path}`)).status, 200, path)
    }
  })
})

describe('binding safety', () => {
  test('without a key, serving on a non-loopback address is refused with a clear message', async () => {
    const dataDir = await tempDir()
    await assert.rejects(spawnServer(['--host', '0.0.0.0', '--data', dataDir]), (error: Error) => {
      assert.match(error.message, /exited \(1\)/)
      assert.match(error.message, /Refusing to listen on 0\.0\.0\.0 without an API key/)
      return true
    })
  })

  test('without a key on loopback it starts, and warns', async () => {
    const dataDir = await tempDir()
    const server = await spawnServer(['--data', dataDir])
    try {
      assert.match(server.output(), /HERALD_API_KEY is not set/)
    } finally {
      server.child.kill('SIGTERM')
      await server.exited
    }
  })
})
