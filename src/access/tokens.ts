import { createPublicKey, createSecretKey, type KeyObject, type webcrypto } from 'node:crypto'
import { type JWTPayload, errors as jose, jwtVerify, SignJWT } from 'jose'
import { ConfigError } from '../config/config.ts'
import { errors, HeraldError } from '../core/errors.ts'
import { MAX_PATTERNS, parsePattern, type TopicPattern } from './patterns.ts'
import type { Principal, Scope } from './principal.ts'

/**
 * Signed tokens (JWT, RFC 7519) minted by the operator's own backend, verified here per RFC 8725:
 * - the algorithms are an allow-list derived from the configured keys, never from the token: HS256
 *   for HERALD_JWT_SECRET, and exactly one for HERALD_JWT_PUBLIC_KEY, decided by the key's type
 *   (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA). `alg: none` and an HS256 token "signed" with
 *   the public key's PEM as its HMAC secret (algorithm confusion) fail: HS256 is allowed only with
 *   a configured secret, and an HS256 token is only ever checked against that secret;
 * - `exp` is required and holds by this server's clock, without tolerance: a stream opened with the
 *   token ends at `exp`, so a token past it could open nothing that lasts (an EventSource would
 *   reconnect and be cut again and again); `nbf` and `iat` are checked with
 *   CLOCK_TOLERANCE_SECONDS of skew (a backend whose clock runs ahead mints them);
 * - `aud` is checked when HERALD_JWT_AUDIENCE is set (a token without `aud` then fails too).
 * Tokens grant `publish` and `subscribe` on the patterns of their `herald` claim, never `admin`.
 */

/** The principal a verified token stands for. */
export type TokenPrincipal = Extract<Principal, { kind: 'token' }>

export interface TokenVerifier {
  /** The principal of a valid token; rejects with a 401 HeraldError saying why it is not. */
  verify(token: string): Promise<TokenPrincipal>
  /** The algorithms accepted, in the order of the keys (for logs and error messages). */
  readonly algorithms: readonly string[]
}

export interface TokenVerifierOptions {
  /** HERALD_JWT_SECRET: the HS256 secret, at least 32 bytes. */
  secret?: string | undefined
  /** HERALD_JWT_PUBLIC_KEY: a PEM public key (SPKI or PKCS#1), RSA, EC P-256 or Ed25519. */
  publicKeyPem?: string | undefined
  /** HERALD_JWT_AUDIENCE: when set, tokens must name it in `aud`. */
  audience?: string | undefined
  /** The clock, epoch ms (tests move it; the default is Date.now). */
  now?: () => number
  /** Verified tokens remembered (default TOKEN_CACHE_SIZE; tests make it small). */
  cacheSize?: number
}

/** Skew allowed between the minting backend's clock and this server's, for exp, nbf and iat. */
export const CLOCK_TOLERANCE_SECONDS = 5
/** The longest token read at all (an input bound): longer ones are refused before any parsing. */
export const MAX_TOKEN_LENGTH = 8192
/** HS256 keys of at least 256 bits (RFC 7518 §3.2). */
export const MIN_SECRET_BYTES = 32
/** Verified tokens remembered; past it the oldest entry makes room. */
export const TOKEN_CACHE_SIZE = 10_000
/** The challenge of every refused token (RFC 6750 §3.1). */
export const INVALID_TOKEN_CHALLENGE = 'Bearer realm="herald", error="invalid_token"'

/** What `herald token` and tests mint: HS256 with HERALD_JWT_SECRET. */
export interface MintClaims {
  sub?: string | undefined
  publish?: readonly string[] | undefined
  subscribe?: readonly string[] | undefined
  ttlSeconds: number
  audience?: string | undefined
}

/** Which header `alg` a key verifies, and the key itself (converted once, at start). */
interface VerificationKey {
  alg: 'HS256' | 'RS256' | 'ES256' | 'EdDSA'
  key: webcrypto.CryptoKey
}

