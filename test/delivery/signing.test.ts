import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Webhook } from 'standardwebhooks'
import { HeraldError } from '../../src/core/errors.ts'
import { generateSecret, parseSecret, sign, signedHeaders, verify } from '../../src/delivery/signing.ts'

const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
}

test('the Standard Webhooks test vector (STANDARDS.md 6.3)', () => {
  const { secret, id, timestamp, body, signature } = VECTOR
  assert.equal(sign({ id, timestamp, body, secrets: [secret] }), signature)
  assert.equal(sign({ id, timestamp, body: Buffer.from(body), secrets: [secret] }), signature)
  const at = timestamp * 1000
  const input = { id, timestamp: String(timestamp), signature, body, secrets: [secret] }
  assert.deepEqual(verify({ ...input, nowMs: at }), { ok: true })
  assert.deepEqual(verify({ ...input, nowMs: at + 299_000 }), { ok: true })
  assert.equal(verify({ ...input, nowMs: at + 301_000 }).ok, false, 'older than 5 minutes')
  assert.equal(verify({ ...input, nowMs: at - 301_000 }).ok, false, 'more than 5 minutes ahead')
  assert.equal(verify({ ...input, body: '{"test": 2432232315}', nowMs: at }).ok, false)
  assert.equal(verify({ ...input, id: 'msg_other', nowMs: at }).ok, false)
  assert.equal(
    verify({ ...input, signature: 'v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=', nowMs: at }).ok,
    false,
  )
  assert.equal(verify({ ...input, signature: 'v1,short', nowMs: at }).ok, false)
  assert.equal(verify({ ...input, signature: undefined, nowMs: at }).ok, false)
  assert.equal(verify({ ...input, secrets: [generateSecret()], nowMs: at }).ok, false)
  // A receiver holding the secret among others, or several offered signatures, still verifies.
  assert.deepEqual(verify({ ...input, secrets: [generateSecret(), secret], nowMs: at }), { ok: true })
  assert.deepEqual(verify({ ...input, signature: `v1,AAAA ${signature}`, nowMs: at }), { ok: true })
})

test('the standardwebhooks package verifies what Herald signs, with one secret and during a rotation', () => {
  const old = generateSecret()
  const next = generateSecret()
  const body = JSON.stringify({ id: 'evt_1', type: 'order.created', topic: 'orders', seq: 7, data: { a: 1 } })
  const single = signedHeaders('evt_1', body, [old])
  assert.deepEqual(new Webhook(old).verify(body, single), JSON.parse(body))
  assert.throws(() => new Webhook(next).verify(body, single))
  assert.throws(() => new Webhook(old).verify(`${body} `, single))

  const dual = signedHeaders('evt_1', body, [old, next])
  assert.equal(dual['webhook-signature']!.split(' ').length, 2)
  assert.deepEqual(new Webhook(old).verify(body, dual), JSON.parse(body))
  assert.deepEqual(new Webhook(next).verify(body, dual), JSON.parse(body))
  assert.throws(() => new Webhook(generateSecret()).verify(body, dual))
  assert.equal(dual['content-type'], 'application/json')
  assert.match(dual['webhook-timestamp']!, /^\d{10}$/)
})

test('Herald verifies what the standardwebhooks package signs', () => {
  const secret = generateSecret()
  const now = new Date()
  const signature = new Webhook(secret).sign('msg_1', now, '{"a":1}')
  const timestamp = String(Math.floor(now.getTime() / 1000))
  assert.deepEqual(verify({ id: 'msg_1', timestamp, signature, body: '{"a":1}', secrets: [secret] }), {
    ok: true,
  })
})

test('generated secrets are whsec_ and 32 random bytes', () => {
  const a = generateSecret()
  assert.match(a, /^whsec_[A-Za-z0-9+/]{43}=$/)
  assert.equal(parseSecret(a).length, 32)
  assert.notEqual(a, generateSecret())
})

test('bad secrets are refused with invalid-secret on the secret field', () => {
  const bytes = (n: number) => Buffer.alloc(n, 7).toString('base64')
  assert.equal(parseSecret(`whsec_${bytes(24)}`).length, 24)
  assert.equal(parseSecret(`whsec_${bytes(64)}`).length, 64)
  for (const bad of [
    '',
    'whsec_',
    bytes(32), // no prefix
    `WHSEC_${bytes(32)}`,
    `whsec_${bytes(23)}`, // too short
    `whsec_${bytes(65)}`, // too long
    `whsec_${bytes(32).replace(/=$/, '')}`, // unpadded
    `whsec_${bytes(32).slice(0, 10)}!${bytes(32).slice(10)}`, // not base64
    `whsec_${bytes(32)} `,
  ]) {
    assert.throws(
      () => parseSecret(bad),
      (error: unknown) =>
        error instanceof HeraldError &&
        error.code === 'invalid-secret' &&
        error.status === 422 &&
        error.field === 'secret',
      JSON.stringify(bad),
    )
  }
  assert.throws(() => sign({ id: 'a', timestamp: 1, body: '', secrets: ['whsec_nope'] }), HeraldError)
})
