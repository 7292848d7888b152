import { parseArgs } from 'node:util'
import {
  CLIENT_HELP,
  CLIENT_OPTIONS,
  type ClientOptions,
  clientOptions,
  failure,
  headers,
  request,
} from './client.ts'
import { UsageError } from './publish.ts'
import { didYouMean } from './suggest.ts'

export const HOOKS_HELP = `Usage: herald hooks <command> [arguments] [options]

Manages webhooks (REST Hooks) on a running Herald over its HTTP API. Prints the API's
answer as one line of JSON, or with --table as a table for people to read. An error
prints the problem's detail and exits 1.

Commands:
  list [--after <id>] [--limit <n>]
      Hooks by id (secrets are not listed); "next" is the --after of the next page.
  create --target-url <url> [--topic <topic>] [--event <pattern>] [options]
      Registers a hook; prints it with its signing secret. Give --topic, --event or both.
        --secret <whsec_…>      Signing secret (default: a generated one)
        --unordered             Deliver in parallel (default: in publish order per topic)
        --verify                REST Hooks handshake: the target must echo X-Hook-Secret
        --max-in-flight <n>     Requests in flight for this hook at most (default 10)
        --rate-limit <r>        Deliveries per second at most (default: no limit)
        --description <text>
        --filter <json>         Only the events a CloudEvents filter matches, e.g.
                                '{"exact":{"data.tier":"gold"}}' (docs/api.md#filters)
  get <id>
      One hook, with its secret.
  update <id> [options]
      Changes a hook; the options of create, and:
        --pause | --resume      Queue deliveries without sending them | send again
                                (--resume also re-activates a disabled hook)
        --rotate-secret         New generated secret; the old one keeps signing for the
                                server's --secret-grace (default 24h)
        --ordered               Back to ordered delivery
        --any-topic             Drop the topic filter (every topic; needs an --event)
        --any-event             Drop the event type filter
        --rate-limit none       Drop the rate limit
        --description ""        Drop the description
        --filter none           Drop the content filter
  delete <id>
      Removes a hook and its queued deliveries.
  deliveries <id> [--delivery <n>] [--event <event id>] [--before <n>] [--limit <n>]
      The attempts log, newest first; "next" is the --before of the next page.
  deliveries <id> <delivery>
      One delivery: its state, next attempt, and every attempt made.
  retry <id> <delivery>
      Sends one delivery again now, whatever its state.
  replay <id> (--after <seq> | --since <time>) [--topic <topic>] [--limit <n>]
      Queues the hook's events of a topic again: after a seq, or stored since a time
      (2026-11-23T08:00:00Z, or a duration ago: 30m, 2h, 1d). --topic is needed when the
      hook follows every topic. --limit: events at most (default and most 10000).

Options:
  --table              Print a table instead of JSON
${CLIENT_HELP}
  -h, --help           Show this help.
`

/** What a usage error ends with: the whole help is long, so where to find it. */
const HINT = 'Run "herald hooks --help" for the commands and their options.\n'

