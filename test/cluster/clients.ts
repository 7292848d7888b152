import { WebSocket } from 'ws'
import { encodeCursor } from '../../src/core/cursor.ts'
import { sleep } from '../helpers.ts'
import type { ClientHistory, EventRef, History } from './history.ts'

/**
 * The clients of the cluster tests, written as real ones are: publishers that retry what did not get
 * an answer with the same Idempotency-Key (and the same event ids), and readers that reconnect with
 * their cursor whenever their connection ends, recording everything in the History.
 */

/** An answer that says "try again": the proxy found no node (502, 504) or the node could not (503). */
function retriable(status: number): boolean {
  return status === 502 || status === 503 || status === 504
}

export interface PublishStats {
  /** Requests acknowledged (201, or 200 for a repeat). */
  acknowledged: number
  /** Of those, repeats: a try that got no answer (or a 5xx) had committed after all. */
  repeats: number
  /** Tries that got a 502/503/504 or no answer, and were sent again. */
  retries: number
}

export class Publisher {
  readonly stats: PublishStats = { acknowledged: 0, repeats: 0, retries: 0 }
  private readonly history: History
  private readonly name: string
  private n = 0

  constructor(history: History, name: string) {
    this.history = history
    this.name = name
  }

  /**
   * Publishes `count` events (a batch when count > 1) to `topic` at `url`, until acknowledged: each
   * event has an id of the publisher's own and the request an Idempotency-Key, both kept on retries.
   */
  async publish(url: string | (() => string), topic: string, count = 1): Promise<EventRef[]> {
    const key = `${this.name}-${this.n++}`
    const events = Array.from({ length: count }, (_, i) => ({
      type: 'load',
      id: `${key}.${i}`,
      data: { key },
    }))
    const body = JSON.stringify(count === 1 ? events[0] : events)
    for (let attempt = 0; ; attempt++) {
      if (attempt > 200) throw new Error(`publish ${key}: still not acknowledged after 200 tries`)
      const base = typeof url === 'string' ? url : url()
      let response: Response
      try {
        response = await fetch(`${base}/v1/topics/${topic}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body,
          signal: AbortSignal.timeout(15_000),
        })
      } catch {
        this.stats.retries++
        await sleep(100)
        continue
      }
      if (retriable(response.status)) {
        await response.body?.cancel()
        this.stats.retries++
        await sleep(100)
        continue
      }
      if (response.status !== 201 && response.status !== 200) {
        throw new Error(`publish ${key}: ${response.status} ${await response.text()}`)
      }
      const stored = (await response.json()) as EventRef | EventRef[]
      const list = (Array.isArray(stored) ? stored : [stored]).map((event) => ({
        topic: event.topic,
        seq: event.seq,
        id: event.id,
      }))
      this.history.acknowledge(list)
      this.stats.acknowledged++
      if (response.status === 200) this.stats.repeats++
      return list
    }
  }
}

/**
 * Runs `workers` publishers until `stop()`, each publishing to the topics in turn (every fifth
 * request a batch of 3), through `url`.
 */
export function publishLoad(
  history: History,
  url: string | (() => string),
  topics: string[],
  options: { workers?: number; prefix?: string; pauseMs?: number } = {},
) {
  const { workers = 4, prefix = 'p', pauseMs = 0 } = options
  let stopped = false
  let failure: unknown
  const publishers = Array.from(
    { length: workers },
    (_, worker) => new Publisher(history, `${prefix}${worker}`),
  )
  const done = Promise.all(
    publishers.map(async (publisher, worker) => {
      try {
        for (let i = 0; !stopped; i++) {
          await publisher.publish(url, topics[(worker + i) % topics.length]!, i % 5 === 4 ? 3 : 1)
          if (pauseMs > 0) await sleep(pauseMs)
        }
      } catch (error) {
        failure ??= error
        stopped = true
      }
    }),
  )
  return {
    /** Acknowledged requests so far (throws what a publisher failed with). */
    acknowledged(): number {
      if (failure !== undefined) throw failure
      return publishers.reduce((sum, publisher) => sum + publisher.stats.acknowledged, 0)
    },
    stats(): PublishStats {
      const total = { acknowledged: 0, repeats: 0, retries: 0 }
      for (const { stats } of publishers) {
        total.acknowledged += stats.acknowledged
        total.repeats += stats.repeats
        total.retries += stats.retries
      }
      return total
    },
    async stop(): Promise<PublishStats> {
      stopped = true
      await done
      if (failure !== undefined) throw failure
      return this.stats()
    },
  }
}

export type ReaderKind = 'sse' | 'ndjson' | 'ws' | 'poll'

export interface FollowerOptions {
  kind: ReaderKind
  /** Where each connection goes, in turn (a node, or the proxy). */
  urls: string[]
  /** Close and reconnect (to the next URL) after this many events on one connection. */
  hopEvery?: number
}

/** Followers not stopped yet: a test that failed half-way leaves them to stopFollowers(). */
const running = new Set<Follower>()

/** Stops every follower still running (a test's after hook: a failure must not leave them reconnecting). */
export async function stopFollowers(): Promise<void> {
  await Promise.all([...running].map((follower) => follower.stop()))
}

/**
 * A reader that follows its client's topics for as long as it runs: SSE (one topic, or several on
 * /v1/stream with the multi-topic token), NDJSON (one topic, `after`), WebSocket (a subscribe with
 * `after` per topic) or long polls (one topic, `wait`). Whenever a connection ends (the node drains
 * or dies, the proxy drops it, or it hops), it connects again with the client's cursor, to the next
 * URL. Every connection is recorded on the client.
 */
export class Follower {
  readonly client: ClientHistory
  readonly options: FollowerOptions
  /** Connections that failed or were refused before any event (counted, then retried). */
  failures = 0
  /** The last failure's reason. */
  lastFailure = ''
  private stopped = false
  private turn = 0
  private abort: AbortController | undefined
  private socket: WebSocket | undefined
  private readonly done: Promise<void>
  /** The multi-topic token the server last sent (SSE ids on /v1/stream). */
  private token: string | undefined

  constructor(client: ClientHistory, options: FollowerOptions) {
    this.client = client
    this.options = options
    if (options.kind !== 'sse' && options.kind !== 'ws' && client.topics.length > 1) {
      throw new Error(`${options.kind} follows one topic`)
    }
    running.add(this)
    this.done = this.run()
  }

  /** Whether the client reached `heads` (topic → seq) on every topic. */
  reached(heads: (topic: string) => number): boolean {
    return this.client.topics.every((topic) => this.client.cursor(topic) >= heads(topic))
  }

  async stop(): Promise<void> {
    this.stopped = true
    running.delete(this)
    this.abort?.abort()
    this.socket?.terminate()
    await this.done
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const url = this.options.urls[this.turn++ % this.options.urls.length]!
      this.client.connected(url)
      try {
        if (this.options.kind === 'ws') await this.websocket(url)
        else if (this.options.kind === 'poll') await this.poll(url)
        else await this.stream(url)
      } catch (error) {
        if (this.stopped) return
        this.failures++
        this.lastFailure = (error as Error).message
        await sleep(100)
      }
    }
  }

  private receive(event: EventRef, onThisConnection: number): boolean {
    this.client.receive(event)
    const hop = this.options.hopEvery
    return hop !== undefined && onThisConnection >= hop
  }

  /** SSE or NDJSON until the server ends it, it fails, or it is time to hop. */
  private async stream(url: string): Promise<void> {
    const topics = this.client.topics
    const sse = this.options.kind === 'sse'
    const headers: Record<string, string> = { accept: sse ? 'text/event-stream' : 'application/x-ndjson' }
    let target: string
    if (topics.length === 1) {
      const topic = topics[0]!
      if (sse) headers['last-event-id'] = String(this.client.cursor(topic))
      target = `${url}/v1/topics/${topic}/events${sse ? '' : `?after=${this.client.cursor(topic)}`}`
    } else {
      headers['last-event-id'] = this.token ?? encodeCursor(this.client.cursors())
      target = `${url}/v1/stream?${topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')}`
    }
    this.abort = new AbortController()
    const response = await fetch(target, { headers, signal: this.abort.signal })
    if (response.status !== 200) {
      await response.body?.cancel()
      throw new Error(`${target}: ${response.status}`)
    }
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let buffer = ''
    let count = 0
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return
        buffer += decoder.decode(value, { stream: true })
        const separator = sse ? '\n\n' : '\n'
        let end = buffer.indexOf(separator)
        while (end !== -1) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + separator.length)
          end = buffer.indexOf(separator)
          const event = sse
            ? this.sseFrame(frame)
            : frame === ''
              ? undefined
              : (JSON.parse(frame) as EventRef)
          if (event === undefined) continue
          if (this.receive(event, ++count)) {
            this.abort.abort()
            return
          }
        }
      }
    } catch (error) {
      if (this.abort.signal.aborted) return
      throw error
    } finally {
      void reader.cancel().catch(() => {})
    }
  }

  private sseFrame(frame: string): EventRef | undefined {
    let data: string | undefined
    let id: string | undefined
    for (const line of frame.split('\n')) {
      if (line.startsWith('data: ')) data = line.slice(6)
      else if (line.startsWith('id: ')) id = line.slice(4)
    }
    if (data === undefined) return undefined
    if (this.client.topics.length > 1 && id !== undefined) this.token = id
    return JSON.parse(data) as EventRef
  }

  /** A WebSocket subscribed to every topic from the client's cursors, until it closes or hops. */
  private async websocket(url: string): Promise<void> {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`, ['herald.v1'])
    this.socket = ws
    await new Promise<void>((resolve, reject) => {
      let count = 0
      let opened = false
      ws.on('open', () => {
        opened = true
        for (const topic of this.client.topics) {
          ws.send(JSON.stringify({ op: 'subscribe', topic, after: this.client.cursor(topic), ref: topic }))
        }
      })
      ws.on('message', (data) => {
        const message = JSON.parse(data.toString()) as { op: string; event?: EventRef }
        if (message.op === 'error') {
          reject(new Error(`ws error: ${data.toString()}`))
          ws.terminate()
        } else if (message.op === 'event' && message.event !== undefined) {
          if (this.receive(message.event, ++count)) ws.terminate()
        }
      })
      ws.on('error', (error) => {
        if (!opened) reject(error)
      })
      ws.on('close', () => resolve())
    })
  }

  /** Long polls (wait=10) from the cursor, one after the other, hopping as asked. */
  private async poll(url: string): Promise<void> {
    const topic = this.client.topics[0]!
    let count = 0
    while (!this.stopped) {
      this.abort = new AbortController()
      let response: Response
      try {
        response = await fetch(
          `${url}/v1/topics/${topic}/events?after=${this.client.cursor(topic)}&wait=10`,
          {
            signal: this.abort.signal,
          },
        )
      } catch (error) {
        if (this.abort.signal.aborted) return
        throw error
      }
      if (response.status !== 200) {
        await response.body?.cancel()
        throw new Error(`long poll: ${response.status}`)
      }
      const page = (await response.json()) as { events: EventRef[] }
      let hop = false
      for (const event of page.events) hop = this.receive(event, ++count) || hop
      if (hop) return
    }
  }
}

/** Waits until every follower reached the acknowledged heads of its topics (or throws, saying who not). */
export async function caughtUp(
  history: History,
  followers: Follower[],
  timeoutMs = 20_000,
  pollMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const behind = followers.filter((follower) => !follower.reached((topic) => history.head(topic)))
    if (behind.length === 0) return
    if (Date.now() > deadline) {
      throw new Error(
        `not caught up after ${timeoutMs} ms: ${behind
          .map(
            (follower) =>
              `${follower.client.name} at ${[...follower.client.cursors()].map(([t, s]) => `${t}:${s}/${history.head(t)}`).join(',')} (${follower.failures} failed connections, last: ${follower.lastFailure})`,
          )
          .join('; ')}`,
      )
    }
    await sleep(pollMs)
  }
}
