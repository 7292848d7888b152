import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { CLIENT_HELP, CLIENT_OPTIONS, clientOptions, headers, request } from './client.ts'
import { UsageError } from './publish.ts'
import { printAnswer, printPages, subcommandOf } from './resource.ts'

export const TYPES_HELP = `Usage: herald types <put|list|show|versions> [options]

Manages the event-type catalog: a JSON Schema 2020-12 per event type, versioned. Publishing an event
of a registered type checks its data against the schema (and stamps "dataschema").

  herald types put order.created --schema order.json [--description '…'] [--deprecated]
      Registers the schema (a file, or - for standard input) as the type's next version, unless it
      is the latest one already; prints the type as JSON, with "compatibility" when a new version
      refuses data the previous one accepted ("breaking") or may ("unknown"). An admin request.
  herald types list                      One line of JSON per type (its latest version)
  herald types show order.created        The type as JSON, with the list of its versions
  herald types show order.created --version 1
                                         One version as JSON

Options:
  --schema <file>        put: the JSON Schema file, or - for standard input
  --description <text>   put: what the type means
  --deprecated           put: mark the type deprecated (publishing it still works)
  --version <n>          show: one version
${CLIENT_HELP}
  -h, --help             Show this help.
`

export const TYPES_OPTIONS = {
  ...CLIENT_OPTIONS,
  schema: { type: 'string' },
  description: { type: 'string' },
  deprecated: { type: 'boolean' },
  version: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

const SUBCOMMANDS = ['put', 'list', 'show']

export async function types(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: TYPES_OPTIONS })
  if (values.help) {
    process.stdout.write(TYPES_HELP)
    return
  }
  const usage = 'Run "herald types --help" for its usage.\n'
  const { subcommand, argument: type } = subcommandOf(
    'types',
    positionals,
    SUBCOMMANDS,
    (each) => each !== 'list',
    'event type',
    usage,
  )
  const client = clientOptions(values, TYPES_HELP)
  const path = `/v1/event-types${type === undefined ? '' : `/${encodeURIComponent(type)}`}`
  switch (subcommand) {
    case 'put': {
      if (values.schema === undefined) throw new UsageError('types put needs --schema <file>.', usage)
      const text = values.schema === '-' ? await readStdin() : await readFile(values.schema, 'utf8')
      let schema: unknown
      try {
        schema = JSON.parse(text)
      } catch (error) {
        throw new UsageError(`--schema ${values.schema} is not JSON: ${(error as Error).message}`, usage)
      }
      const body = {
        schema,
        ...(values.description === undefined ? {} : { description: values.description }),
        ...(values.deprecated ? { deprecated: true } : {}),
      }
      const response = await request(client, path, {
        method: 'PUT',
        headers: headers(client, { 'content-type': 'application/json' }),
        body: JSON.stringify(body),
      })
      return printAnswer(response, [200, 201])
    }
    case 'list':
      return printPages(client, path, 'event_types')
    case 'show': {
      const version = values.version === undefined ? '' : `/versions/${encodeURIComponent(values.version)}`
      return printAnswer(await request(client, `${path}${version}`, { headers: headers(client) }), [200])
    }
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
