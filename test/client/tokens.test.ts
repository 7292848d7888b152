import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { mintToken } from '../../src/access/tokens.ts'
import { Herald, type State } from '../../src/client/index.ts'
import { publish, sleep, startTestServer, type TestServer, until } from '../helpers.ts'

const SECRET = 'client-test-secret-0123456789-abcdefghij'
const KEY = 'client-root-key-0123456789'

describe('client: tokens refreshed across expiry', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({
      apiKey: KEY,
      heartbeatMs: 1000,
      jwt: { secret: SECRET, publicKeyPem: undefined, audience: undefined },
    })
  })
  after(() => server.close())

  for (const transport of ['ws', 'sse', 'poll'] as const) {
    test(`${transport}: 2 s tokens, renewed through getToken; the subscription loses nothing across several expiries`, async () => {
      const topic = `tok/${transport}`
      let minted = 0
      const getToken = () => {
        minted++
        return mintToken(SECRET, { sub: 'alice', subscribe: ['tok/*'], publish: ['tok/*'], ttlSeconds: 2 })
      }
      const client = new Herald({ url: server.url, getToken, transport, heartbeat: 1000 })
      const states: State[] = []
      client.on('state', (state) => states.push(state))
      const got: number[] = []
      const errors: Error[] = []
      client.on('error', (error) => errors.push(error))
      client.subscribe(topic, (event) => got.push(event.seq), { after: 0 })
      try {
        let sent = 0
        const end = Date.now() + 7000 // three and a half token lifetimes
        while (Date.now() < end) {
          const answer = await publish(
            server.url,
            topic,
            { type: 'x', data: sent },
            { authorization: `Bearer ${KEY}` },
          )
          assert.equal(answer.status, 201)
          sent++
          await sleep(50)
        }
        // The client's own publishes carry its current token.
        const own = await client.publish(topic, { type: 'own' })
        sent++
        assert.equal(own.seq, sent)
        await until('every event', () => (got.length >= sent ? true : undefined), 30_000)
        assert.deepEqual(
          got,
          Array.from({ length: sent }, (_, i) => i + 1),
        )
        assert.ok(minted >= 4, `getToken called ${minted} times`)
        assert.deepEqual(errors, [])
        if (transport === 'ws')
          assert.deepEqual(states, ['connecting', 'connected'], 'the socket never dropped')
      } finally {
        client.close()
      }
    })
  }

  test('a refused token (401) asks getToken for another', async () => {
    const expired = await mintToken(SECRET, { subscribe: ['**'], ttlSeconds: 1 })
    await sleep(1100)
    let calls = 0
    const client = new Herald({
      url: server.url,
      token: expired,
      getToken: () => {
        calls++
        return mintToken(SECRET, { subscribe: ['**'], ttlSeconds: 60 })
      },
    })
    try {
      assert.deepEqual(await client.presence('tok/x'), [])
      assert.ok(calls >= 1)
    } finally {
      client.close()
    }
  })
})
