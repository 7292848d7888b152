import assert from 'node:assert/strict'

/**
 * What a cluster test saw, checked against the store at the end (in the manner of Jepsen's
 * histories, much simplified): every acknowledged publish, every event each client received, every
 * delivery each hook target received. `check()` asserts:
 *
 * - every acknowledged event is in the store at its seq, and exactly once (its id appears once);
 * - each topic's seqs run 1, 2, 3… with no gap;
 * - every client saw, per topic, a contiguous run from the cursor it started from: no gap, no
 *   duplicate, each event the one the store has at that seq; with `complete`, up to the head;
 * - every hook target received each event of its topics; an ordered one received them in seq order,
 *   where the only thing allowed out of order is a resend of what it already had (after a lost
 *   lease); resends are counted, and are a failure unless the test allows them.
 */

export interface EventRef {
  topic: string
  seq: number
  id: string
}

/** One client: a reader of one or more topics, over any number of connections. */
export class ClientHistory {
  readonly name: string
  /** Where it started, per topic. */
  readonly from: ReadonlyMap<string, number>
  readonly received = new Map<string, EventRef[]>()
  /** Its connections, each with the node or route it went to (for the report). */
  readonly connections: string[] = []

  constructor(name: string, from: Map<string, number>) {
    this.name = name
    this.from = from
    for (const topic of from.keys()) this.received.set(topic, [])
  }

  get topics(): string[] {
    return [...this.from.keys()]
  }

  /** The seq to resume the topic after: the last received, or where the client started. */
  cursor(topic: string): number {
    return this.received.get(topic)?.at(-1)?.seq ?? this.from.get(topic) ?? 0
  }

  /** The cursors of every topic. */
  cursors(): Map<string, number> {
    return new Map(this.topics.map((topic) => [topic, this.cursor(topic)]))
  }

  /** A new connection (the first, or a reconnection), to `where`. */
  connected(where: string): void {
    this.connections.push(where)
  }

  receive(event: EventRef): void {
    const list = this.received.get(event.topic)
    if (list === undefined) throw new Error(`${this.name} received an event of ${event.topic}, not its topic`)
    list.push({ topic: event.topic, seq: event.seq, id: event.id })
  }

  count(): number {
    let count = 0
    for (const list of this.received.values()) count += list.length
    return count
  }
}

/** One hook target: what it received, in arrival order. */
export class HookHistory {
  readonly name: string
  readonly ordered: boolean
  /** The topics it gets every event of. */
  readonly topics: string[]
  readonly received: EventRef[] = []
  /** When each arrived (Date.now()), beside `received`. */
  readonly arrivals: number[] = []

  constructor(name: string, topics: string[], ordered: boolean) {
    this.name = name
    this.topics = topics
    this.ordered = ordered
  }

  receive(event: EventRef, at = Date.now()): void {
    this.received.push({ topic: event.topic, seq: event.seq, id: event.id })
    this.arrivals.push(at)
  }

  /**
   * The longest wait, from `since`, between one arrival of `topic` and the next, up to the last: how
   * long its queue stood still while it had more to send (a queue waiting out a lease shows here).
   */
  longestPause(topic: string, since: number): number {
    let longest = 0
    let previous = since
    this.received.forEach((event, index) => {
      const at = this.arrivals[index]!
      if (event.topic !== topic || at < since) return
      longest = Math.max(longest, at - previous)
      previous = at
    })
    return longest
  }

  /** How many distinct events of `topic` arrived so far. */
  distinct(topic: string): number {
    return new Set(this.received.filter((event) => event.topic === topic).map((event) => event.seq)).size
  }
}

export interface HookReport {
  name: string
  received: number
  /** Deliveries that arrived again (the same event). */
  duplicates: number
  /** Times an ordered target was taken back to an earlier seq (a run sent again). */
  restarts: number
}

export interface HistoryReport {
  topics: number
  acknowledged: number
  /** Stored events no publish was acknowledged for (a publisher that gave up after a 502, say). */
  unacknowledged: number
  clients: number
  received: number
  reconnections: number
  hooks: HookReport[]
  problems: string[]
}

export interface CheckOptions {
  /** Every event of a topic, as the store has it (read back through any node). */
  read(topic: string): Promise<EventRef[]>
  /** Clients must have reached the head of each of their topics (they were waited for). */
  complete?: boolean
  /** Hooks allowed to receive resends (a lease was lost: a node killed or paused mid-run). */
  resendsAllowed?: string[]
  /** Stored events that no publish acknowledged are a failure (every publisher retried to the end). */
  strictStore?: boolean
}