const COMMON = {
  ...CLIENT_OPTIONS,
  table: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

const HOOK_FIELDS = {
  'target-url': { type: 'string' },
  topic: { type: 'string' },
  event: { type: 'string' },
  secret: { type: 'string' },
  unordered: { type: 'boolean' },
  'max-in-flight': { type: 'string' },
  'rate-limit': { type: 'string' },
  description: { type: 'string' },
  filter: { type: 'string' },
} as const

/** Each command's own options, beside COMMON, and how many positionals it takes. */
const COMMANDS = {
  list: { options: { after: { type: 'string' }, limit: { type: 'string' } }, positionals: [0, 0] },
  create: { options: { ...HOOK_FIELDS, verify: { type: 'boolean' } }, positionals: [0, 0] },
  get: { options: {}, positionals: [1, 1] },
  update: {
    options: {
      ...HOOK_FIELDS,
      ordered: { type: 'boolean' },
      pause: { type: 'boolean' },
      resume: { type: 'boolean' },
      'rotate-secret': { type: 'boolean' },
      'any-topic': { type: 'boolean' },
      'any-event': { type: 'boolean' },
    },
    positionals: [1, 1],
  },
  delete: { options: {}, positionals: [1, 1] },
  deliveries: {
    options: {
      delivery: { type: 'string' },
      event: { type: 'string' },
      before: { type: 'string' },
      limit: { type: 'string' },
    },
    positionals: [1, 2],
  },
  retry: { options: {}, positionals: [2, 2] },
  replay: {
    options: {
      after: { type: 'string' },
      since: { type: 'string' },
      topic: { type: 'string' },
      limit: { type: 'string' },
    },
    positionals: [1, 1],
  },
} as const

type Command = keyof typeof COMMANDS
type Values = Record<string, string | boolean | undefined>

const ARGUMENTS: Record<Command, string> = {
  list: 'no arguments',
  create: 'no arguments (the target is --target-url)',
  get: 'a hook id',
  update: 'a hook id',
  delete: 'a hook id',
  deliveries: 'a hook id, and optionally a delivery id',
  retry: 'a hook id and a delivery id',
  replay: 'a hook id',
}

/** The options `herald hooks <command>` takes (those all commands share, for an unknown command). */
export function hooksOptions(command: string | undefined): Record<string, { type: string; short?: string }> {
  return command !== undefined && Object.hasOwn(COMMANDS, command)
    ? { ...COMMON, ...COMMANDS[command as Command].options }
    : COMMON
}

export async function hooks(args: string[]): Promise<void> {
  const [name, ...rest] = args
  if (name === undefined) throw new UsageError('hooks takes a command.', HOOKS_HELP)
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HOOKS_HELP)
    return
  }
  if (!Object.hasOwn(COMMANDS, name)) {
    const suggestion = didYouMean(name, Object.keys(COMMANDS))
    throw new UsageError(`unknown command "${name}".${suggestion}`, suggestion ? HINT : HOOKS_HELP)
  }
  const command = name as Command
  const spec = COMMANDS[command]
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { ...COMMON, ...spec.options },
  })
  if (values.help) {
    process.stdout.write(HOOKS_HELP)
    return
  }
  const [least, most] = spec.positionals
  if (positionals.length < least || positionals.length > most) {
    throw new UsageError(`hooks ${command} takes ${ARGUMENTS[command]}.`, HINT)
  }
  const client = clientOptions(values, HINT)
  const table = values.table === true
  const v = values as Values
  const [id, delivery] = positionals.map(encodeURIComponent)
  switch (command) {
    case 'list': {
      const page = await call(client, 'GET', `/v1/hooks${query(v, ['after', 'limit'])}`)
      return print(page, table, hookTable)
    }
    case 'create':
      return print(await call(client, 'POST', '/v1/hooks', createBody(v)), table, hookDetails)
    case 'get':
      return print(await call(client, 'GET', `/v1/hooks/${id}`), table, hookDetails)
    case 'update':
      return print(await call(client, 'PATCH', `/v1/hooks/${id}`, updateBody(v)), table, hookDetails)
    case 'delete':
      await call(client, 'DELETE', `/v1/hooks/${id}`)
      return print({ id: positionals[0], deleted: true }, table, hookDetails)
    case 'deliveries': {
      if (delivery !== undefined) {
        if (['delivery', 'event', 'before', 'limit'].some((option) => v[option] !== undefined)) {
          throw new UsageError('With a delivery id, deliveries takes no filters.', HINT)
        }
        return print(
          await call(client, 'GET', `/v1/hooks/${id}/deliveries/${delivery}`),
          table,
          deliveryTable,
        )
      }
      const path = `/v1/hooks/${id}/deliveries${query(v, ['delivery', 'event', 'before', 'limit'])}`
      return print(await call(client, 'GET', path), table, attemptTable)
    }
    case 'retry':
      return print(
        await call(client, 'POST', `/v1/hooks/${id}/deliveries/${delivery}/retry`),
        table,
        deliveryTable,
      )
    case 'replay':
      return print(await call(client, 'POST', `/v1/hooks/${id}/replay`, replayBody(v)), table, hookDetails)
  }
}

