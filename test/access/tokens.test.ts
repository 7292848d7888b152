import assert from 'node:assert/strict'
import { createHmac, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { SignJWT } from 'jose'
import {
  CLOCK_TOLERANCE_SECONDS,
  createTokenVerifier,
  INVALID_TOKEN_CHALLENGE,
  MAX_TOKEN_LENGTH,
  mintToken,
  type TokenVerifier,
} from '../../src/access/tokens.ts'
import { ConfigError, loadConfig } from '../../src/config/config.ts'
import { HeraldError } from '../../src/core/errors.ts'
import { runCliUntilExit, tempDir } from '../helpers.ts'

const SECRET = 'a-test-secret-of-at-least-32-bytes-0123456789'
const OTHER_SECRET = 'another-secret-of-at-least-32-bytes-abcdefgh'

const nowSeconds = () => Math.floor(Date.now() / 1000)

function pair(type: 'ed25519' | 'ec' | 'rsa'): { publicPem: string; privateKey: KeyObject } {
  const { publicKey, privateKey } =
    type === 'ed25519'
      ? generateKeyPairSync('ed25519')
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { publicPem: publicKey.export({ type: 'spki', format: 'pem' }) as string, privateKey }
}

const ED = pair('ed25519')
const EC = pair('ec')
const RSA = pair('rsa')

/** A token signed with jose, with `claims` (exp one hour ahead unless given; `exp: undefined` drops it). */
async function sign(
  alg: string,
  key: KeyObject | Uint8Array,
  claims: Record<string, unknown> = {},
): Promise<string> {
  const payload: Record<string, unknown> = { exp: nowSeconds() + 3600, ...claims }
  for (const name of Object.keys(payload)) if (payload[name] === undefined) delete payload[name]
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT' }).sign(key)
}

const secretBytes = (secret: string) => new TextEncoder().encode(secret)
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An HS256 token built by hand, its HMAC keyed with `key` (any bytes: e.g. a PEM's text). */
function handHs256(key: string, payload: Record<string, unknown>): string {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`
  return `${input}.${createHmac('sha256', key).update(input).digest('base64url')}`
}

function verifierOf(options: Parameters<typeof createTokenVerifier>[0]): TokenVerifier {
  const verifier = createTokenVerifier(options)
  assert.ok(verifier, 'a verifier is made')
  return verifier
}

/** Asserts a 401 with the invalid_token challenge whose detail matches `detail`, and never holds the token. */
async function assertRefused(verifier: TokenVerifier, token: string, detail: RegExp): Promise<HeraldError> {
  const error = await verifier.verify(token).then(
    () => assert.fail('the token was accepted'),
    (error: unknown) => error,
  )
  assert.ok(error instanceof HeraldError, `a HeraldError, not ${String(error)}`)
  assert.equal(error.status, 401)
  assert.equal(error.code, 'unauthorized')
  assert.match(error.message, detail)
  assert.equal(error.headers['WWW-Authenticate'], INVALID_TOKEN_CHALLENGE)
  if (token !== '') assert.ok(!error.message.includes(token.slice(0, 40)), 'the token is not in the message')
  return error
}

describe('createTokenVerifier: configuration', () => {
  test('no key, no verifier', () => {
    assert.equal(createTokenVerifier({}), undefined)
    assert.equal(createTokenVerifier({ secret: '', publicKeyPem: '', audience: 'x' }), undefined)
  })

  test('each key decides its one algorithm', () => {
    assert.deepEqual(verifierOf({ secret: SECRET }).algorithms, ['HS256'])
    assert.deepEqual(verifierOf({ publicKeyPem: ED.publicPem }).algorithms, ['EdDSA'])
    assert.deepEqual(verifierOf({ publicKeyPem: EC.publicPem }).algorithms, ['ES256'])
    assert.deepEqual(verifierOf({ publicKeyPem: RSA.publicPem }).algorithms, ['RS256'])
    assert.deepEqual(verifierOf({ secret: SECRET, publicKeyPem: ED.publicPem }).algorithms, [
      'HS256',
      'EdDSA',
    ])
  })

  test('a short secret, a bad PEM, a private key, another curve or key type: a ConfigError at start', () => {
    assert.throws(() => createTokenVerifier({ secret: 'short' }), {
      name: 'ConfigError',
      message: /HERALD_JWT_SECRET.*at least 32 bytes.*this one has 5/,
    })
    assert.throws(() => createTokenVerifier({ secret: 'x'.repeat(31) }), ConfigError)
    assert.throws(
      () =>
        createTokenVerifier({
          publicKeyPem: '-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----',
        }),
      { name: 'ConfigError', message: /HERALD_JWT_PUBLIC_KEY: not a PEM public key/ },
    )
    const privatePem = ED.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    assert.throws(() => createTokenVerifier({ publicKeyPem: privatePem }), {
      name: 'ConfigError',
      message: /holds a private key/,
    })
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({
      type: 'spki',
      format: 'pem',
    })
    assert.throws(() => createTokenVerifier({ publicKeyPem: p384 as string }), {
      name: 'ConfigError',
      message: /curve secp384r1; Herald accepts P-256/,
    })
    const ed448 = generateKeyPairSync('ed448').publicKey.export({ type: 'spki', format: 'pem' })
    assert.throws(() => createTokenVerifier({ publicKeyPem: ed448 as string }), {
      name: 'ConfigError',
      message: /type ed448/,
    })
    const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    })
    assert.throws(() => createTokenVerifier({ publicKeyPem: rsa1024 as string }), {
      name: 'ConfigError',
      message: /1024 bits; RS256 needs 2048/,
    })
  })
})

describe('TokenVerifier.verify: accepted tokens', () => {
  test('HS256: the herald claim becomes one publish and one subscribe scope, exp becomes expiresAt', async () => {
    const exp = nowSeconds() + 600
    const token = await sign('HS256', secretBytes(SECRET), {
      sub: 'alice',
      exp,
      herald: { publish: ['chat/alice'], subscribe: ['chat/*', 'news/**'] },
    })
    const principal = await verifierOf({ secret: SECRET }).verify(token)
    assert.deepEqual(principal, {
      kind: 'token',
      sub: 'alice',
      scopes: [
        { actions: ['publish'], topics: [['chat', 'alice']] },
        {
          actions: ['subscribe'],
          topics: [
            ['chat', '*'],
            ['news', '**'],
          ],
        },
      ],
      expiresAt: exp * 1000,
    })
  })

  test('no herald claim or empty lists: no scopes; no sub: undefined; never admin', async () => {
    const verifier = verifierOf({ secret: SECRET })
    const bare = await verifier.verify(await sign('HS256', secretBytes(SECRET)))
    assert.equal(bare.sub, undefined)
    assert.deepEqual(bare.scopes, [])
    const empty = await verifier.verify(
      await sign('HS256', secretBytes(SECRET), { herald: { publish: [], subscribe: ['a'] } }),
    )
    assert.deepEqual(empty.scopes, [{ actions: ['subscribe'], topics: [['a']] }])
  })

  for (const [alg, keys] of [
    ['EdDSA', ED],
    ['ES256', EC],
    ['RS256', RSA],
  ] as const) {
    test(`${alg} with a public key (alone, and beside a secret)`, async () => {
      const token = await sign(alg, keys.privateKey, { sub: 'bob', herald: { subscribe: ['orders/**'] } })
      for (const verifier of [
        verifierOf({ publicKeyPem: keys.publicPem }),
        verifierOf({ secret: SECRET, publicKeyPem: keys.publicPem }),
      ]) {
        const principal = await verifier.verify(token)
        assert.equal(principal.sub, 'bob')
        assert.deepEqual(principal.scopes, [{ actions: ['subscribe'], topics: [['orders', '**']] }])
      }
    })
  }

  test('the audience, when set, is accepted as a string or in a list', async () => {
    const verifier = verifierOf({ secret: SECRET, audience: 'herald-prod' })
    await verifier.verify(await sign('HS256', secretBytes(SECRET), { aud: 'herald-prod' }))
    await verifier.verify(await sign('HS256', secretBytes(SECRET), { aud: ['other', 'herald-prod'] }))
  })

  test(`nbf has ${CLOCK_TOLERANCE_SECONDS} s of tolerance; exp none (streams end at it)`, async () => {
    const verifier = verifierOf({ secret: SECRET })
    await verifier.verify(await sign('HS256', secretBytes(SECRET), { nbf: nowSeconds() + 2 }))
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { exp: nowSeconds() - 2 }),
      /^The token expired at \d{4}-.*"exp" claim/,
    )
  })

  test('mintToken output verifies, with its claims', async () => {
    const token = await mintToken(SECRET, {
      sub: 'carol',
      publish: ['a/b'],
      subscribe: ['a/*'],
      ttlSeconds: 120,
      audience: 'aud-1',
    })
    const principal = await verifierOf({ secret: SECRET, audience: 'aud-1' }).verify(token)
    assert.equal(principal.sub, 'carol')
    assert.deepEqual(principal.scopes, [
      { actions: ['publish'], topics: [['a', 'b']] },
      { actions: ['subscribe'], topics: [['a', '*']] },
    ])
    const left = principal.expiresAt - Date.now()
    assert.ok(left > 110_000 && left <= 121_000, `expires in ${left} ms`)
    await assert.rejects(mintToken('short', { ttlSeconds: 60 }), ConfigError)
    await assert.rejects(mintToken(SECRET, { ttlSeconds: 0 }), RangeError)
    await assert.rejects(mintToken(SECRET, { subscribe: ['a/**/b'], ttlSeconds: 60 }), /"\*\*" may only end/)
  })
})

describe('TokenVerifier.verify: refused tokens (401 invalid_token, saying why)', () => {
  test('expired long ago', async () => {
    const token = await sign('HS256', secretBytes(SECRET), {
      exp: nowSeconds() - CLOCK_TOLERANCE_SECONDS - 5,
    })
    await assertRefused(verifierOf({ secret: SECRET }), token, /^The token expired at \d{4}-.*"exp" claim/)
  })

  test('not valid yet (nbf) and issued in the future (iat), beyond the tolerance', async () => {
    const verifier = verifierOf({ secret: SECRET })
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { nbf: nowSeconds() + 60 }),
      /not valid yet.*"nbf"/,
    )
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { iat: nowSeconds() + 60 }),
      /issued in the future.*"iat"/,
    )
  })

  test('no exp', async () => {
    const token = await sign('HS256', secretBytes(SECRET), { exp: undefined, sub: 'x' })
    await assertRefused(verifierOf({ secret: SECRET }), token, /has no "exp" claim/)
  })

  test('exp, nbf or sub of the wrong type; an exp of Infinity', async () => {
    const verifier = verifierOf({ secret: SECRET })
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { exp: 'soon' }),
      /"exp" claim is not a number/,
    )
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { nbf: 'now' }),
      /"nbf" claim is not a number/,
    )
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { sub: 42 }),
      /"sub" claim is not a string/,
    )
    // JSON spells Infinity as a number too large for a double: built by hand, as no signer would write it.
    const input = `${b64({ alg: 'HS256' })}.${Buffer.from('{"exp":1e400}').toString('base64url')}`
    const infinite = `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`
    await assertRefused(verifier, infinite, /"exp" claim is not a finite NumericDate/)
  })

  test('a wrong audience, or none, when an audience is set', async () => {
    const verifier = verifierOf({ secret: SECRET, audience: 'herald-prod' })
    await assertRefused(
      verifier,
      await sign('HS256', secretBytes(SECRET), { aud: 'herald-staging' }),
      /"aud" claim does not name this server's audience \("herald-prod"\)/,
    )
    await assertRefused(verifier, await sign('HS256', secretBytes(SECRET)), /has no "aud" claim/)
  })

  test('a wrong signature: another secret, another key pair, a tampered payload', async () => {
    await assertRefused(
      verifierOf({ secret: SECRET }),
      await sign('HS256', secretBytes(OTHER_SECRET)),
      /signature does not verify with this server's HS256 key/,
    )
    await assertRefused(
      verifierOf({ publicKeyPem: ED.publicPem }),
      await sign('EdDSA', pair('ed25519').privateKey),
      /signature does not verify with this server's EdDSA key/,
    )
    const token = await sign('ES256', EC.privateKey, { herald: { subscribe: ['a'] } })
    const [header, , signature] = token.split('.')
    const forged = `${header}.${b64({ exp: nowSeconds() + 3600, herald: { subscribe: ['**'] } })}.${signature}`
    await assertRefused(verifierOf({ publicKeyPem: EC.publicPem }), forged, /signature does not verify/)
  })

  test('alg "none" (an unsecured JWT), with every kind of key configured', async () => {
    const unsecured = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ exp: nowSeconds() + 3600, herald: { publish: ['**'] } })}.`
    for (const verifier of [
      verifierOf({ secret: SECRET }),
      verifierOf({ publicKeyPem: ED.publicPem }),
      verifierOf({ secret: SECRET, publicKeyPem: RSA.publicPem }),
    ]) {
      await assertRefused(verifier, unsecured, /unsigned \(alg "none"\), which is never accepted/)
    }
  })

  test('algorithm confusion: HS256 keyed with the public key PEM, with the public key alone and beside another secret', async () => {
    const payload = { exp: nowSeconds() + 3600, herald: { publish: ['**'] } }
    for (const keys of [ED, EC, RSA]) {
      const confused = handHs256(keys.publicPem, payload)
      await assertRefused(
        verifierOf({ publicKeyPem: keys.publicPem }),
        confused,
        /algorithm "HS256" is not allowed: this server accepts (EdDSA|ES256|RS256) only/,
      )
      await assertRefused(
        verifierOf({ secret: SECRET, publicKeyPem: keys.publicPem }),
        confused,
        /signature does not verify with this server's HS256 key/,
      )
    }
    // The same token built with jose, to be sure it is not the hand-made encoding that fails.
    const viaJose = await sign('HS256', secretBytes(ED.publicPem))
    await assertRefused(verifierOf({ publicKeyPem: ED.publicPem }), viaJose, /"HS256" is not allowed/)
  })

  test('an algorithm the key does not allow: RS256 or ES256 against an Ed25519 key, HS512 against a secret', async () => {
    const verifier = verifierOf({ publicKeyPem: ED.publicPem })
    await assertRefused(
      verifier,
      await sign('RS256', RSA.privateKey),
      /"RS256" is not allowed: this server accepts EdDSA only/,
    )
    await assertRefused(verifier, await sign('ES256', EC.privateKey), /"ES256" is not allowed/)
    await assertRefused(
      verifierOf({ secret: SECRET }),
      await sign('HS512', secretBytes(SECRET)),
      /"HS512" is not allowed: this server accepts HS256 only/,
    )
  })

  test('a malformed herald claim, named', async () => {
    const verifier = verifierOf({ secret: SECRET })
    const cases: Array<[unknown, RegExp]> = [
      [['chat/*'], /"herald" claim is malformed: it is not an object/],
      ['chat/*', /"herald" claim is malformed: it is not an object/],
      [null, /"herald" claim is malformed/],
      [{ admin: ['**'] }, /"herald" claim is malformed: "admin" is not one of its members/],
      [{ subscribe: 'chat/*' }, /"herald" claim is malformed: "subscribe" is not a list/],
      [{ publish: [42] }, /"herald" claim is malformed: publish\[0\]: A topic pattern is a string/],
      [{ subscribe: ['a', 'b/**/c'] }, /"herald" claim is malformed: subscribe\[1\]: "\*\*" may only end/],
      [{ subscribe: Array.from({ length: 101 }, (_, i) => `t${i}`) }, /more than 100 patterns/],
    ]
    for (const [claim, detail] of cases) {
      await assertRefused(verifier, await sign('HS256', secretBytes(SECRET), { herald: claim }), detail)
    }
  })

  test('malformed tokens: not three parts, bad base64, not JSON, empty', async () => {
    const verifier = verifierOf({ secret: SECRET })
    for (const token of ['', 'abc', 'a.b', 'a.b.c.d', '!!!.???.***', `${b64('x')}.${b64({})}.x`]) {
      await assertRefused(verifier, token, /^The token is malformed: /)
    }
    // A critical header parameter Herald does not know, which jose's message would quote: not quoted.
    // Built by hand: jose refuses to sign it.
    const input = `${b64({ alg: 'HS256', crit: ['x'.repeat(300)], ['x'.repeat(300)]: 1 })}.${b64({ exp: nowSeconds() + 60 })}`
    const crit = `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`
    const error = await assertRefused(
      verifier,
      crit,
      /critical header parameter \("crit"\) that Herald does not support/,
    )
    assert.ok(!error.message.includes('xxxx'))
  })

  test(`a token over ${MAX_TOKEN_LENGTH} characters is refused before it is parsed`, async () => {
    const big = await sign('HS256', secretBytes(SECRET), { pad: 'x'.repeat(MAX_TOKEN_LENGTH) })
    assert.ok(big.length > MAX_TOKEN_LENGTH)
    await assertRefused(verifierOf({ secret: SECRET }), big, /longer than 8192 characters/)
    // Not even a token: the length alone decides.
    await assertRefused(verifierOf({ secret: SECRET }), 'x'.repeat(MAX_TOKEN_LENGTH + 1), /longer than 8192/)
  })
})

