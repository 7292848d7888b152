import type { StoredEvent } from '../../src/core/event.ts'
import type { TopicInfo } from '../../src/store/store.ts'

/**
 * The reads of an EventStore for one topic 't', in memory: for the Feed and read-ahead tests that
 * must make a read fail, or retention run, between two reads at a chosen moment (which a real store
 * does not let a test time). The rest of the suite runs on real stores.
 */
export class MemoryStore {
  events: StoredEvent[] = []
  /** The `afterSeq` of every read, in order. */
  reads: number[] = []
  /** The next read throws. */
  failNext = false
  /** Called before each read: where a test prunes "concurrently". */
  beforeRead: (afterSeq: number) => void = () => {}

  constructor(count = 0) {
    this.append(count)
  }

  append(count: number): number {
    const head = this.head()
    for (let seq = head + 1; seq <= head + count; seq++) {
      this.events.push({ topic: 't', seq, json: `{"type":"tick","seq":${seq}}` })
    }
    return this.head()
  }
  head(): number {
    return this.events.at(-1)?.seq ?? 0
  }
  pruneTo(first: number): void {
    this.events = this.events.filter((event) => event.seq >= first)
  }
  async read(_topic: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
    this.reads.push(afterSeq)
    this.beforeRead(afterSeq)
    if (this.failNext) {
      this.failNext = false
      throw new Error('read failed')
    }
    return this.events.filter((event) => event.seq > afterSeq).slice(0, limit)
  }
  async heads(): Promise<Map<string, number>> {
    return new Map([['t', this.head()]])
  }
  async topic(): Promise<TopicInfo> {
    return {
      topic: 't',
      head_seq: this.head(),
      first_seq: this.events[0]?.seq ?? this.head() + 1,
      events: this.events.length,
      created_at: '',
      retention: { max_age_ms: null, max_events: null },
      types: 'any',
    }
  }
}
