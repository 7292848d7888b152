import { once } from 'node:events'
import { WebSocket } from 'ws'
import type { StoredEventJson } from '../helpers.ts'

/** A raw streaming reader over fetch: keeps every chunk of text, and the parsed frames. */
export class StreamReader {
  text = ''
  readonly response: Response
  private readonly controller: AbortController
  private readonly done: Promise<void>
  private waiters: Array<() => void> = []
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>

  private constructor(response: Response, controller: AbortController) {
    this.response = response
    this.controller = controller
    const reader = response.body!.getReader()
    this.reader = reader
    const decoder = new TextDecoder()
    this.done = (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read()
          if (done) break
          this.text += decoder.decode(value, { stream: true })
          for (const wake of this.waiters.splice(0)) wake()
        }
      } catch {
        // aborted by close()
      } finally {
        for (const wake of this.waiters.splice(0)) wake()
      }
    })()
  }

  static async open(url: string, headers: Record<string, string>): Promise<StreamReader> {
    const controller = new AbortController()
    const response = await fetch(url, { headers, signal: controller.signal })
    return new StreamReader(response, controller)
  }

  /** SSE frames received so far, as {id, event, data} objects (comments and retry lines skipped). */
  sseEvents(): Array<{ id?: string; event?: string; data: StoredEventJson }> {
    const frames = this.text.split('\n\n').slice(0, -1)
    const events = []
    for (const frame of frames) {
      const fields: Record<string, string> = {}
      for (const line of frame.split('\n')) {
        if (line.startsWith(':') || line === '') continue
        const colon = line.indexOf(':')
        fields[line.slice(0, colon)] = line.slice(colon + 2)
      }
      if (fields['data'] !== undefined) {
        events.push({
          id: fields['id'],
          event: fields['event'],
          data: JSON.parse(fields['data']) as StoredEventJson,
        })
      }
    }
    return events
  }

  /** NDJSON events received so far (empty keep-alive lines skipped). */
  ndjsonEvents(): StoredEventJson[] {
    return this.text
      .split('\n')
      .slice(0, -1)
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as StoredEventJson)
  }

  /** Waits until `check` holds for what was received, or the stream ends, or `ms` pass. */
  async until(check: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out; received so far:\n${this.text.slice(-2000)}`)
      const ended = await Promise.race([
        new Promise<boolean>((resolve) => this.waiters.push(() => resolve(false))),
        this.done.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 50)),
      ])
      if (ended && !check()) throw new Error(`stream ended; received:\n${this.text.slice(-2000)}`)
    }
  }

  /** Resolves when the server ends the stream. */
  ended(): Promise<void> {
    return this.done
  }

  close(): void {
    this.controller.abort()
    void this.reader.cancel().catch(() => undefined)
  }
}

/** A `ws` client that records every JSON message. */
export class WsClient {
  readonly ws: WebSocket
  readonly messages: Array<Record<string, unknown>> = []

  private constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data) => this.messages.push(JSON.parse(data.toString())))
  }

  static async open(url: string, protocols?: string[]): Promise<WsClient> {
    const ws = new WebSocket(url, protocols)
    const client = new WsClient(ws)
    await once(ws, 'open')
    return client
  }

  send(message: unknown): void {
    this.ws.send(JSON.stringify(message))
  }

  events(topic?: string): StoredEventJson[] {
    return this.messages
      .filter((m) => m['op'] === 'event' && (topic === undefined || m['topic'] === topic))
      .map((m) => m['event'] as StoredEventJson)
  }

  async until(check: () => boolean, ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline)
        throw new Error(`timed out; messages: ${JSON.stringify(this.messages.slice(-10))}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  /** The first message with this ref (waits for it). */
  async reply(ref: string | number): Promise<Record<string, unknown>> {
    await this.until(() => this.messages.some((m) => m['ref'] === ref))
    return this.messages.find((m) => m['ref'] === ref)!
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    this.ws.close()
    await once(this.ws, 'close')
  }
}

export function seqs(events: Array<{ seq: number }>): number[] {
  return events.map((event) => event.seq)
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}
