import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { publish, startTestServer, type TestServer } from '../helpers.ts'

/** Regression tests for what abuse testing found, each through real HTTP on loopback. */

describe('a hook pattern cannot freeze the server (defect 3)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ allowPrivateTargets: true })
  })
  after(() => server.close())

  test('a publish of a 50-segment type to a *.*.….z hook is answered, and so is /healthz meanwhile', async () => {
    const created = await fetch(`${server.url}/v1/hooks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ target_url: 'http://127.0.0.1:9/hook', event: '*.*.*.*.*.*.*.*.*.*.z' }),
    })
    assert.equal(created.status, 201)
    const type = Array.from({ length: 50 }, (_, i) => `s${i}`).join('.')
    const [published, health] = await Promise.all([
      publish(server.url, 'freeze', { type }),
      fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(10_000) }),
    ])
    assert.equal(published.status, 201)
    assert.equal(health.status, 200)
  })
})
