import { jsonBytes } from '../core/event.ts'
import type { Page } from './topic-log.ts'

/** How long a page read ahead is kept for the poll that asks for it: the most it can be out of date. */
const MAX_AGE_MS = 2000
/** Event JSON (string length) kept read ahead at most, all topics and readers together. */
const MAX_BYTES = 8 * 1024 * 1024

interface Ahead {
  page: Promise<Page | undefined>
  bytes: number
  timer: NodeJS.Timeout
}

/**
 * Short polls that page through a backlog are serial: the server reads a page and answers, the client
 * takes it and asks for the next, and neither works while the other does. After a full page without
 * a gap (its reader is behind the head), the page that follows is read ahead, once the answer is on
 * its way, so that the next poll finds it read: the server's read overlaps the client's work instead
 * of following it. It costs no more reads, unless the reader does not come back for the page.
 *
 * A page is taken by the first poll that asks for it, and dropped after MAX_AGE_MS. Stored events
 * never change and retention removes the oldest only, so a page read ahead is what a read returned at
 * most MAX_AGE_MS before the poll (as if the poll had been answered that much sooner). Within
 * MAX_BYTES of event JSON, estimated by the page just answered when the read starts, and counted when
 * it ends.
 */
export class ReadAhead {
  private readonly pages = new Map<string, Ahead>()
  private bytes = 0
  private readonly maxAgeMs: number
  private readonly maxBytes: number

  constructor(options: { maxAgeMs?: number; maxBytes?: number } = {}) {
    this.maxAgeMs = options.maxAgeMs ?? MAX_AGE_MS
    this.maxBytes = options.maxBytes ?? MAX_BYTES
  }

  /** The page of `limit` events after `after` if it was read ahead (undefined if its read failed). */
  take(topic: string, after: number, limit: number): Promise<Page | undefined> | undefined {
    const key = keyOf(topic, after, limit)
    const ahead = this.pages.get(key)
    if (ahead === undefined) return undefined
    this.drop(key, ahead)
    return ahead.page
  }

  /**
   * Reads the page of `limit` events after `after` with `read`, in a later turn of the event loop
   * (after the answer that asked for it is written); `estimate`: its bytes, as far as known.
   */
  schedule(topic: string, after: number, limit: number, estimate: number, read: () => Promise<Page>): void {
    const key = keyOf(topic, after, limit)
    if (this.pages.has(key) || this.bytes + estimate > this.maxBytes) return
    const ahead: Ahead = {
      page: new Promise<void>((resolve) => setImmediate(resolve)).then(read).then(
        (page) => {
          if (this.pages.get(key) !== ahead) return page // taken, or expired
          const bytes = jsonBytes(page.events)
          this.bytes += bytes - ahead.bytes
          ahead.bytes = bytes
          if (this.bytes > this.maxBytes) {
            this.drop(key, ahead)
            return undefined
          }
          return page
        },
        () => {
          if (this.pages.get(key) === ahead) this.drop(key, ahead)
          return undefined // the poll reads for itself, and meets the error if it lasts
        },
      ),
      bytes: estimate,
      timer: setTimeout(() => {
        if (this.pages.get(key) === ahead) this.drop(key, ahead)
      }, this.maxAgeMs).unref(),
    }
    this.pages.set(key, ahead)
    this.bytes += estimate
  }

  private drop(key: string, ahead: Ahead): void {
    this.pages.delete(key)
    this.bytes -= ahead.bytes
    clearTimeout(ahead.timer)
  }
}

function keyOf(topic: string, after: number, limit: number): string {
  return `${after} ${limit} ${topic}`
}