describe('TokenVerifier.verify: the cache of verified tokens', () => {
  test('a token verified once gives the same principal again, without being verified again', async () => {
    const verifier = verifierOf({ secret: SECRET })
    const token = await sign('HS256', secretBytes(SECRET), { herald: { publish: ['a'] } })
    const first = await verifier.verify(token)
    assert.equal(await verifier.verify(token), first, 'the identical object, from the cache')
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.scopes), 'shared, so frozen')
  })

  test('a cached token is refused once expired', async () => {
    let clock = Date.now()
    const verifier = verifierOf({ secret: SECRET, now: () => clock })
    const exp = Math.floor(clock / 1000) + 60
    const token = await sign('HS256', secretBytes(SECRET), { exp })
    const first = await verifier.verify(token)
    clock += 30_000
    assert.equal(await verifier.verify(token), first, 'still cached 30 s later')
    clock = exp * 1000
    await assertRefused(verifier, token, /The token expired/)
  })

  test('when full, the oldest entry makes room', async () => {
    const verifier = verifierOf({ secret: SECRET, cacheSize: 2 })
    const tokens = await Promise.all(
      [1, 2, 3].map((n) => sign('HS256', secretBytes(SECRET), { sub: `u${n}` })),
    )
    // One after the other: verifications run side by side may finish, and so be cached, in any order.
    const first = []
    for (const token of tokens) first.push(await verifier.verify(token))
    assert.equal(await verifier.verify(tokens[2]!), first[2], 'the newest is cached')
    const again = await verifier.verify(tokens[0]!)
    assert.notEqual(again, first[0], 'the oldest was evicted, so verified anew')
    assert.deepEqual(again, first[0])
  })

  test('a refused token is not cached: it stays refused, and a valid one beside it is unaffected', async () => {
    const verifier = verifierOf({ secret: SECRET })
    const wrong = await sign('HS256', secretBytes(OTHER_SECRET))
    await assertRefused(verifier, wrong, /signature/)
    await assertRefused(verifier, wrong, /signature/)
    assert.equal((await verifier.verify(await sign('HS256', secretBytes(SECRET)))).kind, 'token')
  })
})

