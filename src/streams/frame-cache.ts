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
   * Short ASCII pieces are set byte by byte: a write call costs more than the few bytes it writes. Sized
   * first as if every event's JSON were ASCII (see writeAsciiJson), which spares a Buffer.byteLength
   * per event; a batch with other characters is sized exactly and built again.
   */
  private build(events: readonly StoredEvent[]): Buffer {
    const heads: string[] | undefined = this.head === undefined ? undefined : events.map(this.head)
    return this.encode(events, heads, false) ?? (this.encode(events, heads, true) as Buffer)
  }

  /** The batch's frames, or undefined when sized as ASCII (`exact` false) and some JSON is not. */
  private encode(
    events: readonly StoredEvent[],
    heads: string[] | undefined,
    exact: boolean,
  ): Buffer | undefined {
    const { before, after, tail } = this
    const fixed = before.length + after.length + tail.length
    let size = 0
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      size += fixed + (exact ? Buffer.byteLength(event.json) : event.json.length)
      if (heads !== undefined) size += Buffer.byteLength(heads[i]!)
      else if (before.length > 0) size += digits(event.seq)
    }
    const frames = Buffer.allocUnsafe(exact ? size : size + ASCII_SLACK)
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
      if (exact) at += frames.write(event.json, at, 'utf8')
      else {
        at = writeAsciiJson(frames, event.json, at)
        if (at === -1) return undefined
      }
      for (let k = 0; k < tail.length; k++) frames[at++] = tail[k]!
    }
    return exact ? frames : frames.subarray(0, size)
  }
}

/** The bytes a buffer sized for ASCII JSON has to spare at its end: see writeAsciiJson. */
export const ASCII_SLACK = 4

/**
 * Writes `json` as UTF-8 at `at` in a buffer sized as if it and all the JSON after it were ASCII (a
 * byte per UTF-16 code unit) plus ASCII_SLACK bytes. Returns where it ends, or -1 if it is not ASCII
 * (the buffer is then too small, and may hold part of it: size it exactly and start again).
 *
 * Why the check is sound: ASCII text is as many bytes as code units, any other character more (2 to 4
 * bytes for 1 or 2 units, a lone surrogate 3), so a whole write of other text is longer than `json`.
 * A write cut short by the end of the buffer stops before a character that does not fit (at most 4
 * bytes), so at most 3 bytes are left, and at least `json.length` + ASCII_SLACK were: it too wrote more
 * than `json.length` bytes.
 */
export function writeAsciiJson(target: Buffer, json: string, at: number): number {
  const written = target.write(json, at, 'utf8')
  return written === json.length ? at + written : -1
}

/** How many decimal digits a non-negative integer has. */
function digits(value: number): number {
  let count = 1
  for (let limit = 10; value >= limit; limit *= 10) count++
  return count
}
