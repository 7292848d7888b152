/**
 * Herald's client: one connection for every subscription (WebSocket, else SSE over fetch, else long
 * polling), resumed from each topic's last seq after any disconnect (no loss, no duplicate), tokens
 * refreshed before they expire, gaps reported. No dependencies; browsers and Node 24.
 */
import { backoff, refreshDelay } from './backoff.ts'
import {
  type Connection,
  type EndReason,
  type Gap,
  type HeraldEvent,
  type Link,
  longPoll,
  type Member,
  type PresenceChange,
  serverSentEvents,
  type TransportKind,
  webSocket,
} from './transports.ts'

export type { Gap, HeraldEvent, Member, PresenceChange, TransportKind }
export type State = 'connecting' | 'connected' | 'disconnected'

export interface HeraldOptions {
  /** Herald's base URL, e.g. `https://herald.example.com`. */
  url: string
  /** A key or a JWT. */
  token?: string
  /** Called for a fresh token before the current one expires and when one is refused (401, close 4401). */
  getToken?: () => string | Promise<string>
  /** `auto` (default): WebSocket, falling back to SSE, then to long polling. */
  transport?: 'auto' | TransportKind
  /** The server's `HERALD_HEARTBEAT` in ms (default 15 000): twice as long without a sign is a dead connection. */
  heartbeat?: number
  /** How often to try the WebSocket again while on a fallback (ms, default 60 000). */
  probeInterval?: number
  /** Upper bound of the reconnect back-off (ms, default 30 000). */
  maxBackoff?: number
  WebSocket?: typeof WebSocket
  fetch?: typeof fetch
}

export interface SubscribeOptions {
  /** Start after this seq (0: from the first retained event). Default: the topic's head (new events only). */
  after?: number
  /** Retention removed events this subscription had not received (or its cursor was past the head). */
  onGap?: (gap: Gap) => void
  /**
   * Only the events this returns true for reach `onEvent`; the others still move the subscription's
   * position (a resume does not ask for them again). Evaluated here, in the client: the listeners of
   * one topic share one subscription to it, so the server sends every event of the topic. (To have
   * the server filter, with a CloudEvents filter, use the protocols directly: `?filter=` on a stream
   * or a poll, `"filter"` in a WebSocket subscribe; docs/api.md, Filters.)
   */
  filter?: (event: HeraldEvent) => boolean
  /** Over the WebSocket: enter the topic's presence as a member, with this `info` (JSON, ≤ 1 KiB). */
  presence?: { info?: unknown }
  /** Over the WebSocket: members joining and leaving the topic. */
  onPresence?: (change: PresenceChange) => void
}

export interface Subscription {
  unsubscribe(): void
}

export interface PublishInput<T = unknown> {
  type: string
  data?: T
  id?: string
  source?: string
  subject?: string
}

export interface ClientEvents {
  state: State
  transport: TransportKind
  error: Error
}

interface Listener<T> {
  onEvent: (event: HeraldEvent<T>) => void
  onGap?: ((gap: Gap) => void) | undefined
  filter?: ((event: HeraldEvent) => boolean) | undefined
}

interface Topic {
  /** The last seq delivered; undefined while the start (the head) is being looked up. */
  last: number | undefined
  listeners: Set<Listener<never>>
  presence?: { info?: unknown } | undefined
  watchers: Set<(change: PresenceChange) => void>
}

const KINDS: TransportKind[] = ['ws', 'sse', 'poll']
const OPEN = { ws: webSocket, sse: serverSentEvents, poll: longPoll }

/**
 * `Data` maps topic names to the type of their events' `data` (a typed event map); topics not in it
 * carry `unknown`.
 */
