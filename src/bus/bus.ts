/**
 * The Bus tells every Herald process that a topic's head moved. It carries positions only: a listener
 * that learns "topic T is at seq N" reads what it lacks from the Store, so a missed or merged message
 * costs a little latency, never an event. Backends: in-process (local.ts) for one node; Redis
 * (redis.ts) and NATS (nats.ts) under the cluster logic of cluster.ts for several.
 */
export interface Bus {
  /** Announces that `topic` now has events up to `head` (after the commit that stored them). */
  publish(topic: string, head: number): void
  /** Calls `listener` with each new head of `topic`; returns the function that stops it. */
  subscribe(topic: string, listener: HeadListener): () => void
  /**
   * Resolves once messages published by other nodes from now on reach this node's listeners (the
   * backend acknowledged its subscription): a reader's last catch-up read must come after it, or an
   * event committed on another node in between could wake no one.
   */
  ready(): Promise<void>
  /** `local`, `redis` or `nats`, as `GET /v1/cluster` names it. */
  readonly kind: 'local' | 'redis' | 'nats'
  close(): Promise<void>
}

export type HeadListener = (head: number) => void