/** The verifier of the configured keys, or undefined when none is configured (tokens are then not accepted). */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier | undefined {
  const keys: VerificationKey[] = []
  if (options.secret !== undefined && options.secret !== '') keys.push(secretKey(options.secret))
  if (options.publicKeyPem !== undefined && options.publicKeyPem !== '') {
    keys.push(publicKey(options.publicKeyPem))
  }
  if (keys.length === 0) return undefined
  const algorithms = keys.map((entry) => entry.alg)
  const byAlg = new Map(keys.map((entry) => [entry.alg as string, entry.key]))
  const audience = options.audience === '' ? undefined : options.audience
  const now = options.now ?? Date.now
  const cacheSize = options.cacheSize ?? TOKEN_CACHE_SIZE
  // Token → principal: a hit costs one Map lookup instead of a signature check. Only tokens that
  // verified are entered, so a client cannot fill it with garbage; its size bounds the memory.
  const cache = new Map<string, TokenPrincipal>()

  return {
    algorithms,
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) {
        throw invalid(
          `The token is longer than ${MAX_TOKEN_LENGTH} characters (8 KiB), which Herald refuses.`,
        )
      }
      const cached = cache.get(token)
      if (cached !== undefined) {
        if (now() < cached.expiresAt) return cached
        cache.delete(token) // expired: verified again below, which refuses it
      }
      let payload: JWTPayload
      try {
        // jose checks `alg` against `algorithms` before it asks for a key, so the resolver only ever
        // sees an allowed one, and each allowed alg has exactly one key.
        const result = await jwtVerify(token, (header) => byAlg.get(header.alg ?? '')!, {
          algorithms,
          requiredClaims: ['exp'],
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          currentDate: new Date(now()),
          ...(audience === undefined ? {} : { audience }),
        })
        payload = result.payload
      } catch (error) {
        throw refusal(error, algorithms, audience, token)
      }
      const principal = principalOf(payload, now())
      if (now() >= principal.expiresAt) {
        throw invalid(`The token expired at ${isoTime(principal.expiresAt / 1000)} (its "exp" claim).`)
      }
      // Insertion order is age: the first key is the oldest entry.
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!)
      cache.set(token, principal)
      return principal
    },
  }
}

/** An HS256 token for `claims`, signed with `secret` (`herald token`, tests). */
export async function mintToken(secret: string, claims: MintClaims): Promise<string> {
  assertSecretLength(secret)
  if (!Number.isSafeInteger(claims.ttlSeconds) || claims.ttlSeconds < 1) {
    throw new RangeError('ttlSeconds is a whole number of seconds, at least 1.')
  }
  const herald: { publish?: string[]; subscribe?: string[] } = {}
  for (const action of ['publish', 'subscribe'] as const) {
    const patterns = claims[action]
    if (patterns === undefined || patterns.length === 0) continue
    // Refuse here what verify would refuse: a token that cannot be used is no use to mint.
    if (patterns.length > MAX_PATTERNS) throw new RangeError(`At most ${MAX_PATTERNS} ${action} patterns.`)
    for (const [index, text] of patterns.entries()) parsePattern(text, `${action}[${index}]`)
    herald[action] = [...patterns]
  }
  const jwt = new SignJWT(Object.keys(herald).length > 0 ? { herald } : {})
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + claims.ttlSeconds)
  if (claims.sub !== undefined) jwt.setSubject(claims.sub)
  if (claims.audience !== undefined) jwt.setAudience(claims.audience)
  return jwt.sign(new TextEncoder().encode(secret))
}

function secretKey(secret: string): VerificationKey {
  assertSecretLength(secret)
  const key = createSecretKey(Buffer.from(secret, 'utf8'))
  // A CryptoKey made once: jose would otherwise import the raw secret again for every token.
  return { alg: 'HS256', key: key.toCryptoKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['verify']) }
}

function assertSecretLength(secret: string): void {
  const bytes = Buffer.byteLength(secret, 'utf8')
  if (bytes < MIN_SECRET_BYTES) {
    throw new ConfigError(
      `Invalid HERALD_JWT_SECRET: HS256 needs a key of at least ${MIN_SECRET_BYTES} bytes (256 bits, RFC 7518 §3.2), ` +
        `this one has ${bytes}; e.g. openssl rand -hex 32.`,
    )
  }
}

