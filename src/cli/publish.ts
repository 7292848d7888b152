import { text } from 'node:stream/consumers'
import { parseArgs } from 'node:util'
import { CLIENT_HELP, CLIENT_OPTIONS, clientOptions, failure, headers, request, topicPath } from './client.ts'
import { UsageError } from './usage.ts'

// Where the other commands have always imported it from (it lives in usage.ts, which client.ts needs too).
export { UsageError }

export const PUBLISH_HELP = `Usage: herald publish <topic> --type <type> [--data <json>] [options]

Publishes one event and prints the stored event. Without --data, the data is read
from standard input (JSON).

Options:
  --type <type>              Event type, e.g. order.created (required)
  --data <json>              Event data as JSON
  --id <id>                  Event id (a repeat of a stored id is not stored again)
  --source <uri>             CloudEvents source
  --subject <text>           CloudEvents subject
  --idempotency-key <key>    Idempotency-Key header
${CLIENT_HELP}
  -h, --help                 Show this help.
`

export const PUBLISH_OPTIONS = {
  ...CLIENT_OPTIONS,
  type: { type: 'string' },
  data: { type: 'string' },
  id: { type: 'string' },
  source: { type: 'string' },
  subject: { type: 'string' },
  'idempotency-key': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

export async function publish(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: PUBLISH_OPTIONS })
  if (values.help) {
    process.stdout.write(PUBLISH_HELP)
    return
  }
  const [topic] = positionals
  if (!topic || positionals.length > 1) throw new UsageError('publish takes one topic.', PUBLISH_HELP)
  if (!values.type) throw new UsageError('--type is required.', PUBLISH_HELP)
  const dataText = values.data ?? (process.stdin.isTTY ? undefined : await text(process.stdin))
  const event: Record<string, unknown> = { type: values.type }
  if (dataText !== undefined && dataText.trim() !== '') {
    try {
      event['data'] = JSON.parse(dataText)
    } catch {
      throw new UsageError('The data is not valid JSON.', PUBLISH_HELP)
    }
  }
  for (const name of ['id', 'source', 'subject'] as const) if (values[name]) event[name] = values[name]
  const options = clientOptions(values, PUBLISH_HELP)
  const extra: Record<string, string> = { 'content-type': 'application/json' }
  if (values['idempotency-key']) extra['idempotency-key'] = values['idempotency-key']
  const response = await request(options, `${topicPath(topic)}/events`, {
    method: 'POST',
    headers: headers(options, extra),
    body: JSON.stringify(event),
  })
  if (!response.ok) throw await failure(response)
  process.stdout.write(`${await response.text()}\n`)
}