// ---- request bodies ---------------------------------------------------------------------------

/** A number option: sent as a JSON number so that the server checks its range and says why. */
function numberOption(values: Values, option: string): number | undefined {
  const text = values[option]
  if (typeof text !== 'string') return undefined
  if (!/^\s*-?\d+(\.\d+)?\s*$/.test(text)) throw new UsageError(`--${option} is a number.`, HINT)
  return Number(text)
}

/** The fields create and update share, from the flags given. */
function hookFields(values: Values): Record<string, unknown> {
  const body: Record<string, unknown> = {}
  if (values['target-url'] !== undefined) body['target_url'] = values['target-url']
  if (values['topic'] !== undefined) body['topic'] = values['topic']
  if (values['event'] !== undefined) body['event'] = values['event']
  if (values['secret'] !== undefined) body['secret'] = values['secret']
  if (values['unordered']) body['ordered'] = false
  const maxInFlight = numberOption(values, 'max-in-flight')
  if (maxInFlight !== undefined) body['max_in_flight'] = maxInFlight
  if (values['rate-limit'] !== undefined) {
    body['rate_limit'] = values['rate-limit'] === 'none' ? null : numberOption(values, 'rate-limit')
  }
  if (values['description'] !== undefined) body['description'] = values['description']
  const filter = values['filter']
  if (typeof filter === 'string') {
    try {
      // The server checks the filter itself (and names what is wrong); here it only has to be JSON.
      body['filter'] = filter === 'none' ? null : (JSON.parse(filter) as unknown)
    } catch {
      throw new UsageError('--filter is a filter as JSON, such as \'{"exact":{"type":"order.paid"}}\'.', HINT)
    }
  }
  return body
}

function createBody(values: Values): Record<string, unknown> {
  if (values['target-url'] === undefined) throw new UsageError('--target-url is required.', HINT)
  const body = hookFields(values)
  if (body['rate_limit'] === null) delete body['rate_limit'] // no limit is the default
  if (values['verify']) body['verify'] = true
  return body
}

function updateBody(values: Values): Record<string, unknown> {
  const conflicts: Array<[string, string]> = [
    ['pause', 'resume'],
    ['ordered', 'unordered'],
    ['topic', 'any-topic'],
    ['event', 'any-event'],
    ['secret', 'rotate-secret'],
  ]
  for (const [a, b] of conflicts) {
    if (values[a] !== undefined && values[b] !== undefined) {
      throw new UsageError(`--${a} and --${b} do not go together.`, HINT)
    }
  }
  const body = hookFields(values)
  if (values['ordered']) body['ordered'] = true
  if (values['pause']) body['state'] = 'paused'
  if (values['resume']) body['state'] = 'active'
  if (values['rotate-secret']) body['rotate_secret'] = true
  if (values['any-topic']) body['topic'] = null
  if (values['any-event']) body['event'] = null
  if (body['description'] === '') body['description'] = null
  if (Object.keys(body).length === 0) throw new UsageError('update: nothing to change.', HINT)
  return body
}

const AGO = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

function replayBody(values: Values): Record<string, unknown> {
  const { after, since } = values
  if ((after === undefined) === (since === undefined)) {
    throw new UsageError('replay takes --after <seq> or --since <time>, one of them.', HINT)
  }
  const body: Record<string, unknown> = {}
  if (typeof after === 'string') {
    if (!/^\d+$/.test(after)) throw new UsageError('--after is a seq: a whole number.', HINT)
    body['after'] = Number(after)
  }
  if (typeof since === 'string') {
    // A duration (30m, 2h) means that long ago; anything else is passed on as a time.
    const ago = AGO.exec(since)
    body['since'] = ago ? new Date(Date.now() - Number(ago[1]) * UNIT_MS[ago[2]!]!).toISOString() : since
  }
  if (values['topic'] !== undefined) body['topic'] = values['topic']
  const limit = numberOption(values, 'limit')
  if (limit !== undefined) body['limit'] = limit
  return body
}

