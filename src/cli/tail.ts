import { parseArgs } from 'node:util'
import { CLIENT_HELP, CLIENT_OPTIONS, clientOptions, failure, headers, topicPath } from './client.ts'
import { UsageError } from './publish.ts'

export const TAIL_HELP = `Usage: herald tail <topic> [--after <seq>] [options]

Follows a topic and prints each event as one line of JSON, by long polling.
Without --after it starts at the topic's current head (new events only).

Options:
  --after <seq>        Start after this seq (0: from the oldest retained event)
  --limit <n>          Events per request (default 100)
${CLIENT_HELP}
  -h, --help           Show this help.
`

const WAIT_SECONDS = 30

export async function tail(args: string[], signal?: AbortSignal): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...CLIENT_OPTIONS,
      after: { type: 'string' },
      limit: { type: 'string', default: '100' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(TAIL_HELP)
    return
  }
  const [topic] = positionals
  if (!topic || positionals.length > 1) throw new UsageError('tail takes one topic.', TAIL_HELP)
  const options = clientOptions(values)
  let after: number
  if (values.after !== undefined) {
    if (!/^\d+$/.test(values.after)) throw new UsageError('--after is a seq (a whole number).', TAIL_HELP)
    after = Number(values.after)
  } else {
    const response = await fetch(`${options.url}${topicPath(topic)}`, { headers: headers(options), signal })
    if (!response.ok) throw await failure(response)
    after = ((await response.json()) as { head_seq: number }).head_seq
  }
  let failures = 0
  while (!signal?.aborted) {
    const url = `${options.url}${topicPath(topic)}/events?after=${after}&limit=${values.limit}&wait=${WAIT_SECONDS}`
    try {
      const response = await fetch(url, { headers: headers(options), signal })
      if (!response.ok) {
        const error = await failure(response)
        if (response.status < 500) throw error
        throw Object.assign(error, { retry: true })
      }
      const page = (await response.json()) as { events: unknown[]; next: number }
      for (const event of page.events) process.stdout.write(`${JSON.stringify(event)}\n`)
      after = page.next
      failures = 0
    } catch (error) {
      if (signal?.aborted) return
      const retryable = (error as { retry?: boolean }).retry || (error as Error).name === 'TypeError'
      if (!retryable) throw error
      // The server is restarting or unreachable: back off and resume from the same cursor.
      failures += 1
      const delay = Math.min(30_000, 250 * 2 ** failures)
      process.stderr.write(`herald tail: ${(error as Error).message}; retrying in ${delay} ms\n`)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}
