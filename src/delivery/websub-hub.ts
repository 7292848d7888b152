import { createHash, randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import type { Agent } from 'undici'
import { request } from 'undici'
import { ulid } from '../core/event.ts'
import { isHeraldTopic, validateTopic } from '../core/topic.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type { HookRecord, HookStore } from '../store/store.ts'
import { checkTargetUrl, MAX_URL_LENGTH } from './targets.ts'
import { EXTERNAL_CONTENT_PREFIX } from './websub.ts'

/**
 * The WebSub hub (W3C Recommendation, 23 January 2018): subscription requests and their verification
 * of intent (§5), and publish pings for external topics. Distribution goes through the webhook
 * dispatcher: an active subscription is a hook of kind 'websub' on the Herald topic its content is
 * published on, so it gets the same durable queue, retries, leases on claims and attempts log.
 */

/** The secret must be "less than 200 bytes" (§5.1). */
export const MAX_SECRET_BYTES = 199
/** Topic URLs one publish ping may name; each is looked up, and fetched if anyone subscribed to it. */
export const MAX_PUBLISH_URLS = 100
/**
 * Verifications and topic fetches under way at once. Each holds an outbound request for up to
 * --delivery-timeout; past this a hub request is answered 503 (a public hub must not let a flood of
 * form posts open any number of outbound requests).
 */
export const MAX_HUB_WORK = 1000
const VERIFY_TIMEOUT_MS = 10_000
/** The verification answer is read up to this much (a challenge is short). */
const VERIFY_READ_BYTES = 4096

export interface HubOptions {
  log: TopicLog
  /** Subscriptions (hooks of kind websub) and their verifications. */
  store: HookStore
  agent: Agent
  logger: Logger
  /** `{HERALD_PUBLIC_URL}`: Herald topics are `{publicUrl}/v1/topics/{topic}`. */
  publicUrl: string
  allowPrivateTargets: boolean
  lease: { minSeconds: number; defaultSeconds: number; maxSeconds: number }
  /** Largest external topic body fetched on a publish ping. */
  fetchLimitBytes: number
  timeoutMs: number
  /** New deliveries were queued (a subscription became active). */
  wake(): void
  onVerification(mode: string, outcome: 'verified' | 'failed' | 'denied'): void
}

/** A request the hub refuses outright: 4xx with a plain-text reason (§5.1.2). */
export class HubRequestError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

interface SubscriptionRequest {
  mode: 'subscribe' | 'unsubscribe'
  topicUrl: string
  callback: string
  leaseSeconds: number
  secret: string | null
}

export class WebSubHub {
  private readonly options: HubOptions
  /** Verifications under way, so that shutdown can wait for them. */
  private readonly pending = new Set<Promise<void>>()
  /** The last verification queued per topic and callback. */
  private readonly inOrder = new Map<string, Promise<void>>()

  constructor(options: HubOptions) {
    this.options = options
  }

  /**
   * Handles one form-encoded hub request. Throws HubRequestError for a malformed one; otherwise the
   * work (verification, or fetching a published topic) goes on after the 202, whatever its outcome.
   */
  accept(form: URLSearchParams): void {
    if (this.pending.size >= MAX_HUB_WORK) {
      throw new HubRequestError(
        503,
        'The hub has as many verifications and fetches under way as it may; try again shortly.',
      )
    }
    const mode = form.get('hub.mode')
    if (mode === 'subscribe' || mode === 'unsubscribe') {
      const request = this.subscriptionRequest(mode, form)
      // Requests for one topic and callback are verified in the order they came, so that a slow
      // subscribe cannot be verified after a later unsubscribe and undo it.
      const key = `${request.topicUrl}\n${request.callback}`
      const previous = this.inOrder.get(key) ?? Promise.resolve()
      // (the previous one's failure is logged by its own track(), and does not stop this one)
      const next = previous.catch(() => {}).then(() => this.verify(request))
      this.inOrder.set(key, next)
      const forget = () => {
        if (this.inOrder.get(key) === next) this.inOrder.delete(key)
      }
      next.then(forget, forget)
      this.track(next)
      return
    }
    if (mode === 'publish') {
      // The spec's note names hub.url; websub.rocks sends hub.topic: both are taken (§6).
      const named: Array<[url: string, field: string]> = [
        ...form.getAll('hub.url').map((url): [string, string] => [url, 'hub.url']),
        ...form.getAll('hub.topic').map((url): [string, string] => [url, 'hub.topic']),
      ]
      if (named.length === 0) throw new HubRequestError(400, 'hub.mode=publish needs hub.url (or hub.topic).')
      for (const [url, field] of named) absoluteUrl(url, field)
      const urls = new Set(named.map(([url]) => url))
      if (urls.size > MAX_PUBLISH_URLS) {
        throw new HubRequestError(400, `A publish request names at most ${MAX_PUBLISH_URLS} topic URLs.`)
      }
      if (this.pending.size + urls.size > MAX_HUB_WORK) {
        throw new HubRequestError(503, 'The hub has as many fetches under way as it may; try again shortly.')
      }
      for (const url of urls) this.track(this.fetchAndPublish(url))
      return
    }
    throw new HubRequestError(
      400,
      mode === null ? 'hub.mode is missing.' : `hub.mode "${mode}" is not subscribe, unsubscribe or publish.`,
    )
  }

  /** The Herald topic a topic URL is published on: its own, or the one carrying an external URL's content. */
  heraldTopic(topicUrl: string): { topic: string; external: boolean } {
    const prefix = `${this.options.publicUrl}/v1/topics/`
    if (topicUrl.startsWith(prefix)) {
      const topic = validateTopic(decodeURIComponent(topicUrl.slice(prefix.length)))
      // Herald's own topics (herald.system, the herald.websub/… content) are not offered to a hub
      // that may be public: operators follow herald.system with a webhook or a stream.
      if (isHeraldTopic(topic)) throw new Error(`${topic} is Herald's own topic, not offered over WebSub.`)
      return { topic, external: false }
    }
    return {
      topic: `${EXTERNAL_CONTENT_PREFIX}${createHash('sha256').update(topicUrl).digest('hex')}`,
      external: true,
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.pending])
  }

  private track(work: Promise<void>): void {
    const done = work
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'websub hub work failed'))
      .finally(() => this.pending.delete(done))
    this.pending.add(done)
  }

  private subscriptionRequest(mode: 'subscribe' | 'unsubscribe', form: URLSearchParams): SubscriptionRequest {
    const topicUrl = form.get('hub.topic')
    if (!topicUrl) throw new HubRequestError(400, 'hub.topic is missing.')
    absoluteUrl(topicUrl, 'hub.topic')
    const callback = form.get('hub.callback')
    if (!callback) throw new HubRequestError(400, 'hub.callback is missing.')
    absoluteUrl(callback, 'hub.callback')
    try {
      checkTargetUrl(callback, this.options.allowPrivateTargets, 'hub.callback')
    } catch (error) {
      throw new HubRequestError(400, (error as Error).message)
    }
    const secret = form.get('hub.secret')
    if (secret !== null && Buffer.byteLength(secret) > MAX_SECRET_BYTES) {
      throw new HubRequestError(
        400,
        `hub.secret must be less than 200 bytes (it is ${Buffer.byteLength(secret)}).`,
      )
    }
    const requested = form.get('hub.lease_seconds')
    if (requested !== null && !/^\d+$/.test(requested)) {
      throw new HubRequestError(400, 'hub.lease_seconds is a whole number of seconds.')
    }
    const { minSeconds, defaultSeconds, maxSeconds } = this.options.lease
    // The hub decides the lease: within its bounds, never perpetual (§5.3.1).
    const leaseSeconds =
      requested === null ? defaultSeconds : Math.min(maxSeconds, Math.max(minSeconds, Number(requested)))
    return { mode, topicUrl, callback, leaseSeconds, secret: secret === '' ? null : secret }
  }

  /** Verification of intent (§5.3); a topic the hub refuses is answered with a denial (§5.2) instead. */
  private async verify(request: SubscriptionRequest): Promise<void> {
    const { store } = this.options
    const now = Date.now()
    const id = await store.recordVerification({
      mode: request.mode,
      topic_url: request.topicUrl,
      callback: request.callback,
      state: 'pending',
      error: null,
      requested_at: now,
      completed_at: null,
    })
    const refusal = this.refusal(request.topicUrl)
    if (refusal !== undefined && request.mode === 'subscribe') {
      await this.callback(request.callback, {
        'hub.mode': 'denied',
        'hub.topic': request.topicUrl,
        'hub.reason': refusal,
      })
      await store.completeVerification(id, 'denied', refusal, Date.now())
      this.options.onVerification(request.mode, 'denied')
      return
    }
    const challenge = randomBytes(24).toString('base64url') // random, single-use (§8.2)
    const query: Record<string, string> = {
      'hub.mode': request.mode,
      'hub.topic': request.topicUrl,
      'hub.challenge': challenge,
    }
    if (request.mode === 'subscribe') query['hub.lease_seconds'] = String(request.leaseSeconds)
    const answer = await this.callback(request.callback, query)
    const confirmed = answer.ok && answer.status >= 200 && answer.status < 300 && answer.body === challenge
    if (!confirmed) {
      // A failed verification changes nothing: an existing subscription stays as it was (§5.1).
      const why = answer.ok
        ? answer.status >= 200 && answer.status < 300
          ? 'the callback did not echo hub.challenge'
          : `the callback answered ${answer.status}`
        : answer.error
      await store.completeVerification(id, 'failed', why, Date.now())
      this.options.onVerification(request.mode, 'failed')
      return
    }
    if (request.mode === 'subscribe') {
      await store.upsertWebsubSubscription(this.subscription(request, Date.now()))
    } else {
      const current = await store.websubSubscription(request.topicUrl, request.callback)
      if (current) await store.deleteHook(current.id)
    }
    await store.completeVerification(id, 'verified', null, Date.now())
    this.options.onVerification(request.mode, 'verified')
  }

  /** Why the hub will not take subscriptions to this topic URL, or undefined. */
  private refusal(topicUrl: string): string | undefined {
    try {
      const { external } = this.heraldTopic(topicUrl)
      if (external) checkTargetUrl(topicUrl, this.options.allowPrivateTargets, 'hub.topic')
      return undefined
    } catch (error) {
      return (error as Error).message
    }
  }

  private subscription(request: SubscriptionRequest, now: number): HookRecord {
    return {
      id: `websub_${ulid(now)}`,
      kind: 'websub',
      target_url: request.callback,
      topic: this.heraldTopic(request.topicUrl).topic,
      topic_url: request.topicUrl,
      event: null,
      secret: request.secret,
      lease_seconds: request.leaseSeconds,
      expires_at: now + request.leaseSeconds * 1000,
      previous_secret: null,
      previous_secret_until: null,
      ordered: true,
      max_in_flight: 1,
      rate_limit: null,
      state: 'active',
      disabled_reason: null,
      failing_since: null,
      description: null,
      created_at: now,
      updated_at: now,
    }
  }

  /** A GET to the callback with `query` added to its own query string (§5.1.1), through the SSRF guard. */
  private async callback(
    callback: string,
    query: Record<string, string>,
  ): Promise<{ ok: true; status: number; body: string } | { ok: false; error: string }> {
    // Appended to the callback's query as it was given, byte for byte (§5.1.1): re-encoding it through
    // URLSearchParams would change what a subscriber may have signed (`?flag` → `?flag=`).
    const base = callback.split('#')[0]!
    const url = `${base}${base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?'}${new URLSearchParams(query)}`
    try {
      const response = await request(url, {
        method: 'GET',
        headers: { 'user-agent': 'Herald-WebSub' },
        dispatcher: this.options.agent,
        signal: AbortSignal.timeout(VERIFY_TIMEOUT_MS),
      })
      const body = await readLimited(response.body, VERIFY_READ_BYTES)
      return { ok: true, status: response.statusCode, body: body?.toString('utf8') ?? '' }
    } catch (error) {
      return { ok: false, error: (error as Error).message }
    }
  }

  /**
   * A publish ping for an external topic: fetch it (through the SSRF guard, within the size and time
   * limits) and publish its bytes, with their exact Content-Type, on the topic that carries it; the
   * subscriptions' deliveries are queued with that event. Only topics someone subscribed to are fetched.
   */
  private async fetchAndPublish(topicUrl: string): Promise<void> {
    const { topic, external } = this.heraldTopic(topicUrl)
    if (!external) return // a Herald topic's events are distributed as they are published
    const { store } = this.options
    if ((await store.hooks({ kind: 'websub', topicUrl, limit: 1 })).length === 0) return
    // The topic's server is the publisher's to run: a refused connection, a timeout or an answer that
    // is not a 2xx is an outcome of the ping (logged, nothing distributed), not a fault of the hub.
    let fetched: { status: number; body: Buffer | undefined; contentType: string | string[] | undefined }
    try {
      checkTargetUrl(topicUrl, this.options.allowPrivateTargets, 'hub.topic')
      const response = await request(topicUrl, {
        method: 'GET',
        headers: { 'user-agent': 'Herald-WebSub' },
        dispatcher: this.options.agent,
        signal: AbortSignal.timeout(this.options.timeoutMs),
      })
      const body = await readLimited(response.body, this.options.fetchLimitBytes)
      fetched = { status: response.statusCode, body, contentType: response.headers['content-type'] }
    } catch (error) {
      this.options.logger.warn(
        { topic: topicUrl, error: (error as Error).message },
        'websub publish: the topic could not be fetched; nothing distributed',
      )
      return
    }
    const { status, body } = fetched
    if (status < 200 || status >= 300 || body === undefined) {
      this.options.logger.warn(
        { topic: topicUrl, status, tooLarge: body === undefined },
        'websub publish: the topic could not be fetched; nothing distributed',
      )
      return
    }
    const contentType = fetched.contentType
    await this.options.log.publish(topic, [
      {
        type: 'websub.content',
        source: topicUrl,
        datacontenttype:
          (Array.isArray(contentType) ? contentType[0] : contentType) ?? 'application/octet-stream',
        data_base64: body.toString('base64'),
      },
    ])
  }
}

function absoluteUrl(value: string, field: string): URL {
  if (value.length > MAX_URL_LENGTH) {
    throw new HubRequestError(400, `${field} has at most ${MAX_URL_LENGTH} characters.`)
  }
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new HubRequestError(400, `${field} is not an absolute URL.`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new HubRequestError(400, `${field} must be an http or https URL.`)
  }
  return url
}

/** The body, or undefined when it is larger than `limit` bytes (the rest is not read). */
async function readLimited(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number) {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > limit) {
      body.destroy()
      return undefined
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
