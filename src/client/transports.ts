/** The three transports of the client: one WebSocket, one SSE stream over fetch, long polls. */

/** A stored event as Herald delivers it: CloudEvents 1.0 plus `topic` and `seq`. */
export interface HeraldEvent<T = unknown> {
  specversion: '1.0'
  id: string
  source: string
  type: string
  time: string
  topic: string
  seq: number
  data?: T
  datacontenttype?: string
  subject?: string
  [attribute: string]: unknown
}

/** A cursor that could not be resumed (see docs/api.md, Gaps). */
export interface Gap {
  topic: string
  after: number
  /** `pruned`: delivery goes on from this seq; events `after+1 … first_seq-1` are gone. */
  first_seq?: number
  /** `ahead`: the cursor was past the head; delivery goes on after it. */
  head_seq?: number
  reason: 'pruned' | 'ahead'
}

export interface Member {
  client: string
  sub?: string
  info?: unknown
  since: string
}

/** A member joining or leaving a topic (WebSocket only, for subscriptions with `onPresence`). */
export interface PresenceChange {
  op: 'join' | 'leave'
  topic: string
  member: Member
}

export type TransportKind = 'ws' | 'sse' | 'poll'

/** Why a connection ended: `upgrade` it could not be made (try the next transport), `auth` refused credentials, `again` reopen at once. */
export type EndReason = 'upgrade' | 'auth' | 'lost' | 'again'

/** What a transport needs from the client. */
export interface Link {
  url: string
  token(): string | undefined
  /** Topic → the last seq delivered (only topics whose start is known). */
  cursors(): Map<string, number>
  event(topic: string, event: HeraldEvent): void
  gap(gap: Gap): void
  /** What a WebSocket subscribe adds for a topic (`presence`, `presence_events`). */
  extra(topic: string): object | undefined
  member(change: PresenceChange): void
  error(error: Error): void
  /** The server's keep-alive interval (ms): silence for twice as long is a dead connection. */
  heartbeat: number
  fetch(path: string, init?: RequestInit): Promise<Response>
  WebSocket: typeof WebSocket
}

export interface Connection {
  /** The subscriptions changed. */
  sync(): void
  /** A fresh token. */
  auth(token: string): void
  presence?(topic: string): Promise<Member[]>
  /** Publishes over the socket (`publish` op): the stored event, or the error op as an Error. */
  publish?(topic: string, event: object): Promise<HeraldEvent>
  close(): void
}

type Open = () => void
type End = (why: EndReason) => void

/** Calls `dead` when nothing came for `limit` ms; `poke` on every byte or message. */
function watchdog(limit: number, idle: () => void, dead: () => void) {
  let last = Date.now()
  const timer = setInterval(() => {
    const quiet = Date.now() - last
    if (quiet > limit) dead()
    else if (quiet > limit / 2) idle()
  }, limit / 4)
  return { poke: () => (last = Date.now()), stop: () => clearInterval(timer) }
}