/** The key of HERALD_JWT_PUBLIC_KEY and the one algorithm its type allows; a ConfigError for anything else. */
function publicKey(pem: string): VerificationKey {
  // A private key would be accepted by createPublicKey (it derives the public half), but it does not
  // belong on the verifying side: say so rather than quietly hold the signing key.
  if (pem.includes('PRIVATE KEY-----')) {
    throw new ConfigError(
      'Invalid HERALD_JWT_PUBLIC_KEY: it holds a private key; give the public key only (e.g. openssl pkey -pubout).',
    )
  }
  let key: KeyObject
  try {
    key = createPublicKey({ key: pem, format: 'pem' })
  } catch (error) {
    throw new ConfigError(
      `Invalid HERALD_JWT_PUBLIC_KEY: not a PEM public key (${(error as Error).message}). ` +
        'Use "-----BEGIN PUBLIC KEY-----" (SPKI) of an RSA, EC P-256 or Ed25519 key.',
    )
  }
  const type = key.asymmetricKeyType
  if (type === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    // RFC 7518 §3.3: RS256 keys are 2048 bits or larger (jose refuses smaller ones at verification).
    if (bits < 2048) {
      throw new ConfigError(
        `Invalid HERALD_JWT_PUBLIC_KEY: an RSA key of ${bits} bits; RS256 needs 2048 or more.`,
      )
    }
    return {
      alg: 'RS256',
      key: key.toCryptoKey({ name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']),
    }
  }
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve !== 'prime256v1') {
      throw new ConfigError(
        `Invalid HERALD_JWT_PUBLIC_KEY: an EC key on the curve ${curve ?? 'unknown'}; Herald accepts P-256 (ES256) only.`,
      )
    }
    return { alg: 'ES256', key: key.toCryptoKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']) }
  }
  if (type === 'ed25519') {
    return { alg: 'EdDSA', key: key.toCryptoKey({ name: 'Ed25519' }, false, ['verify']) }
  }
  throw new ConfigError(
    `Invalid HERALD_JWT_PUBLIC_KEY: a key of type ${type ?? 'unknown'}; Herald accepts RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA).`,
  )
}

/** The principal of a verified payload; a 401 naming the claim that is malformed. */
function principalOf(payload: JWTPayload, nowMs: number): TokenPrincipal {
  const { exp, iat, sub } = payload
  // jose has checked that exp is a number in the future; JSON can still spell Infinity (1e400).
  if (typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw invalid('The token\'s "exp" claim is not a finite NumericDate (seconds since 1970).')
  }
  // jose checks iat's type, and its age only with maxTokenAge: a token issued in the future is checked here.
  if (typeof iat === 'number' && iat > nowMs / 1000 + CLOCK_TOLERANCE_SECONDS) {
    throw invalid(
      `The token was issued in the future (its "iat" claim, beyond ${CLOCK_TOLERANCE_SECONDS} s of clock tolerance).`,
    )
  }
  if (sub !== undefined && typeof sub !== 'string') throw invalid('The token\'s "sub" claim is not a string.')
  const scopes = scopesOf(payload['herald'])
  return Object.freeze({ kind: 'token', sub, scopes, expiresAt: exp * 1000 })
}

/** The scopes of the `herald` claim: `{publish?: [patterns], subscribe?: [patterns]}`, nothing else. */
function scopesOf(claim: unknown): readonly Scope[] {
  if (claim === undefined) return Object.freeze([])
  if (claim === null || typeof claim !== 'object' || Array.isArray(claim)) {
    throw malformedClaim('it is not an object of the form {"publish": [patterns], "subscribe": [patterns]}')
  }
  for (const name of Object.keys(claim)) {
    if (name !== 'publish' && name !== 'subscribe') {
      throw malformedClaim(
        `${JSON.stringify(name.slice(0, 40))} is not one of its members ("publish", "subscribe")`,
      )
    }
  }
  const scopes: Scope[] = []
  for (const action of ['publish', 'subscribe'] as const) {
    const list = (claim as Record<string, unknown>)[action]
    if (list === undefined) continue
    if (!Array.isArray(list)) throw malformedClaim(`"${action}" is not a list of topic patterns`)
    if (list.length > MAX_PATTERNS) throw malformedClaim(`"${action}" has more than ${MAX_PATTERNS} patterns`)
    const topics: TopicPattern[] = list.map((text, index) => {
      try {
        return Object.freeze(parsePattern(text, `herald.${action}[${index}]`))
      } catch (error) {
        if (error instanceof HeraldError) throw malformedClaim(`${action}[${index}]: ${error.message}`)
        throw error
      }
    })
    // An empty list grants nothing: no scope rather than one that reaches no topic.
    if (topics.length > 0)
      scopes.push(Object.freeze({ actions: Object.freeze([action]), topics: Object.freeze(topics) }))
  }
  return Object.freeze(scopes)
}

function malformedClaim(why: string): HeraldError {
  return invalid(`The token's "herald" claim is malformed: ${why}.`)
}

/** The 401 of a refused token, with the challenge RFC 6750 asks for. Never the token itself. */
function invalid(detail: string): HeraldError {
  return errors.unauthorized(detail, 'Authorization', { 'WWW-Authenticate': INVALID_TOKEN_CHALLENGE })
}

/** Why jose refused a token, in words; what is quoted from the token is only short, checked values. */
function refusal(
  error: unknown,
  algorithms: readonly string[],
  audience: string | undefined,
  token: string,
): HeraldError {
  const accepted = `this server accepts ${algorithms.join(' and ')} only`
  if (error instanceof jose.JOSEAlgNotAllowed) {
    const alg = headerAlg(token)
    if (alg === 'none')
      return invalid(`The token is unsigned (alg "none"), which is never accepted; ${accepted}.`)
    return invalid(
      `The token's algorithm${alg === undefined ? '' : ` "${alg}"`} is not allowed: ${accepted} (an algorithm is tied to its key).`,
    )
  }
  if (error instanceof jose.JWSSignatureVerificationFailed) {
    const alg = headerAlg(token)
    return invalid(
      `The token's signature does not verify with this server's ${alg === undefined ? '' : `${alg} `}key.`,
    )
  }
  if (error instanceof jose.JWTExpired) {
    const exp = (error.payload as JWTPayload).exp
    const when = typeof exp === 'number' && Number.isFinite(exp) ? ` at ${isoTime(exp)}` : ''
    return invalid(`The token expired${when} (its "exp" claim).`)
  }
  if (error instanceof jose.JWTClaimValidationFailed) {
    const { claim, reason } = error
    if (reason === 'missing' && claim === 'exp') {
      return invalid('The token has no "exp" claim: Herald accepts only tokens that expire.')
    }
    if (claim === 'aud') {
      return invalid(
        reason === 'missing'
          ? `The token has no "aud" claim, and this server requires the audience "${audience}".`
          : `The token's "aud" claim does not name this server's audience ("${audience}").`,
      )
    }
    if (claim === 'nbf' && reason === 'check_failed') {
      return invalid(
        `The token is not valid yet (its "nbf" claim is in the future, beyond ${CLOCK_TOLERANCE_SECONDS} s of clock tolerance).`,
      )
    }
    if (reason === 'invalid') {
      return invalid(`The token's "${claim}" claim is not a number (a NumericDate: seconds since 1970).`)
    }
    return invalid(`The token's "${claim}" claim is not valid here.`)
  }
  if (error instanceof jose.JWSInvalid || error instanceof jose.JWTInvalid) {
    // jose's messages name the part that is wrong ("Invalid Compact JWS"), never its content.
    return invalid(`The token is malformed: ${error.message.slice(0, 200)}.`)
  }
  if (error instanceof jose.JOSENotSupported) {
    // Its message would quote the header's unknown parameter: the client's text, of any length.
    return invalid('The token names a critical header parameter ("crit") that Herald does not support.')
  }
  if (error instanceof jose.JOSEError)
    return invalid(`The token is not valid: ${error.message.slice(0, 200)}.`)
  // A key that does not fit its algorithm would be a bug here, not the client's doing: still a refusal,
  // which says nothing more.
  return invalid('The token is not valid.')
}

/**
 * The `alg` of the token's header when it is one that can be quoted safely (short, letters and
 * digits), else undefined. Only for error messages: the verification never trusts it.
 */
function headerAlg(token: string): string | undefined {
  const dot = token.indexOf('.')
  if (dot <= 0) return undefined
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown
    const alg = (header as { alg?: unknown } | null)?.alg
    if (typeof alg !== 'string' || alg.length === 0 || alg.length > 16) return undefined
    for (let i = 0; i < alg.length; i++) {
      const c = alg.charCodeAt(i)
      const alphanumeric = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
      if (!alphanumeric && c !== 0x2d) return undefined
    }
    return alg
  } catch {
    return undefined
  }
}

function isoTime(seconds: number): string {
  const ms = seconds * 1000
  // Date covers ±8.64e15 ms; a stranger exp is shown as the number it is.
  return Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(seconds)
}
