import type { Bus, HeadListener } from './bus.ts'

/** The single-process Bus: listeners indexed by topic, so a publish touches only its own topic's. */
export class LocalBus implements Bus {
  readonly kind: Bus['kind'] = 'local'
  protected readonly listeners = new Map<string, Set<HeadListener>>()

  /** One process: every publish reaches its listeners at once. */
  ready(): Promise<void> {
    return Promise.resolve()
  }

  publish(topic: string, head: number): void {
    const set = this.listeners.get(topic)
    if (!set) return
    for (const listener of [...set]) listener(head)
  }

  subscribe(topic: string, listener: HeadListener): () => void {
    let set = this.listeners.get(topic)
    if (!set) {
      set = new Set()
      this.listeners.set(topic, set)
    }
    set.add(listener)
    return () => {
      const current = this.listeners.get(topic)
      if (!current) return
      current.delete(listener)
      if (current.size === 0) this.listeners.delete(topic)
    }
  }

  /** How many listeners are registered (for tests and metrics). */
  get size(): number {
    let count = 0
    for (const set of this.listeners.values()) count += set.size
    return count
  }

  async close(): Promise<void> {
    this.listeners.clear()
  }
}