describe('configuration: HERALD_JWT_SECRET, HERALD_JWT_PUBLIC_KEY, HERALD_JWT_AUDIENCE', () => {
  test('unset: no keys; set: passed on as they are', () => {
    assert.deepEqual(loadConfig({}, {}).jwt, {
      secret: undefined,
      publicKeyPem: undefined,
      audience: undefined,
    })
    const config = loadConfig(
      {},
      { HERALD_JWT_SECRET: SECRET, HERALD_JWT_PUBLIC_KEY: ED.publicPem, HERALD_JWT_AUDIENCE: 'a' },
    )
    assert.deepEqual(config.jwt, { secret: SECRET, publicKeyPem: ED.publicPem, audience: 'a' })
    assert.deepEqual(verifierOf(config.jwt).algorithms, ['HS256', 'EdDSA'])
    assert.equal(loadConfig({ 'jwt-audience': 'flag' }, { HERALD_JWT_AUDIENCE: 'env' }).jwt.audience, 'flag')
  })

  test('a public key that is not PEM text is the path of a PEM file; an unreadable one is a ConfigError', async () => {
    const file = join(await tempDir(), 'jwt.pem')
    await writeFile(file, EC.publicPem)
    const config = loadConfig({}, { HERALD_JWT_PUBLIC_KEY: file })
    assert.equal(config.jwt.publicKeyPem, EC.publicPem)
    assert.deepEqual(verifierOf(config.jwt).algorithms, ['ES256'])
    assert.throws(() => loadConfig({}, { HERALD_JWT_PUBLIC_KEY: `${file}.missing` }), {
      name: 'ConfigError',
      message: /HERALD_JWT_PUBLIC_KEY: it is not PEM text.*cannot be read \(ENOENT\)/,
    })
  })
})