function query(values: Values, names: string[]): string {
  const params = new URLSearchParams()
  for (const name of names) {
    const value = values[name]
    if (typeof value === 'string') params.set(name, value)
  }
  const text = params.toString()
  return text === '' ? '' : `?${text}`
}

// ---- the request ------------------------------------------------------------------------------

async function call(client: ClientOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await request(client, path, {
    method,
    headers: headers(client, body === undefined ? {} : { 'content-type': 'application/json' }),
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  if (!response.ok) throw await failure(response)
  if (response.status === 204) return undefined
  return response.json()
}

// ---- output -----------------------------------------------------------------------------------

type Json = Record<string, unknown>

function print(answer: unknown, table: boolean, format: (answer: Json) => string): void {
  process.stdout.write(table ? format(answer as Json) : `${JSON.stringify(answer)}\n`)
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '-'
  return typeof value === 'string' ? value : JSON.stringify(value)
}

/** Columns padded to their widest cell; the last column is not padded. */
function columns(head: string[], rows: unknown[][]): string {
  const text = [head, ...rows.map((row) => row.map(cell))]
  const widths = head.map((_, i) => Math.max(...text.map((row) => row[i]!.length)))
  return text
    .map((row) =>
      row
        .map((value, i) => (i === row.length - 1 ? value : value.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n')
}

function more(answer: Json, option: string): string {
  return answer['next'] === null || answer['next'] === undefined
    ? ''
    : `(more: ${option} ${cell(answer['next'])})\n`
}

function hookTable(answer: Json): string {
  const list = answer['hooks'] as Json[]
  const rows = list.map((hook) => [
    hook['id'],
    hook['state'],
    hook['topic'] ?? '*',
    hook['event'] ?? '*',
    hook['ordered'] ? 'ordered' : 'unordered',
    hook['target_url'],
  ])
  return columns(['ID', 'STATE', 'TOPIC', 'EVENT', 'ORDER', 'TARGET'], rows) + more(answer, '--after')
}

/** One object as `key  value` lines (a hook, a replay's count, a deletion). */
function hookDetails(answer: Json): string {
  return columns(
    ['FIELD', 'VALUE'],
    Object.entries(answer).map(([key, value]) => [key, value]),
  )
}

function outcome(attempt: Json): string {
  return attempt['status'] === null ? `error: ${cell(attempt['error'])}` : String(attempt['status'])
}

function attemptRows(attempts: Json[]): unknown[][] {
  return attempts.map((attempt) => [
    attempt['id'],
    attempt['delivery'],
    `${cell(attempt['topic'])}#${cell(attempt['seq'])}`,
    attempt['event_id'],
    attempt['attempt'],
    attempt['at'],
    `${cell(attempt['duration_ms'])}ms`,
    outcome(attempt),
  ])
}

const ATTEMPT_HEAD = ['ATTEMPT_ID', 'DELIVERY', 'EVENT', 'EVENT_ID', 'TRY', 'AT', 'TOOK', 'RESULT']

function attemptTable(answer: Json): string {
  return columns(ATTEMPT_HEAD, attemptRows(answer['attempts'] as Json[])) + more(answer, '--before')
}

function deliveryTable(answer: Json): string {
  const { attempt_log: log, ...delivery } = answer
  const details = hookDetails(delivery)
  const attempts = log as Json[] | undefined
  if (attempts === undefined) return details
  return `${details}\n${attempts.length === 0 ? 'no attempts yet\n' : columns(ATTEMPT_HEAD, attemptRows(attempts))}`
}
