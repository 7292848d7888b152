import { matchesEventType } from '../core/event-pattern.ts'
import { storedFilter } from '../core/filter.ts'

/**
 * Which deliveries newly stored events create: one per event and matching hook. Every store backend
 * finds the candidate hooks its own way (by index) and inserts what this returns.
 */

/** A hook that may match the events (by topic and the root of their type). */
export interface FanOutHook {
  id: string
  /** Event type pattern (`order.*`); null: every type. */
  event: string | null
  /** A CloudEvents Subscriptions API filter's canonical JSON text (src/core/filter.ts); null: none. */
  filter?: string | null
  ordered: boolean
  /** Whether the hook's queue for this topic already has a pending delivery (only asked of ordered hooks). */
  queueBusy: boolean
}

/** A stored event of the topic, in seq order. */
export interface FanOutEvent {
  seq: number
  id: string
  type: string
  /** The stored event's JSON: parsed only if a candidate hook has a filter, then once for all of them. */
  json: string
}

export interface NewDelivery {
  hookId: string
  seq: number
  eventId: string
  /** null: it waits behind an earlier pending delivery of its ordered queue. */
  dueAt: number | null
}

/**
 * The deliveries to create, due at `dueAt`. An ordered queue has at most one delivery due: the first
 * one created when the queue was idle; every later one waits (due_at null) until the queue advances.
 */
export function fanOut(
  hooks: Iterable<FanOutHook>,
  events: readonly FanOutEvent[],
  dueAt: number,
): NewDelivery[] {
  const created: NewDelivery[] = []
  for (const hook of hooks) {
    let queueBusy = hook.ordered && hook.queueBusy
    // Each event is one object for every hook: its JSON is parsed at most once, and hooks with equal
    // filters share one verdict (see the memo in src/core/filter.ts).
    const filter = hook.filter == null ? undefined : storedFilter(hook.filter)
    for (const event of events) {
      if (hook.event !== null && !matchesEventType(hook.event, event.type)) continue
      if (filter !== undefined && !filter.matches(event)) continue
      created.push({ hookId: hook.id, seq: event.seq, eventId: event.id, dueAt: queueBusy ? null : dueAt })
      if (hook.ordered) queueBusy = true
    }
  }
  return created
}
