import { parseArgs } from 'node:util'
import { CLIENT_HELP, CLIENT_OPTIONS, clientOptions, failure, headers, request } from './client.ts'
import { UsageError } from './publish.ts'
import { printAnswer, printPages, subcommandOf } from './resource.ts'

export const KEYS_HELP = `Usage: herald keys <create|list|show|revoke> [options]

Manages scoped API keys (an admin request: run it with the root key, or a key with admin on "**").

  herald keys create --name billing --scope 'publish:orders/*' [--scope 'subscribe:orders/**']
                     [--expires-at 2027-01-01T00:00:00Z] [--rate-limit 100/s]
      Prints the new key as JSON; its "key" (hk_…) is shown this once, never again.
      A scope is <actions>:<topic patterns>, each a comma list: actions of publish, subscribe and
      admin; patterns where * is one segment and a final ** one or more ("orders/*", "**").
  herald keys list                 One line of JSON per key (never the secret)
  herald keys show <id>            One key as JSON
  herald keys revoke <id>          Refused from now on, on every node within a second

Options:
  --name <name>          create: what the key is for
  --scope <scope>        create: repeat for several scopes
  --expires-at <time>    create: an RFC 3339 time after which the key is refused
  --rate-limit <rate>    create: this key's own budget, e.g. 100/s, 600/m
${CLIENT_HELP}
  -h, --help             Show this help.
`

export const KEYS_OPTIONS = {
  ...CLIENT_OPTIONS,
  name: { type: 'string' },
  scope: { type: 'string', multiple: true },
  'expires-at': { type: 'string' },
  'rate-limit': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

const SUBCOMMANDS = ['create', 'list', 'show', 'revoke']

export async function keys(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: KEYS_OPTIONS })
  if (values.help) {
    process.stdout.write(KEYS_HELP)
    return
  }
  const usage = 'Run "herald keys --help" for its usage.\n'
  const { subcommand, argument: id } = subcommandOf(
    'keys',
    positionals,
    SUBCOMMANDS,
    (each) => each === 'show' || each === 'revoke',
    'key id',
    usage,
  )
  const client = clientOptions(values, KEYS_HELP)
  const path = `/v1/keys${id === undefined ? '' : `/${encodeURIComponent(id)}`}`
  switch (subcommand) {
    case 'create': {
      if (values.name === undefined) throw new UsageError('keys create needs --name.', usage)
      if (values.scope === undefined) throw new UsageError('keys create needs at least one --scope.', usage)
      const body = {
        name: values.name,
        scopes: values.scope.map((scope) => parseScope(scope, usage)),
        ...(values['expires-at'] === undefined ? {} : { expires_at: values['expires-at'] }),
        ...(values['rate-limit'] === undefined ? {} : { rate_limit: values['rate-limit'] }),
      }
      const response = await request(client, path, {
        method: 'POST',
        headers: headers(client, { 'content-type': 'application/json' }),
        body: JSON.stringify(body),
      })
      return printAnswer(response, [201])
    }
    case 'list':
      return printPages(client, path, 'keys')
    case 'show':
      return printAnswer(await request(client, path, { headers: headers(client) }), [200])
    case 'revoke': {
      const response = await request(client, path, { method: 'DELETE', headers: headers(client) })
      if (response.status !== 204) throw await failure(response)
      process.stdout.write(`revoked ${id}\n`)
      return
    }
  }
}

/** `publish,subscribe:orders/*,billing` → {actions, topics}; the server checks each part. */
function parseScope(text: string, usage: string): { actions: string[]; topics: string[] } {
  const colon = text.indexOf(':')
  if (colon <= 0 || colon === text.length - 1) {
    throw new UsageError(`--scope "${text}" is <actions>:<topic patterns>, e.g. publish:orders/*.`, usage)
  }
  return { actions: text.slice(0, colon).split(','), topics: text.slice(colon + 1).split(',') }
}
