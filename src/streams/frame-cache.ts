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
