/**
 * The Bus tells every Herald process that a topic's head moved. It carries positions only: a listener
 * that learns "topic T is at seq N" reads what it lacks from the Store, so a missed or merged message
 * costs a little latency, never an event. Backends: in-process (local.ts); Redis and NATS come for
 * clusters.
 */
export interface Bus {
  /** Announces that `topic` now has events up to `head`. */
  publish(topic: string, head: number): void
  /** Calls `listener` with each new head of `topic`; returns the function that stops it. */
  subscribe(topic: string, listener: HeadListener): () => void
  close(): Promise<void>
}

export type HeadListener = (head: number) => void