export class History {
  /** topic → seq → id, from the publish answers. */
  private readonly acknowledged = new Map<string, Map<number, string>>()
  private readonly clientsByName = new Map<string, ClientHistory>()
  private readonly hooksByName = new Map<string, HookHistory>()
  /** Problems seen as they happened (two acknowledgements of one seq). */
  private readonly early: string[] = []

  /** A publish answered 201 or 200: each of its events (every one of a batch). */
  acknowledge(events: EventRef | EventRef[]): void {
    for (const event of Array.isArray(events) ? events : [events]) {
      let topic = this.acknowledged.get(event.topic)
      if (topic === undefined) {
        topic = new Map()
        this.acknowledged.set(event.topic, topic)
      }
      const known = topic.get(event.seq)
      if (known !== undefined && known !== event.id) {
        this.early.push(`${event.topic} seq ${event.seq} acknowledged as ${known} and as ${event.id}`)
      }
      topic.set(event.seq, event.id)
    }
  }

  /** The acknowledged events of a topic, by seq. */
  acknowledgedOf(topic: string): Map<number, string> {
    return this.acknowledged.get(topic) ?? new Map()
  }

  /** The highest acknowledged seq of a topic (0 when none). */
  head(topic: string): number {
    let head = 0
    for (const seq of this.acknowledgedOf(topic).keys()) if (seq > head) head = seq
    return head
  }

  get acknowledgedCount(): number {
    let count = 0
    for (const topic of this.acknowledged.values()) count += topic.size
    return count
  }

  /** A new client reading `from` (topic → the seq it starts after). */
  client(name: string, from: Record<string, number> | Map<string, number>): ClientHistory {
    if (this.clientsByName.has(name)) throw new Error(`client ${name} twice`)
    const client = new ClientHistory(
      name,
      from instanceof Map ? new Map(from) : new Map(Object.entries(from)),
    )
    this.clientsByName.set(name, client)
    return client
  }

  /** A hook target that gets every event of `topics`. */
  hook(name: string, topics: string[], options: { ordered: boolean }): HookHistory {
    if (this.hooksByName.has(name)) throw new Error(`hook ${name} twice`)
    const hook = new HookHistory(name, topics, options.ordered)
    this.hooksByName.set(name, hook)
    return hook
  }

  get clients(): ClientHistory[] {
    return [...this.clientsByName.values()]
  }

  /** Reads the store back and checks everything; throws listing the problems, else the report. */
  async check(options: CheckOptions): Promise<HistoryReport> {
    const report = await this.evaluate(options)
    if (report.problems.length > 0) {
      const shown = report.problems.slice(0, 25)
      const more = report.problems.length - shown.length
      assert.fail(
        `history check: ${report.problems.length} problems\n  ${shown.join('\n  ')}${more > 0 ? `\n  … and ${more} more` : ''}`,
      )
    }
    return report
  }