describe('CLI: herald token, and --token on client commands', () => {
  /** A stand-in server that records the Authorization header of each request and answers 201. */
  const seen: Array<string | undefined> = []
  const server = createServer((request, response) => {
    seen.push(request.headers.authorization)
    request.resume()
    response.writeHead(201, { 'content-type': 'application/json' }).end('{"seq":1}')
  })
  let url = ''
  before(async () => {
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(() => server.close())

  test('herald token prints one token that verifies, with the claims asked for', async () => {
    const run = await runCliUntilExit(
      [
        'token',
        '--sub',
        'alice',
        '--subscribe',
        'chat/*',
        '--subscribe',
        'news/**',
        '--publish',
        'chat/alice',
        '--ttl',
        '10m',
      ],
      { HERALD_JWT_SECRET: SECRET, HERALD_JWT_AUDIENCE: 'herald-test' },
    )
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stderr, '')
    const lines = run.stdout.split('\n')
    assert.equal(lines.length, 2, 'one line')
    const principal = await verifierOf({ secret: SECRET, audience: 'herald-test' }).verify(lines[0]!)
    assert.equal(principal.sub, 'alice')
    assert.deepEqual(principal.scopes, [
      { actions: ['publish'], topics: [['chat', 'alice']] },
      {
        actions: ['subscribe'],
        topics: [
          ['chat', '*'],
          ['news', '**'],
        ],
      },
    ])
    const left = principal.expiresAt - Date.now()
    assert.ok(left > 540_000 && left <= 601_000, `expires in ${left} ms`)
  })

  test('herald token refuses without HERALD_JWT_SECRET, with a short one, and without any pattern', async () => {
    const unset = await runCliUntilExit(['token', '--subscribe', 'a'])
    assert.equal(unset.code, 1)
    assert.equal(unset.stdout, '')
    assert.match(unset.stderr, /^herald token: HERALD_JWT_SECRET is not set/)
    const short = await runCliUntilExit(['token', '--subscribe', 'a'], { HERALD_JWT_SECRET: 'short' })
    assert.equal(short.code, 1)
    assert.match(short.stderr, /at least 32 bytes/)
    const none = await runCliUntilExit(['token', '--sub', 'x'], { HERALD_JWT_SECRET: SECRET })
    assert.equal(none.code, 1)
    assert.match(none.stderr, /^herald token: give at least one --subscribe or --publish pattern/)
    const long = await runCliUntilExit(['token', '--subscribe', 'a', '--ttl', '31d'], {
      HERALD_JWT_SECRET: SECRET,
    })
    assert.equal(long.code, 1)
    assert.match(long.stderr, /--ttl is from 1s to 30d/)
    const bad = await runCliUntilExit(['token', '--publish', 'a/**/b'], { HERALD_JWT_SECRET: SECRET })
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /^herald token: --publish: "\*\*" may only end/)
  })

  test('--token is sent as Authorization: Bearer, from the flag or HERALD_TOKEN', async () => {
    const token = await mintToken(SECRET, { publish: ['t'], ttlSeconds: 60 })
    seen.length = 0
    const fromFlag = await runCliUntilExit(['publish', 't', '--type', 'x', '--url', url, '--token', token])
    assert.equal(fromFlag.code, 0, fromFlag.stderr)
    const fromEnv = await runCliUntilExit(['publish', 't', '--type', 'x', '--url', url], {
      HERALD_TOKEN: token,
    })
    assert.equal(fromEnv.code, 0, fromEnv.stderr)
    // A flag wins over the environment, whichever kind each is.
    const flagOverEnv = await runCliUntilExit(
      ['publish', 't', '--type', 'x', '--url', url, '--token', token],
      {
        HERALD_API_KEY: 'some-key',
      },
    )
    assert.equal(flagOverEnv.code, 0, flagOverEnv.stderr)
    assert.deepEqual(seen, [`Bearer ${token}`, `Bearer ${token}`, `Bearer ${token}`])
  })

  test('--token and --api-key together (or both variables) are a usage error, before any request', async () => {
    seen.length = 0
    // One after the other: side by side, on a loaded machine, a spawn can outlast its 20 s deadline.
    for (const args of [['publish', 't', '--type', 'x'], ['tail', 't'], ['hooks', 'list'], ['cluster']]) {
      const both = await runCliUntilExit([...args, '--url', url, '--token', 'a.b.c', '--api-key', 'k'])
      assert.equal(both.code, 1, both.stderr)
      assert.match(
        both.stderr,
        /^herald \w+: --api-key and --token do not go together: give one\.\n\n(Usage|Run)/,
      )
      const env = await runCliUntilExit([...args, '--url', url], {
        HERALD_TOKEN: 'a.b.c',
        HERALD_API_KEY: 'k',
      })
      assert.equal(env.code, 1, env.stderr)
      assert.match(env.stderr, /HERALD_API_KEY and HERALD_TOKEN are both set/)
    }
    assert.deepEqual(seen, [], 'nothing was sent')
  })

  test('a token HTTP cannot carry: one line, without the token', async () => {
    const run = await runCliUntilExit(['publish', 't', '--type', 'x', '--url', url, '--token', 'eyJ hidden'])
    assert.equal(run.code, 1)
    assert.match(
      run.stderr,
      /^herald publish: the token \(--token\) cannot be sent: it has a space.*\(at position 4\)/,
    )
    assert.ok(!run.stderr.includes('hidden'))
  })
})
