import { parseArgs } from 'node:util'
import { mintToken } from '../access/tokens.ts'
import { ConfigError } from '../config/config.ts'
import { parseDuration } from '../core/duration.ts'
import { HeraldError } from '../core/errors.ts'
import { UsageError } from './usage.ts'

export const TOKEN_HELP = `Usage: herald token [--sub <subject>] (--subscribe <pattern> | --publish <pattern>)… [options]

Mints a signed token (JWT, HS256) with HERALD_JWT_SECRET and prints it. The server accepts it
wherever it accepts a key (Authorization: Bearer, or --token/HERALD_TOKEN for the CLI) when it has
the same HERALD_JWT_SECRET. A token grants publish and subscribe on the topic patterns given ("*"
one segment, a final "**" one or more segments), never admin, until it expires.

HERALD_JWT_SECRET comes from the environment only (a flag's value shows in the process list).
Tokens are meant to be minted by your own backend; this command is for trying them out and for
scripts.

Options:
  --sub <subject>          Who the token is for (its "sub" claim)
  --subscribe <pattern>    Topics it may read (streams, polls, WebSocket); repeat for more
  --publish <pattern>      Topics it may publish to; repeat for more
  --ttl <duration>         How long it is valid, e.g. 15m, 1h, 7d (default 1h, at most 30d)
  --audience <aud>         Its "aud" claim (default HERALD_JWT_AUDIENCE, when set)
  -h, --help               Show this help.

Example:
  TOKEN=$(herald token --sub alice --subscribe 'chat/*' --publish 'chat/alice')
  herald tail chat/lobby --token "$TOKEN"
`

export const TOKEN_OPTIONS = {
  sub: { type: 'string' },
  subscribe: { type: 'string', multiple: true },
  publish: { type: 'string', multiple: true },
  ttl: { type: 'string', default: '1h' },
  audience: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

/** The longest TTL minted: a token cannot be revoked, so it should not outlive a month. */
const MAX_TTL_SECONDS = 30 * 86_400

export async function token(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: TOKEN_OPTIONS })
  if (values.help) {
    process.stdout.write(TOKEN_HELP)
    return
  }
  if (positionals.length > 0) throw new UsageError('token takes no arguments, only options.', TOKEN_HELP)
  const subscribe = values.subscribe ?? []
  const publish = values.publish ?? []
  if (subscribe.length === 0 && publish.length === 0) {
    throw new UsageError(
      'give at least one --subscribe or --publish pattern: a token without them grants nothing.',
      TOKEN_HELP,
    )
  }
  if (values.sub === '') throw new UsageError('--sub is not empty when given.', TOKEN_HELP)
  let ttlMs: number
  try {
    ttlMs = parseDuration(values.ttl)
  } catch (error) {
    throw new UsageError(`--ttl: ${(error as Error).message}.`, TOKEN_HELP)
  }
  // Whole seconds, as exp is; rounded up so that "1500ms" does not become one second.
  const ttlSeconds = Math.ceil(ttlMs / 1000)
  if (ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS) {
    throw new UsageError('--ttl is from 1s to 30d.', TOKEN_HELP)
  }
  const secret = process.env['HERALD_JWT_SECRET'] || undefined
  if (secret === undefined) {
    throw new ConfigError(
      'HERALD_JWT_SECRET is not set: herald token signs with the secret the server verifies tokens with, ' +
        'from the environment only (never a flag, which the process list would show).',
    )
  }
  const audience = values.audience ?? (process.env['HERALD_JWT_AUDIENCE'] || undefined)
  let minted: string
  try {
    minted = await mintToken(secret, { sub: values.sub, subscribe, publish, ttlSeconds, audience })
  } catch (error) {
    // A pattern parsePattern refused: its field ("subscribe[0]") says which option.
    if (error instanceof HeraldError) {
      const option = (error.field ?? 'subscribe').split('[')[0]
      throw new UsageError(`--${option}: ${error.message}`, TOKEN_HELP)
    }
    throw error
  }
  process.stdout.write(`${minted}\n`)
}