export class Herald<Data extends Record<string, unknown> = Record<string, unknown>> {
  private readonly url: string
  private readonly options: HeraldOptions
  private token: string | undefined
  private readonly topics = new Map<string, Topic>()
  private readonly handlers = new Map<string, Set<(value: never) => void>>()
  private connection: Connection | undefined
  private kind = 0
  private upgradeFailures = 0
  private attempt = 0
  private closed = false
  private timer: ReturnType<typeof setTimeout> | undefined
  private probeTimer: ReturnType<typeof setInterval> | undefined
  private refreshTimer: ReturnType<typeof setTimeout> | undefined
  private refreshing: Promise<void> | undefined
  private readonly fetcher: typeof fetch
  private readonly link: Link
  /** The browser said `offline`: no reconnect until `online` (or, as a safety net, `maxBackoff`). */
  private offlineNow = false
  private readonly online = () => {
    this.offlineNow = false
    this.attempt = 0
    if (!this.connection) this.reconnect(0)
  }
  private readonly offline = () => {
    this.offlineNow = true
    this.connection?.close()
  }
  state: State = 'disconnected'

  constructor(options: HeraldOptions) {
    this.options = options
    this.url = options.url.replace(/\/+$/, '')
    this.token = options.token
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init))
    this.kind = Math.max(0, KINDS.indexOf(options.transport as TransportKind))
    const self = this
    this.link = {
      url: this.url,
      token: () => this.token,
      cursors() {
        const cursors = new Map<string, number>()
        for (const [name, topic] of self.topics) if (topic.last !== undefined) cursors.set(name, topic.last)
        return cursors
      },
      event: (name, event) => this.deliver(name, event),
      gap: (gap) => this.gap(gap),
      extra(name) {
        const topic = self.topics.get(name)
        if (!topic?.presence && !topic?.watchers.size) return undefined
        return { presence: topic.presence, presence_events: topic.watchers.size > 0 }
      },
      member(change) {
        for (const watcher of self.topics.get(change.topic)?.watchers ?? []) watcher(change)
      },
      error: (error) => this.emit('error', error),
      heartbeat: options.heartbeat ?? 15_000,
      fetch: (path, init) => this.request(path, init),
      WebSocket: options.WebSocket ?? globalThis.WebSocket,
    }
    globalThis.addEventListener?.('online', this.online)
    globalThis.addEventListener?.('offline', this.offline)
    this.schedule(this.token)
  }

  /** Listens to the client's own events (`state`, `transport`, `error`); returns a function that stops. */
  on<K extends keyof ClientEvents>(name: K, handler: (value: ClientEvents[K]) => void): () => void {
    let set = this.handlers.get(name)
    if (set === undefined) {
      set = new Set()
      this.handlers.set(name, set)
    }
    set.add(handler)
    return () => set.delete(handler)
  }

  /** The transport in use (or tried next). */
  get transport(): TransportKind {
    return KINDS[this.kind]!
  }

  subscribe<K extends string>(
    topic: K,
    onEvent: (event: HeraldEvent<K extends keyof Data ? Data[K] : unknown>) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    if (this.closed) throw new Error('This client is closed.')
    const listener = { onEvent, onGap: options.onGap, filter: options.filter } as Listener<never>
    let entry = this.topics.get(topic)
    if (entry === undefined) {
      entry = { last: options.after, listeners: new Set(), watchers: new Set() }
      this.topics.set(topic, entry)
      if (entry.last === undefined) void this.findHead(topic, entry)
    }
    entry.listeners.add(listener)
    const { presence, onPresence } = options
    if (presence) entry.presence = presence
    if (onPresence) entry.watchers.add(onPresence)
    this.ensure()
    return {
      unsubscribe: () => {
        entry.listeners.delete(listener)
        if (onPresence) entry.watchers.delete(onPresence)
        if (entry.listeners.size === 0 && this.topics.get(topic) === entry) {
          this.topics.delete(topic)
          this.connection?.sync()
        }
      },
    }
  }

  /**
   * Publishes over HTTP and resolves with the stored event. One `Idempotency-Key` per call, reused by
   * its retries (network errors, 429, 5xx), so that a retry after a lost answer stores nothing twice.
   */
  async publish<K extends string>(
    topic: K,
    event: PublishInput<K extends keyof Data ? Data[K] : unknown>,
  ): Promise<HeraldEvent<K extends keyof Data ? Data[K] : unknown>> {
    const key = crypto.randomUUID()
    // An id of its own: a retry (over the socket or HTTP) is the same (source, id), which the topic
    // stores once, whichever way the first try went.
    const withId = { ...event, id: event.id ?? key }
    for (let attempt = 0; ; attempt++) {
      // Over the socket when on it (one connection for everything); else, or if that fails, HTTP.
      const socket = this.state === 'connected' ? this.connection?.publish : undefined
      if (socket !== undefined) {
        try {
          return (await socket(topic, withId)) as never
        } catch (error) {
          const status = (error as { status?: unknown }).status
          if (typeof status === 'number' && status < 500 && status !== 429) throw error
          if (attempt >= 5 || this.closed) throw error
          const retry = Number((error as { retry_after?: unknown }).retry_after)
          await sleep(retry > 0 ? retry * 1000 : backoff(attempt, 250, 5000))
          continue
        }
      }
      let response: Response | undefined
      try {
        response = await this.request(`/v1/topics/${topic}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(withId),
        })
      } catch (error) {
        if (attempt >= 5 || this.closed) throw error
      }
      if (response?.ok) return response.json()
      if (response && response.status !== 429 && response.status < 500) throw await problem(response)
      if (attempt >= 5) throw response ? await problem(response) : new Error('publish failed')
      const after = Number(response?.headers.get('retry-after'))
      await sleep(after > 0 ? after * 1000 : backoff(attempt, 250, 5000))
    }
  }

  /** Who is on a topic: over the WebSocket when on it, else `GET /v1/topics/{topic}/presence`. */
  async presence(topic: string): Promise<Member[]> {
    if (this.state === 'connected' && this.connection?.presence) return this.connection.presence(topic)
    const response = await this.request(`/v1/topics/${topic}/presence`)
    if (!response.ok) throw await problem(response)
    return ((await response.json()) as { members: Member[] }).members
  }

  close(): void {
    this.closed = true
    clearTimeout(this.timer)
    clearTimeout(this.refreshTimer)
    clearInterval(this.probeTimer)
    globalThis.removeEventListener?.('online', this.online)
    globalThis.removeEventListener?.('offline', this.offline)
    this.topics.clear()
    const connection = this.connection
    this.connection = undefined
    connection?.close()
    this.setState('disconnected')
  }

  private emit<K extends keyof ClientEvents>(name: K, value: ClientEvents[K]) {
    for (const handler of this.handlers.get(name) ?? []) (handler as (value: ClientEvents[K]) => void)(value)
  }

  private setState(state: State) {
    if (state === this.state) return
    this.state = state
    this.emit('state', state)
  }

  private deliver(name: string, event: HeraldEvent) {
    const topic = this.topics.get(name)
    // Drop what came before the start or was delivered already (a resume overlaps at most).
    if (topic?.last === undefined || event.seq <= topic.last) return
    topic.last = event.seq
    for (const listener of topic.listeners) {
      try {
        if (listener.filter !== undefined && !listener.filter(event)) continue
        listener.onEvent(event as never)
      } catch (error) {
        this.emit('error', error as Error)
      }
    }
  }

  private gap(gap: Gap) {
    const topic = this.topics.get(gap.topic)
    if (topic?.last === undefined) return
    topic.last = gap.reason === 'pruned' ? (gap.first_seq ?? 1) - 1 : (gap.head_seq ?? 0)
    for (const listener of topic.listeners) listener.onGap?.(gap)
  }

  /** A subscription without `after` starts at the head, looked up first so that a resume loses nothing. */
  private async findHead(name: string, topic: Topic) {
    for (let attempt = 0; !this.closed && this.topics.get(name) === topic; attempt++) {
      try {
        const response = await this.request(`/v1/topics/${name}`)
        if (response.ok) {
          topic.last = ((await response.json()) as { head_seq: number }).head_seq
          this.connection?.sync()
          return
        }
        if (response.status < 500 && response.status !== 429) {
          this.emit('error', await problem(response))
          return
        }
      } catch {}
      await sleep(backoff(attempt, 500, this.options.maxBackoff))
    }
  }

  /** fetch with the base URL and the token; a 401 asks `getToken` once and tries again. */
  private async request(path: string, init: RequestInit = {}, retried = false): Promise<Response> {
    const headers = new Headers(init.headers)
    if (this.token !== undefined) headers.set('authorization', `Bearer ${this.token}`)
    const response = await this.fetcher(this.url + path, { ...init, headers })
    if (response.status !== 401 || retried || !this.options.getToken) return response
    await this.refresh()
    return this.request(path, init, true)
  }

  /** One refresh at a time; the fresh token goes to the open connection. */
  private refresh(): Promise<void> {
    const getToken = this.options.getToken
    if (!getToken) return Promise.resolve()
    this.refreshing ??= (async () => {
      try {
        this.token = await getToken()
        this.schedule(this.token)
        this.connection?.auth(this.token)
      } catch (error) {
        this.emit('error', error as Error)
      } finally {
        this.refreshing = undefined
      }
    })()
    return this.refreshing
  }

  private schedule(token: string | undefined) {
    clearTimeout(this.refreshTimer)
    const delay = token && this.options.getToken ? refreshDelay(token) : undefined
    if (delay !== undefined)
      this.refreshTimer = setTimeout(() => void this.refresh(), Math.min(delay, 2 ** 31 - 1))
  }

  /** Connects when there is something to follow and nothing open. */
  private ensure() {
    if (this.closed) return
    if (this.connection) return this.connection.sync()
    if (this.timer === undefined) this.reconnect(0)
  }

  private reconnect(delay: number) {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.connect()
    }, delay)
  }

  private async connect() {
    if (this.closed || this.connection) return
    if (this.token === undefined && this.options.getToken) await this.refresh()
    if (this.closed || this.connection) return
    this.setState('connecting')
    const kind = KINDS[this.kind]!
    let connection: Connection | undefined
    const open = () => {
      if (connection !== this.connection) return
      this.attempt = 0
      if (kind === 'ws') this.upgradeFailures = 0
      this.setState('connected')
    }
    const end = (why: EndReason) => {
      if (connection !== this.connection) return
      this.connection = undefined
      void this.ended(kind, why)
    }
    this.emit('transport', kind)
    this.connection = connection = OPEN[kind](this.link, open, end)
  }

  private async ended(kind: TransportKind, why: EndReason) {
    if (this.closed) return
    this.setState('disconnected')
    if (why === 'again') return this.reconnect(0)
    if (this.offlineNow) return this.reconnect(this.options.maxBackoff ?? 30_000)
    if (why === 'auth') await this.refresh()
    const auto = (this.options.transport ?? 'auto') === 'auto'
    if (
      why === 'upgrade' &&
      auto &&
      (await this.reachable()) &&
      (kind !== 'ws' || ++this.upgradeFailures >= 2)
    ) {
      // HTTP gets through but this transport does not (a proxy): the next one, and try back later.
      this.kind = Math.min(this.kind + 1, KINDS.length - 1)
      this.probe()
      return this.reconnect(0)
    }
    this.reconnect(backoff(this.attempt++, 500, this.options.maxBackoff))
  }

  private async reachable(): Promise<boolean> {
    try {
      return (await this.fetcher(`${this.url}/healthz`)).status < 500
    } catch {
      return false
    }
  }

  /** While on a fallback, opens a WebSocket now and then: once one opens, moves back to it. */
  private probe() {
    if (this.probeTimer !== undefined) return
    this.probeTimer = setInterval(() => {
      const socket = new this.link.WebSocket(`${this.url.replace(/^http/, 'ws')}/v1/ws`, 'herald.v1')
      socket.onopen = () => {
        socket.close()
        clearInterval(this.probeTimer)
        this.probeTimer = undefined
        this.kind = 0
        this.upgradeFailures = 0
        this.connection?.close() // ends as 'lost': reconnects over the WebSocket
      }
      socket.onerror = () => {}
    }, this.options.probeInterval ?? 60_000)
  }
}

async function problem(response: Response): Promise<Error> {
  const body = (await response.json().catch(() => ({}))) as { detail?: string; title?: string }
  return Object.assign(new Error(body.detail ?? body.title ?? `HTTP ${response.status}`), body, {
    status: response.status,
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
