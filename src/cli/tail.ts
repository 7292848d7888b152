import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { WebSocket } from 'ws'
import { encodeCursor } from '../core/cursor.ts'
import { parseFilterText } from '../core/filter.ts'
import {
  CLIENT_HELP,
  CLIENT_OPTIONS,
  type ClientOptions,
  clientOptions,
  failure,
  headers,
  request,
  seconds,
  topicPath,
  UnreachableError,
  unreachable,
  whatHappened,
} from './client.ts'
import { UsageError } from './publish.ts'

export const TAIL_HELP = `Usage: herald tail <topic…> [--via sse|ndjson|ws|poll] [--after <seq>] [options]

Follows topics and prints each event as one line of JSON. Without --after it starts at each
topic's current head (new events only). After a disconnect it reconnects and resumes from
the last event it printed: nothing is missed and nothing printed twice. When retention removed
events after that point, or the seq is past the topic's head, it says so on stderr and goes on.

Options:
  --via <protocol>     sse (default), ndjson, ws, or poll (long polling; one topic)
  --after <seq>        Start after this seq (0: from the oldest retained event); one topic
  --limit <n>          Events per request with --via poll (default 100)
  --filter <json>      Only the events a CloudEvents filter matches, e.g.
                       '{"exact":{"data.tier":"gold"}}' (docs/api.md#filters)
${CLIENT_HELP}
  -h, --help           Show this help.
`

const WAIT_SECONDS = 30
const VIAS = ['sse', 'ndjson', 'ws', 'poll'] as const
type Via = (typeof VIAS)[number]

interface Printed {
  topic: string
  seq: number
}

/** A gap signal (docs/api.md): the topic is absent from a poll's, which names it in its URL. */
type Gap = { topic?: string; after: number } & (
  | { reason: 'pruned'; first_seq: number }
  | { reason: 'ahead'; head_seq: number }
)
type Skip = (json: string, topic?: string) => void

export const TAIL_OPTIONS = {
  ...CLIENT_OPTIONS,
  via: { type: 'string', default: 'sse' },
  after: { type: 'string' },
  limit: { type: 'string', default: '100' },
  filter: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const

export async function tail(args: string[], signal?: AbortSignal): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: TAIL_OPTIONS })
  if (values.help) {
    process.stdout.write(TAIL_HELP)
    return
  }
  const topics = positionals
  if (topics.length === 0) throw new UsageError('tail takes at least one topic.', TAIL_HELP)
  const via = values.via as Via
  if (!VIAS.includes(via)) throw new UsageError(`--via is one of ${VIAS.join(', ')}.`, TAIL_HELP)
  if (via === 'poll' && topics.length > 1) throw new UsageError('--via poll follows one topic.', TAIL_HELP)
  if (values.after !== undefined && (!/^\d+$/.test(values.after) || topics.length > 1)) {
    throw new UsageError('--after is a seq (a whole number), for one topic.', TAIL_HELP)
  }
  const options = clientOptions(values, TAIL_HELP)
  let filter: unknown
  if (values.filter !== undefined) {
    try {
      // Checked here as the server would (a WebSocket would only answer an error op and go on).
      filter = parseFilterText(values.filter, '--filter').canonical
    } catch (error) {
      throw new UsageError(`--filter: ${(error as Error).message}`, TAIL_HELP)
    }
  }
  const follow: Follow = { filter }
  // Where each topic resumes: the last event printed (or the start asked for).
  const positions = new Map<string, number>()
  for (const topic of topics) {
    positions.set(
      topic,
      values.after !== undefined ? Number(values.after) : await headOf(options, topic, signal),
    )
  }
  const print = (json: string) => {
    const event = JSON.parse(json) as Printed
    if (event.seq <= (positions.get(event.topic) ?? 0)) return // already printed before a reconnect
    positions.set(event.topic, event.seq)
    process.stdout.write(`${json}\n`)
  }
  // The server says a topic does not continue from where this left it: said on stderr, and followed.
  const skip = (json: string, topic?: string) => {
    const gap = JSON.parse(json) as Gap
    const name = gap.topic ?? topic!
    if (gap.reason === 'ahead') {
      positions.set(name, gap.head_seq)
      process.stderr.write(
        `herald tail: ${name}: seq ${gap.after} is past the topic's head (${gap.head_seq}); following from the head\n`,
      )
    } else {
      positions.set(name, gap.first_seq - 1)
      process.stderr.write(
        `herald tail: ${name}: events ${gap.after + 1} to ${gap.first_seq - 1} are gone (retention); following from ${gap.first_seq}\n`,
      )
    }
  }
  let failures = 0
  let connectedOnce = false
  const connected = () => {
    failures = 0
    connectedOnce = true
  }
  while (!signal?.aborted) {
    try {
      if (via === 'poll')
        await followByPolling(
          options,
          follow,
          topics[0]!,
          positions,
          Number(values.limit),
          print,
          skip,
          signal,
          connected,
        )
      else if (via === 'ws')
        await followByWebSocket(options, follow, positions, print, skip, signal, connected)
      else await followByStream(options, follow, via, positions, print, skip, signal, connected)
    } catch (error) {
      if (signal?.aborted) return
      if ((error as { fatal?: boolean }).fatal) throw error
      // A server never reached is a wrong URL or a server that is down: say so rather than retry
      // forever. Once connected, a lost connection is a restart to ride out.
      if (error instanceof UnreachableError && !connectedOnce) throw error
      failures += 1
      const delay = Math.min(30_000, 250 * 2 ** failures)
      process.stderr.write(`herald tail: ${(error as Error).message}; resuming in ${delay} ms\n`)
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}

async function headOf(options: ClientOptions, topic: string, signal?: AbortSignal): Promise<number> {
  const response = await request(options, topicPath(topic), { headers: headers(options), signal })
  if (!response.ok) throw await failure(response)
  return ((await response.json()) as { head_seq: number }).head_seq
}

/** A 4xx means the request itself is wrong: retrying will not help. */
async function refused(response: Response): Promise<Error> {
  const error = await failure(response)
  return Object.assign(error, { fatal: response.status >= 400 && response.status < 500 })
}

/** What every protocol asks for: the filter, canonical, or undefined. */
interface Follow {
  filter: unknown
}

/** `&filter=…` for a URL, or nothing. */
function filterQuery(follow: Follow): string {
  return follow.filter === undefined ? '' : `&filter=${encodeURIComponent(JSON.stringify(follow.filter))}`
}

async function followByPolling(
  options: ClientOptions,
  follow: Follow,
  topic: string,
  positions: Map<string, number>,
  limit: number,
  print: (json: string) => void,
  skip: Skip,
  signal: AbortSignal | undefined,
  connected: () => void,
): Promise<void> {
  for (;;) {
    const after = positions.get(topic)!
    const path = `${topicPath(topic)}/events?after=${after}&limit=${limit}&wait=${WAIT_SECONDS}${filterQuery(follow)}`
    // The server holds each poll up to WAIT_SECONDS: that is not a missing answer.
    const response = await request(options, path, { headers: headers(options), signal }, WAIT_SECONDS * 1000)
    if (!response.ok) throw await refused(response)
    connected()
    const page = (await response.json()) as { events: unknown[]; next: number; gap?: unknown }
    if (page.gap !== undefined) skip(JSON.stringify(page.gap), topic)
    for (const event of page.events) print(JSON.stringify(event))
    // With a filter, `next` is past the events it skipped: go on from there, not from the last printed.
    if (page.next > positions.get(topic)!) positions.set(topic, page.next)
  }
}

async function followByStream(
  options: ClientOptions,
  follow: Follow,
  via: 'sse' | 'ndjson',
  positions: Map<string, number>,
  print: (json: string) => void,
  skip: Skip,
  signal: AbortSignal | undefined,
  connected: () => void,
): Promise<void> {
  const topics = [...positions.keys()]
  const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')
  const cursor = encodeCursor(positions)
  const path =
    topics.length === 1
      ? `${topicPath(topics[0]!)}/events?after=${positions.get(topics[0]!)}${filterQuery(follow)}`
      : `/v1/stream?${query}&last_event_id=${cursor}${filterQuery(follow)}`
  const accept = via === 'sse' ? 'text/event-stream' : 'application/x-ndjson'
  const response = await request(options, path, { headers: headers(options, { accept }), signal })
  if (!response.ok) throw await refused(response)
  connected()
  const decoder = new TextDecoder()
  let buffer = ''
  let gapNext = false // an SSE `event: gap` line: its data is a gap, not an event
  for await (const chunk of response.body!) {
    buffer += decoder.decode(chunk as Uint8Array, { stream: true })
    let newline = buffer.indexOf('\n')
    while (newline >= 0) {
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 1)
      if (via === 'ndjson' && line.startsWith('{"gap":')) skip(JSON.stringify(JSON.parse(line).gap))
      else if (via === 'ndjson' && line !== '') print(line)
      if (via === 'sse' && line === 'event: gap') gapNext = true
      else if (via === 'sse' && line.startsWith('data: ')) {
        if (gapNext) skip(line.slice(6))
        else print(line.slice(6))
        gapNext = false
      } else if (via === 'sse' && line === '') gapNext = false
      newline = buffer.indexOf('\n')
    }
  }
  throw new Error('the stream ended')
}