export function webSocket(link: Link, open: Open, end: End): Connection {
  const socket = new link.WebSocket(`${link.url.replace(/^http/, 'ws')}/v1/ws`, 'herald.v1')
  const sent = new Map<string, number>()
  const waiting = new Map<string, [(value: never) => void, (error: Error) => void]>()
  let opened = false
  let ready = false
  let ended = false
  let refs = 0
  const send = (message: object): boolean => {
    if (socket.readyState !== 1) return false
    socket.send(JSON.stringify(message))
    return true
  }
  const finish = (why: EndReason) => {
    if (ended) return
    ended = true
    dog.stop()
    for (const [, reject] of waiting.values()) reject(new Error('The connection closed.'))
    socket.onclose = socket.onmessage = socket.onerror = null
    try {
      socket.close()
    } catch {}
    end(why)
  }
  // In a browser the server's pings are invisible: when quiet, ask something that is answered.
  const dog = watchdog(
    link.heartbeat * 2,
    () => {
      const topic = sent.keys().next().value
      if (ready && topic !== undefined) send({ op: 'presence', topic, ref: 'keepalive' })
    },
    () => finish('lost'),
  )
  const sync = () => {
    if (!ready) return
    const cursors = link.cursors()
    for (const [topic, after] of cursors)
      if (!sent.has(topic)) {
        sent.set(topic, after)
        send({ op: 'subscribe', topic, after, ...link.extra(topic), ref: `s:${topic}` })
      }
    for (const topic of sent.keys())
      if (!cursors.has(topic)) {
        sent.delete(topic)
        send({ op: 'unsubscribe', topic })
      }
  }
  const start = () => {
    ready = true
    open()
    sync()
  }
  socket.onopen = () => {
    opened = true
    dog.poke()
    const token = link.token()
    if (token === undefined) start()
    else send({ op: 'auth', token })
  }
  socket.onmessage = (message) => {
    dog.poke()
    let body: Record<string, unknown> & { op?: string; topic?: string; ref?: string }
    try {
      body = JSON.parse(String(message.data))
    } catch {
      return
    }
    const topic = body.topic ?? ''
    switch (body.op) {
      case 'authenticated':
        if (!ready) start()
        return
      case 'event':
        return link.event(topic, body['event'] as HeraldEvent)
      case 'gap': {
        const { op: _op, ...gap } = body
        return link.gap(gap as unknown as Gap)
      }
      case 'join':
      case 'leave':
        return link.member(body as unknown as PresenceChange)
      case 'presence': {
        const call = waiting.get(body.ref ?? '')
        waiting.delete(body.ref ?? '')
        return call?.[0](body['members'] as never)
      }
      case 'published': {
        const call = waiting.get(body.ref ?? '')
        waiting.delete(body.ref ?? '')
        return call?.[0](body['event'] as never)
      }
      case 'error': {
        const error = Object.assign(new Error(String(body['detail'] ?? body['title'])), body)
        const call = waiting.get(body.ref ?? '')
        waiting.delete(body.ref ?? '')
        if (call) return call[1](error)
        if (body['status'] === 401) return finish('auth')
        if (body.ref === 'keepalive') return
        if (body.ref?.startsWith('s:')) {
          // A refused subscribe is forgotten, so that a later sync asks again; one refused for now
          // (429 over the socket's budget, 503 a store out of reach) is asked again when it says.
          sent.delete(body.ref.slice(2))
          const retry = Number(body['retry_after'])
          if (retry > 0 || body['status'] === 503) setTimeout(sync, (retry || 1) * 1000)
        }
        return link.error(error)
      }
    }
  }
  socket.onclose = (event) =>
    finish(!opened ? 'upgrade' : event.code === 4401 || event.code === 1008 ? 'auth' : 'lost')
  return {
    sync,
    auth: (token) => send({ op: 'auth', token }),
    publish(topic, event) {
      const ref = `u${++refs}`
      return new Promise((resolve, reject) => {
        waiting.set(ref, [resolve as (value: never) => void, reject])
        if (!send({ ...event, op: 'publish', topic, ref })) {
          waiting.delete(ref)
          reject(new Error('Not connected.'))
        }
      })
    },
    presence(topic) {
      const ref = `p${++refs}`
      return new Promise((resolve, reject) => {
        waiting.set(ref, [resolve as (value: never) => void, reject])
        if (!send({ op: 'presence', topic, ref })) {
          waiting.delete(ref)
          reject(new Error('Not connected.'))
        }
      })
    },
    close: () => finish('lost'),
  }
}

/** Reads SSE frames from a fetch body: `(event name, data)` per frame; comments only keep it alive. */
async function readFrames(
  body: ReadableStream<Uint8Array>,
  poke: () => void,
  frame: (name: string, data: string) => void,
) {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    poke()
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n')
    let cut = buffer.indexOf('\n\n')
    while (cut >= 0) {
      let name = 'message'
      let data = ''
      for (const line of buffer.slice(0, cut).split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim()
        else if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(5).replace(/^ /, '')
      }
      buffer = buffer.slice(cut + 2)
      if (data) frame(name, data)
      cut = buffer.indexOf('\n\n')
    }
  }
}

