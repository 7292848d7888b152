import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { problemOf, publish, runCli, startTestServer, type TestServer } from './helpers.ts'

const ROOT_KEY = 'root-key-types-0123456789abcdef'

describe('herald types', () => {
  let server: TestServer
  let env: Record<string, string>
  before(async () => {
    server = await startTestServer({ apiKey: ROOT_KEY })
    env = { HERALD_URL: server.url, HERALD_API_KEY: ROOT_KEY }
  })
  after(() => server.close())

  test('put registers a schema from standard input; the server then checks the data', async () => {
    const schema = JSON.stringify({ type: 'object', required: ['sku'] })
    const put = await runCli(['types', 'put', 'item.added', '--schema', '-', '--description', 'An item.'], {
      env,
      input: schema,
    })
    assert.equal(put.code, 0, put.stderr)
    const registered = JSON.parse(put.stdout)
    assert.equal(registered.version, 1)
    assert.equal(registered.description, 'An item.')
    await problemOf(
      await publish(
        server.url,
        'cart',
        { type: 'item.added', data: {} },
        { authorization: `Bearer ${ROOT_KEY}` },
      ),
      422,
    )

    const second = await runCli(['types', 'put', 'item.added', '--schema', '-'], {
      env,
      input: JSON.stringify({ type: 'object', required: ['sku', 'qty'] }),
    })
    assert.equal(second.code, 0, second.stderr)
    const v2 = JSON.parse(second.stdout)
    assert.equal(v2.version, 2)
    assert.equal(v2.compatibility.backward, 'breaking')

    const list = await runCli(['types', 'list'], { env })
    assert.equal(list.code, 0, list.stderr)
    assert.deepEqual(
      list.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).type),
      ['item.added'],
    )
    const show = await runCli(['types', 'show', 'item.added', '--version', '1'], { env })
    assert.equal(show.code, 0, show.stderr)
    assert.deepEqual(JSON.parse(show.stdout).schema, { type: 'object', required: ['sku'] })
  })

  test('a schema that is not JSON, or a missing type, is a usage error; a refused schema prints the problem', async () => {
    const notJson = await runCli(['types', 'put', 'x.y', '--schema', '-'], { env, input: '{nope' })
    assert.equal(notJson.code, 1, notJson.stderr)
    assert.match(notJson.stderr, /not JSON/)
    const noType = await runCli(['types', 'show'], { env })
    assert.equal(noType.code, 1)
    assert.match(noType.stderr, /one event type/)
    const refused = await runCli(['types', 'put', 'x.y', '--schema', '-'], {
      env,
      input: '{"type":"objekt"}',
    })
    assert.notEqual(refused.code, 0)
    assert.match(refused.stderr, /not a valid JSON Schema/)
  })
})