async function followByWebSocket(
  options: ClientOptions,
  follow: Follow,
  positions: Map<string, number>,
  print: (json: string) => void,
  skip: Skip,
  signal: AbortSignal | undefined,
  connected: () => void,
): Promise<void> {
  const url = `${options.url.replace(/^http/, 'ws')}/v1/ws`
  const ws = new WebSocket(url, ['herald.v1'], {
    headers: headers(options),
    handshakeTimeout: options.timeoutMs,
  })
  const stop = () => ws.close(1000)
  signal?.addEventListener('abort', stop, { once: true })
  try {
    try {
      await once(ws, 'open')
    } catch (error) {
      const message = (error as Error).message
      if (message.includes('handshake has timed out')) {
        throw unreachable(url, `no answer within ${seconds(options.timeoutMs)} (timeout)`)
      }
      // An HTTP answer instead of the upgrade is the server's word, not a network failure; a 4xx
      // (a wrong key, say) will not change by retrying, as with the other protocols.
      const answer = 'Unexpected server response: '
      if (message.startsWith(answer)) {
        const status = Number(message.slice(answer.length))
        throw Object.assign(new Error(`${url} answered ${status}`), { fatal: status >= 400 && status < 500 })
      }
      throw unreachable(url, whatHappened(error))
    }
    connected()
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { op: string; event?: unknown; detail?: string }
      if (message.op === 'event') print(JSON.stringify(message.event))
      else if (message.op === 'gap') skip(data.toString())
      else if (message.op === 'error') process.stderr.write(`herald tail: ${message.detail}\n`)
    })
    for (const [topic, after] of positions) {
      ws.send(
        JSON.stringify({
          op: 'subscribe',
          topic,
          after,
          ...(follow.filter === undefined ? {} : { filter: follow.filter }),
        }),
      )
    }
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer]
    throw new Error(`the WebSocket closed (${code} ${reason.toString()})`)
  } finally {
    signal?.removeEventListener('abort', stop)
  }
}
