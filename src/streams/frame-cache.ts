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
 * socket in one write. Each frame is `head(event)` (ASCII), the event's JSON, then `tail`.
 */
export class BatchFrameCache {
  private readonly batches = new WeakMap<readonly StoredEvent[], Buffer>()
  private readonly head: (event: StoredEvent) => string
  private readonly tail: string
  /** Whether every head is ASCII (its length is its size in bytes: no UTF-8 to measure or encode). */
  private readonly asciiHead: boolean

  constructor(head: (event: StoredEvent) => string, tail: string, asciiHead = false) {
    this.head = head
    this.tail = tail
    this.asciiHead = asciiHead
  }

  get(events: readonly StoredEvent[]): Buffer {
    let frames = this.batches.get(events)
    if (frames === undefined) {
      frames = this.build(events)
      this.batches.set(events, frames)
    }
    return frames
  }

  /** One allocation for the batch, each piece encoded into it in place: no string or Buffer per event. */
  private build(events: readonly StoredEvent[]): Buffer {
    const heads: string[] = new Array(events.length)
    const headEncoding = this.asciiHead ? 'latin1' : 'utf8'
    let size = 0
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      const head = this.head(event)
      heads[i] = head
      size +=
        (this.asciiHead ? head.length : Buffer.byteLength(head)) +
        Buffer.byteLength(event.json) +
        this.tail.length
    }
    const frames = Buffer.allocUnsafe(size)
    // The tail's bytes set one by one: a write call costs more than the byte or two it writes.
    const tail = Buffer.from(this.tail, 'latin1')
    let at = 0
    for (let i = 0; i < events.length; i++) {
      if (heads[i]!.length > 0) at += frames.write(heads[i]!, at, headEncoding)
      at += frames.write(events[i]!.json, at, 'utf8')
      for (let k = 0; k < tail.length; k++) frames[at++] = tail[k]!
    }
    return frames
  }
}
