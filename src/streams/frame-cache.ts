import type { StoredEvent } from '../core/event.ts'

/**
 * A frame per event and format, built by the first subscriber that needs it and shared by all the
 * others: an event is serialized once per format, never once per connection. Keyed weakly, so a frame
 * lives as long as the event object the topic's Feed handed out.
 */
export class FrameCache<Frame> {
  private readonly frames = new WeakMap<StoredEvent, Frame>()
  private readonly build: (event: StoredEvent) => Frame

  constructor(build: (event: StoredEvent) => Frame) {
    this.build = build
  }

  get(event: StoredEvent): Frame {
    let frame = this.frames.get(event)
    if (frame === undefined) {
      frame = this.build(event)
      this.frames.set(event, frame)
    }
    return frame
  }
}

/**
 * The frames of a whole batch of events as one Buffer, for a stream that sends every event of it: built
 * once per batch (the live Feed hands the same array to every caught-up subscriber) and written to the
 * socket in one write. Each frame is its head, the event's JSON, then `tail`; the head is either
 * `before` + the event's seq + `after` (ASCII, set byte by byte) or, with `head`, that function's text.
 */
export class BatchFrameCache {
  private readonly batches = new WeakMap<readonly StoredEvent[], Buffer>()
  private readonly before: Buffer
  private readonly after: Buffer
  private readonly head: ((event: StoredEvent) => string) | undefined
  private readonly tail: Buffer

  constructor(options: {
    before?: string
    after?: string
    head?: (event: StoredEvent) => string
    tail: string
  }) {
    this.before = Buffer.from(options.before ?? '', 'latin1')
    this.after = Buffer.from(options.after ?? '', 'latin1')
    this.head = options.head
    this.tail = Buffer.from(options.tail, 'latin1')
  }

  get(events: readonly StoredEvent[]): Buffer {
    let frames = this.batches.get(events)
    if (frames === undefined) {
      frames = this.build(events)
      this.batches.set(events, frames)
    }
    return frames
  }

  /**
   * One allocation for the batch, each piece encoded into it in place: no string or Buffer per event.
   * Short ASCII pieces are set byte by byte: a write call costs more than the few bytes it writes.
   */
  private build(events: readonly StoredEvent[]): Buffer {
    const { before, after, tail, head } = this
    const heads: string[] | undefined = head === undefined ? undefined : new Array(events.length)
    const fixed = before.length + after.length + tail.length
    let size = 0
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      size += fixed + Buffer.byteLength(event.json)
      if (heads !== undefined) {
        const text = head!(event)
        heads[i] = text
        size += Buffer.byteLength(text)
      } else if (before.length > 0) size += digits(event.seq)
    }
    const frames = Buffer.allocUnsafe(size)
    let at = 0
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      for (let k = 0; k < before.length; k++) frames[at++] = before[k]!
      if (heads !== undefined) at += frames.write(heads[i]!, at, 'utf8')
      else if (before.length > 0) {
        // The seq's decimal digits, last first.
        let seq = event.seq
        const end = at + digits(seq)
        for (let k = end - 1; k >= at; k--) {
          frames[k] = 48 + (seq % 10)
          seq = Math.floor(seq / 10)
        }
        at = end
      }
      for (let k = 0; k < after.length; k++) frames[at++] = after[k]!
      at += frames.write(event.json, at, 'utf8')
      for (let k = 0; k < tail.length; k++) frames[at++] = tail[k]!
    }
    return frames
  }
}

/** How many decimal digits a non-negative integer has. */
function digits(value: number): number {
  let count = 1
  for (let limit = 10; value >= limit; limit *= 10) count++
  return count
}