  /** The same as check(), without throwing: the report with its problems. */
  async evaluate(options: CheckOptions): Promise<HistoryReport> {
    const problems = [...this.early]
    const topics = new Set<string>(this.acknowledged.keys())
    for (const client of this.clientsByName.values()) for (const topic of client.topics) topics.add(topic)
    for (const hook of this.hooksByName.values()) for (const topic of hook.topics) topics.add(topic)

    // The store: contiguous seqs, each acknowledged event there once.
    const stored = new Map<string, Map<number, string>>()
    let unacknowledged = 0
    for (const topic of topics) {
      const events = await options.read(topic)
      const bySeq = new Map<number, string>()
      const idCount = new Map<string, number>()
      let contiguous = true
      events.forEach((event, index) => {
        if (contiguous && event.seq !== index + 1) {
          contiguous = false
          problems.push(`store ${topic}: seq ${event.seq} at position ${index + 1} (a gap or a repeat)`)
        }
        bySeq.set(event.seq, event.id)
        idCount.set(event.id, (idCount.get(event.id) ?? 0) + 1)
      })
      for (const [id, count] of idCount) {
        if (count > 1) problems.push(`store ${topic}: event ${id} stored ${count} times`)
      }
      for (const [seq, id] of this.acknowledgedOf(topic)) {
        const there = bySeq.get(seq)
        if (there === undefined) problems.push(`store ${topic}: acknowledged seq ${seq} (${id}) is missing`)
        else if (there !== id) problems.push(`store ${topic}: seq ${seq} is ${there}, acknowledged as ${id}`)
      }
      for (const seq of bySeq.keys()) if (!this.acknowledgedOf(topic).has(seq)) unacknowledged++
      stored.set(topic, bySeq)
    }
    if (options.strictStore && unacknowledged > 0) {
      problems.push(`${unacknowledged} stored events were never acknowledged to their publisher`)
    }

    // Clients: from their cursor, contiguous, each event the stored one, up to the head if complete.
    let received = 0
    let reconnections = 0
    for (const client of this.clientsByName.values()) {
      received += client.count()
      reconnections += Math.max(0, client.connections.length - 1)
      for (const topic of client.topics) {
        const events = client.received.get(topic)!
        const bySeq = stored.get(topic)!
        let expected = client.from.get(topic)! + 1
        for (const event of events) {
          if (event.seq !== expected) {
            problems.push(
              `client ${client.name} on ${topic}: got seq ${event.seq} where ${expected} was due (${event.seq < expected ? 'a duplicate or a step back' : 'a gap'}; connections: ${client.connections.join(', ')})`,
            )
            break
          }
          if (bySeq.get(event.seq) !== event.id) {
            problems.push(
              `client ${client.name} on ${topic}: seq ${event.seq} was ${event.id}, the store has ${bySeq.get(event.seq)}`,
            )
            break
          }
          expected++
        }
        const head = bySeq.size
        if (options.complete && client.cursor(topic) < head) {
          problems.push(`client ${client.name} on ${topic}: reached ${client.cursor(topic)} of ${head}`)
        }
      }
    }

    // Hook targets: every event, ordered ones in order; resends counted.
    const hooks: HookReport[] = []
    for (const hook of this.hooksByName.values()) {
      let duplicates = 0
      let restarts = 0
      for (const topic of hook.topics) {
        const bySeq = stored.get(topic)!
        let highest = 0
        let last = 0
        const seen = new Set<number>()
        for (const event of hook.received) {
          if (event.topic !== topic) continue
          if (bySeq.get(event.seq) !== event.id) {
            problems.push(
              `hook ${hook.name} on ${topic}: seq ${event.seq} was ${event.id}, stored ${bySeq.get(event.seq)}`,
            )
          }
          if (seen.has(event.seq)) duplicates++
          seen.add(event.seq)
          if (hook.ordered) {
            if (event.seq > highest + 1) {
              problems.push(
                `hook ${hook.name} on ${topic}: seq ${event.seq} arrived before ${highest + 1} (out of order)`,
              )
            }
            if (event.seq !== last + 1 && event.seq <= highest) restarts++
          }
          highest = Math.max(highest, event.seq)
          last = event.seq
        }
        const missing = [...bySeq.keys()].filter((seq) => !seen.has(seq))
        if (missing.length > 0) {
          problems.push(
            `hook ${hook.name} on ${topic}: ${missing.length} events never delivered (first: seq ${missing[0]})`,
          )
        }
      }
      if (duplicates > 0 && !(options.resendsAllowed ?? []).includes(hook.name)) {
        problems.push(`hook ${hook.name}: ${duplicates} deliveries received twice, and no lease was lost`)
      }
      hooks.push({ name: hook.name, received: hook.received.length, duplicates, restarts })
    }

    return {
      topics: topics.size,
      acknowledged: this.acknowledgedCount,
      unacknowledged,
      clients: this.clientsByName.size,
      received,
      reconnections,
      hooks,
      problems,
    }
  }
}

/** One line for the test's stderr: what was checked. */
export function describeReport(test: string, report: HistoryReport): string {
  const hooks = report.hooks
    .map(
      (hook) =>
        `${hook.name}: ${hook.received} received, ${hook.duplicates} resent, ${hook.restarts} runs resent`,
    )
    .join('; ')
  return `${test}: ${report.acknowledged} acknowledged events on ${report.topics} topics (${report.unacknowledged} stored unacknowledged); ${report.clients} clients received ${report.received} events over ${report.reconnections} reconnections${hooks === '' ? '' : `; hooks: ${hooks}`}\n`
}
