/**
 * Herald's API as the console calls it: with the key or token the user signed in with, kept in
 * session storage only (gone with the tab; no cookie, so no CSRF), sent as `Authorization: Bearer`.
 * EventSource cannot set headers, so streams carry it as `?access_token=` (streams accept it).
 */
const KEY = 'herald.key'

export function storedKey(): string | null {
  return sessionStorage.getItem(KEY)
}

export function storeKey(key: string | null): void {
  if (key === null) sessionStorage.removeItem(KEY)
  else sessionStorage.setItem(KEY, key)
}

/** An RFC 9457 problem (or any failed answer) from the API. */
export class ApiError extends Error {
  readonly status: number
  readonly title: string
  readonly detail: string
  constructor(status: number, title: string, detail: string) {
    super(detail || title)
    this.status = status
    this.title = title
    this.detail = detail
  }
}

export async function request<T = unknown>(
  path: string,
  init: { method?: string; body?: unknown; key?: string | null } = {},
): Promise<T> {
  const key = init.key === undefined ? storedKey() : init.key
  const headers: Record<string, string> = { accept: 'application/json' }
  if (key) headers['authorization'] = `Bearer ${key}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(path, {
    method: init.method ?? 'GET',
    headers,
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    credentials: 'omit',
    cache: 'no-store',
  })
  if (response.status === 204) return undefined as T
  const text = await response.text()
  if (!response.ok) {
    let title = response.statusText
    let detail = text
    try {
      const problem = JSON.parse(text) as { title?: string; detail?: string }
      title = problem.title ?? title
      detail = problem.detail ?? ''
    } catch {
      // Not JSON: the text is the detail.
    }
    throw new ApiError(response.status, title, detail)
  }
  return (text === '' ? undefined : JSON.parse(text)) as T
}

export const get = <T>(path: string) => request<T>(path)
export const post = <T>(path: string, body: unknown) => request<T>(path, { method: 'POST', body })
export const patch = <T>(path: string, body: unknown) => request<T>(path, { method: 'PATCH', body })
export const del = (path: string) => request<void>(path, { method: 'DELETE' })

/** A stream's URL with the key in the query (EventSource sends no headers). */
export function streamUrl(path: string): string {
  const key = storedKey()
  if (!key) return path
  return `${path}${path.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(key)}`
}

/** A topic's path in the API: its `/`-separated segments each encoded. */
export function topicPath(topic: string): string {
  return topic.split('/').map(encodeURIComponent).join('/')
}

/** Builds a query string from the values that are set. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, String(value))
  }
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}

export interface Topic {
  topic: string
  head_seq: number
  first_seq: number
  events: number
  created_at: string | null
  retention: { max_age_ms: number | null; max_events: number | null }
}

export interface HeraldEvent {
  id: string
  type: string
  topic: string
  seq: number
  time?: string
  data?: unknown
  [key: string]: unknown
}

/** POST /v1/hooks/{id}/test: what the receiver said to one signed test event. */
export interface TestSend {
  event_id: string
  status: number | null
  duration_ms: number
  response: string | null
  error: string | null
}

export interface Hook {
  id: string
  target_url: string
  topic: string | null
  event: string | null
  secret?: string
  state: 'active' | 'paused' | 'disabled'
  disabled_reason: string | null
  failing_since: string | null
  description: string | null
  /** A CloudEvents Subscriptions API filter, in its canonical form; null: every event. */
  filter: unknown
  created_at: string
}

export interface Delivery {
  id: number
  hook_id: string
  event_id: string
  topic: string
  seq: number
  state: 'pending' | 'delivered' | 'failed'
  attempts: number
  next_attempt_at: string | null
  last_status: number | null
  last_error: string | null
  created_at: string
  updated_at: string
}

export interface Attempt {
  id: number
  delivery: number
  attempt: number
  at: string
  status: number | null
  error: string | null
  duration_ms: number
  response: string | null
}

export interface Connection {
  id: string
  protocol: 'sse' | 'ndjson' | 'ws'
  topics: string[]
  topic_count: number
  sub?: string
  actor: string | null
  remote: string | null
  since: string
}