/**
 * One SSE stream over fetch for every subscription (`/v1/stream`): it can send `Authorization` and
 * read `event: gap`. Several topics resume with a cursor token made from each topic's last seq.
 */
export function serverSentEvents(link: Link, open: Open, end: End): Connection {
  const abort = new AbortController()
  const cursors = link.cursors()
  let ended = false
  const finish = (why: EndReason) => {
    if (ended) return
    ended = true
    dog.stop()
    abort.abort()
    end(why)
  }
  const dog = watchdog(
    link.heartbeat * 2,
    () => {},
    () => finish('lost'),
  )
  const run = async () => {
    if (cursors.size === 0) return open() // nothing to follow: sync() reopens when something comes
    const topics = [...cursors.keys()]
    const query = topics.map((topic) => `topic=${encodeURIComponent(topic)}`).join('&')
    const headers: Record<string, string> = { accept: 'text/event-stream' }
    let path = `/v1/stream?${query}`
    if (topics.length === 1) path += `&after=${cursors.get(topics[0]!)}`
    else
      headers['last-event-id'] = btoa(JSON.stringify(Object.fromEntries(cursors)))
        .replace(/\+/g, '-')
        .replace(/\//g, '_')
        .replace(/=+$/, '')
    const response = await link.fetch(path, { headers, signal: abort.signal })
    if (response.status === 401) return finish('auth')
    if (
      !response.ok ||
      !response.body ||
      !response.headers.get('content-type')?.startsWith('text/event-stream')
    )
      return finish(response.status >= 500 && response.status !== 502 ? 'lost' : 'upgrade')
    open()
    await readFrames(response.body, dog.poke, (name, data) => {
      const body = JSON.parse(data) as HeraldEvent & Gap
      if (name === 'gap' && body.specversion === undefined) link.gap(body)
      else link.event(body.topic, body)
    })
    finish('lost')
  }
  run().catch(() => finish('lost'))
  return {
    sync() {
      const now = link.cursors()
      if (now.size !== cursors.size || [...now.keys()].some((topic) => !cursors.has(topic))) finish('again')
    },
    auth: () => finish('again'), // the stream ends at the old token's exp: reopen with the new one
    close: () => finish('lost'),
  }
}

/** Long polling, one loop per topic: `GET /v1/topics/{topic}/events?after=&wait=`. */
export function longPoll(link: Link, open: Open, end: End): Connection {
  const abort = new AbortController()
  const loops = new Set<string>()
  let opened = false
  let ended = false
  const wait = Math.max(1, Math.min(25, Math.floor(link.heartbeat / 1000)))
  const finish = (why: EndReason) => {
    if (ended) return
    ended = true
    abort.abort()
    end(why)
  }
  const loop = async (topic: string) => {
    loops.add(topic)
    try {
      for (
        let after = link.cursors().get(topic);
        after !== undefined && !ended;
        after = link.cursors().get(topic)
      ) {
        const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(wait * 1000 + link.heartbeat * 2)])
        const response = await link.fetch(
          `/v1/topics/${topic}/events?after=${after}&limit=1000&wait=${wait}`,
          { signal },
        )
        if (response.status === 401) return finish('auth')
        if (!response.ok) throw new Error(`poll: ${response.status}`)
        const page = (await response.json()) as { events: HeraldEvent[]; gap?: Omit<Gap, 'topic'> }
        if (!opened) {
          opened = true
          open()
        }
        if (page.gap) link.gap({ ...page.gap, topic })
        for (const event of page.events) link.event(topic, event)
      }
    } catch {
      finish('lost')
    } finally {
      loops.delete(topic)
    }
  }
  const sync = () => {
    for (const topic of link.cursors().keys()) if (!loops.has(topic)) void loop(topic)
    if (!opened && loops.size === 0) {
      opened = true
      open()
    }
  }
  queueMicrotask(sync)
  return { sync, auth: () => {}, close: () => finish('lost') }
}
