// The cost of checking credentials, in process: authenticate (root key, scoped key, HS256 token),
// the route's and the topic's rights, and the rate-limit check (no budget set), as every publish
// request pays them. Real parts: a SQLite store holding the key, the key ring, jose's verifier.
//   node bench/access-check.ts     (BENCH_ITERATIONS=200000, best of 5 runs each)
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KeyRing, newKey } from '../src/access/keys.ts'
import { mayAtAll } from '../src/access/principal.ts'
import { RateLimits } from '../src/access/rate-limit.ts'
import { createTokenVerifier, mintToken } from '../src/access/tokens.ts'
import { createAccess } from '../src/http/access.ts'
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts'
import { round, table } from './lib.ts'

const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 200_000)
const ROOT_KEY = 'bench-root-key-0123456789abcdef'
const SECRET = 'bench-jwt-secret-0123456789abcdef0123456789'

export async function runAccessCheck(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'herald-bench-'))
  const store = new SqliteStore({ dataDir, synchronous: 'normal' })
  const ring = new KeyRing(store)
  const limits = new RateLimits({ defaultRate: null, backend: { kind: 'memory' } })
  try {
    const made = newKey(
      {
        name: 'bench',
        scopes: [{ actions: ['publish'], topics: ['bench'] }],
        expires_at: null,
        rate_limit: null,
      },
      Date.now(),
      'root',
    )
    await store.createKey(made.key)
    const access = createAccess({
      apiKey: ROOT_KEY,
      keys: ring,
      tokens: createTokenVerifier({ secret: SECRET }),
    })
    const jwt = await mintToken(SECRET, { sub: 'bench', publish: ['bench'], ttlSeconds: 3600 })
    const rows: Array<Array<string | number>> = []
    const costs = new Map<string, number>()
    for (const [name, token] of [
      ['root key', ROOT_KEY],
      ['scoped key', made.secret],
      ['JWT (HS256)', jwt],
    ] as const) {
      let best = Number.POSITIVE_INFINITY
      for (let run = 0; run < 5; run++) {
        const started = performance.now()
        for (let i = 0; i < ITERATIONS; i++) {
          const principal = await access.authenticate(token)
          mayAtAll(principal, 'publish')
          access.authorize(principal, 'publish', 'bench')
          await limits.consume(principal, '127.0.0.1')
        }
        best = Math.min(best, ((performance.now() - started) * 1000) / ITERATIONS)
      }
      costs.set(name, best)
      rows.push([name, round(best, 2)])
    }
    return [
      `Checking credentials in process: best of 5 runs of ${ITERATIONS.toLocaleString('en-US')} checks; Node ${process.version}`,
      '',
      table(['credentials', 'µs per request (authenticate, rights, rate-limit check)'], rows),
      '',
      `Beyond the root key: a scoped key costs ${round(costs.get('scoped key')! - costs.get('root key')!, 2)} µs more per request, a JWT ${round(costs.get('JWT (HS256)')! - costs.get('root key')!, 2)} µs.`,
    ].join('\n')
  } finally {
    ring.close()
    await limits.close()
    await store.close()
    await rm(dataDir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  process.stdout.write(`${await runAccessCheck()}\n`)
}
