import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { once } from 'node:events'
import { after, before, describe, test } from 'node:test'
import { SignJWT } from 'jose'
import { WebSocket } from 'ws'
import { mintToken } from '../../src/access/tokens.ts'
import { problemOf, publish, readAll, startTestServer, type TestServer } from '../helpers.ts'
import { WsClient } from '../streams/clients.ts'

const ROOT_KEY = 'root-key-0123456789abcdef'
const SECRET = 'jwt-secret-for-tests-0123456789abcdef'
const AUDIENCE = 'herald-test'
const ed25519 = generateKeyPairSync('ed25519')
const PUBLIC_PEM = ed25519.publicKey.export({ type: 'spki', format: 'pem' }).toString()

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const inSeconds = (seconds: number) => Math.floor(Date.now() / 1000) + seconds

function claims(extra: Record<string, unknown> = {}) {
  return { sub: 'alice', aud: AUDIENCE, herald: { publish: ['chat/*'], subscribe: ['chat/*'] }, ...extra }
}

async function hs256(payload: Record<string, unknown>, secret = SECRET): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256' })
    .setExpirationTime((payload['exp'] as number | undefined) ?? '1h')
    .sign(new TextEncoder().encode(secret))
}

/** Signed tokens over real HTTP and WebSockets: a server with a secret and an Ed25519 key at once. */
describe('signed tokens (JWT)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({
      apiKey: ROOT_KEY,
      jwt: { secret: SECRET, publicKeyPem: PUBLIC_PEM, audience: AUDIENCE },
    })
  })
  after(() => server.close())

  test('HS256 and EdDSA tokens publish and read within their claims, and nowhere else', async () => {
    const eddsa = await new SignJWT(claims({ sub: 'bob' }))
      .setProtectedHeader({ alg: 'EdDSA' })
      .setExpirationTime('1h')
      .sign(ed25519.privateKey)
    for (const token of [await hs256(claims()), eddsa]) {
      assert.equal((await publish(server.url, 'chat/lobby', { type: 'm' }, bearer(token))).status, 201)
      assert.ok((await readAll(server.url, 'chat/lobby', bearer(token))).length > 0)
      await problemOf(await publish(server.url, 'billing', { type: 'm' }, bearer(token)), 403)
      // Tokens never administer.
      await problemOf(await fetch(`${server.url}/v1/hooks`, { headers: bearer(token) }), 403)
    }
  })

  test('refused with 401 saying why: expired, wrong audience, wrong signature, alg none, HS256 with the public key', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['expired', await hs256(claims({ exp: inSeconds(-60) })), /expired/],
      ['wrong audience', await hs256(claims({ aud: 'someone-else' })), /aud/],
      ['wrong signature', await hs256(claims(), 'another-secret-0123456789abcdef0123'), /signature/],
      [
        'alg none',
        `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims({ exp: inSeconds(3600) }))}.`,
        /alg|algorithm/i,
      ],
      // The algorithm-confusion attack: the public key's own text used as an HMAC secret.
      ['HS256 keyed with the public key', await hs256(claims(), PUBLIC_PEM), /signature/],
    ]
    for (const [what, token, detail] of cases) {
      const response = await publish(server.url, 'chat/lobby', { type: 'm' }, bearer(token))
      const problem = await problemOf(response, 401)
      assert.match(problem.detail, detail, what)
      assert.match(response.headers.get('www-authenticate') ?? '', /invalid_token/, what)
      assert.ok(!problem.detail.includes(token), `${what}: the detail never quotes the token`)
    }
  })

  test('a stream ends at its token exp', async () => {
    const token = await mintToken(SECRET, {
      sub: 'carol',
      subscribe: ['chat/*'],
      ttlSeconds: 2,
      audience: AUDIENCE,
    })
    const response = await fetch(`${server.url}/v1/topics/chat/room/events?access_token=${token}`, {
      headers: { accept: 'text/event-stream' },
    })
    assert.equal(response.status, 200)
    const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number
    await response.text() // to the end of the stream
    assert.ok(Date.now() >= exp * 1000 - 50, `ended ${exp * 1000 - Date.now()} ms before exp`)
  })

  test('a WebSocket that sends a fresh token before exp stays open; one that does not is closed with 4401', async () => {
    const ws = (token: string) =>
      WsClient.open(`${server.url.replace('http', 'ws')}/v1/ws?access_token=${token}`)
    const short = () =>
      mintToken(SECRET, { sub: 'dave', subscribe: ['chat/*'], ttlSeconds: 2, audience: AUDIENCE })
    const refreshing = await ws(await short())
    const lapsing = await ws(await short())
    try {
      const closed = once(lapsing.ws, 'close')
      refreshing.send({
        op: 'auth',
        token: await mintToken(SECRET, {
          sub: 'dave',
          subscribe: ['chat/*'],
          ttlSeconds: 60,
          audience: AUDIENCE,
        }),
        ref: 'fresh',
      })
      assert.equal((await refreshing.reply('fresh'))['op'], 'authenticated')
      const [code] = (await closed) as [number]
      assert.equal(code, 4401)
      // Past the first token's exp the refreshed socket still works.
      refreshing.send({ op: 'subscribe', topic: 'chat/after', ref: 'sub' })
      assert.equal((await refreshing.reply('sub'))['op'], 'subscribed')
      assert.equal(refreshing.ws.readyState, WebSocket.OPEN)
      // A refresh with a token that may read less drops the subscriptions it may not read.
      refreshing.send({
        op: 'auth',
        token: await mintToken(SECRET, {
          sub: 'dave',
          subscribe: ['news'],
          ttlSeconds: 60,
          audience: AUDIENCE,
        }),
        ref: 'narrow',
      })
      assert.equal((await refreshing.reply('narrow'))['op'], 'authenticated')
      await refreshing.until(() =>
        refreshing.messages.some((m) => m['op'] === 'error' && m['status'] === 403),
      )
      // A bad token in an auth message is a 401 error op; the socket keeps its credentials.
      refreshing.send({ op: 'auth', token: await hs256(claims({ exp: inSeconds(-5) })), ref: 'stale' })
      assert.equal((await refreshing.reply('stale'))['status'], 401)
      assert.equal(refreshing.ws.readyState, WebSocket.OPEN)
    } finally {
      await refreshing.close()
      await lapsing.close()
    }
  })
})

describe('a server with a public key only', () => {
  test('refuses HS256 tokens whatever their key (no secret is configured)', async () => {
    const server = await startTestServer({
      apiKey: ROOT_KEY,
      jwt: { secret: undefined, publicKeyPem: PUBLIC_PEM, audience: undefined },
    })
    try {
      const token = await hs256(claims({ aud: undefined }), PUBLIC_PEM)
      const problem = await problemOf(await publish(server.url, 'chat/x', { type: 'm' }, bearer(token)), 401)
      assert.match(problem.detail, /HS256|algorithm/)
    } finally {
      await server.close()
    }
  })
})
