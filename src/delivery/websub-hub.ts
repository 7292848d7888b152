import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Agent } from 'undici'
import { request } from 'undici'
import { ulid } from '../core/event.ts'
import { EXTERNAL_CONTENT_PREFIX, isHeraldTopic, validateTopic } from '../core/topic.ts'
import type { TopicLog } from '../log/topic-log.ts'
import type {
  HookRecord,
  HookStore,
  PendingVerification,
  Store,
  VerificationLease,
  VerificationOutcome,
} from '../store/store.ts'
import { checkTargetUrl, MAX_URL_LENGTH } from './targets.ts'

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
/**
 * How long a node holds a verification it does: past this (it stopped, or was paused) another node
 * takes it over. Longer than a verification takes (its GET is bounded by VERIFY_TIMEOUT_MS).
 */
const VERIFY_LEASE_MS = 2 * VERIFY_TIMEOUT_MS + 5_000
/**
 * How often a node looks for pending verifications no one does (their node died, their lease ran
 * out, or they waited for an earlier one of their topic and callback): a dead node is known as such
 * at the next heartbeat of another (src/cluster/node.ts), so its verifications are taken over within
 * a few seconds.
 */
const VERIFY_SWEEP_MS = 2_000
/** Verifications taken over at one look, at most. */
const VERIFY_SWEEP_LIMIT = 100

export interface HubOptions {
  log: TopicLog
  /**
   * Subscriptions (hooks of kind websub) and their verifications, and the store's clock their leases
   * are compared on (the database's on PostgreSQL).
   */
  store: HookStore & Pick<Store, 'now'>
  /** This node's id: the owner of the verifications it does (src/cluster/node.ts). */
  nodeId: string
  agent: Agent
  logger: Logger
  /** `{HERALD_PUBLIC_URL}`: Herald topics are `{publicUrl}/v1/topics/{topic}`. */
  publicUrl: string
  allowPrivateTargets: boolean
  lease: { minSeconds: number; defaultSeconds: number; maxSeconds: number }
  /** Largest external topic body fetched on a publish ping. */
  fetchLimitBytes: number
  timeoutMs: number
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

/**
 * Verification of intent survives the node doing it: a subscription request is recorded in the store
 * as a pending verification, with what doing it needs and a lease (this node, a token, an expiry)
 * before it is answered 202; the node then does it, and records the outcome (with the subscription
 * it creates or removes) under its token. A node that dies mid-verification leaves it pending: every
 * node looks for pending verifications whose lease ran out or whose owner is gone, and does them
 * again, with a new challenge. Requests for one topic and callback are verified in the order they
 * came, across the nodes: one is done only once no earlier one of them is pending.
 */
export class WebSubHub {
  private readonly options: HubOptions
  /** Verifications and fetches under way, so that shutdown can wait for them. */
  private readonly pending = new Set<Promise<void>>()
  /** The last verification queued here per topic and callback. */
  private readonly inOrder = new Map<string, Promise<void>>()
  private sweepTimer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined
  private sweepAgain = false
  /** Whether this process has looked once: its first look also takes a former process's under its id. */
  private swept = false
  private stopped = false

  constructor(options: HubOptions) {
    this.options = options
  }

  /** Starts looking for verifications no one does (once the node has joined the store's nodes). */
  start(): void {
    this.sweep()
    this.sweepTimer = setInterval(() => this.sweep(), VERIFY_SWEEP_MS)
    this.sweepTimer.unref()
  }

  /**
   * Handles one form-encoded hub request. Throws HubRequestError for a malformed one; a subscription
   * request is recorded before this resolves (the 202), and the work (verification, or fetching a
   * published topic) goes on after it, whatever its outcome.
   */
  async accept(form: URLSearchParams): Promise<void> {
    if (this.pending.size >= MAX_HUB_WORK) {
      throw new HubRequestError(
        503,
        'The hub has as many verifications and fetches under way as it may; try again shortly.',
      )
    }
    const mode = form.get('hub.mode')
    if (mode === 'subscribe' || mode === 'unsubscribe') {
      const request = this.subscriptionRequest(mode, form)
      const lease = this.lease()
      const id = await this.options.store.recordVerification(
        {
          mode,
          topic_url: request.topicUrl,
          callback: request.callback,
          lease_seconds: request.leaseSeconds,
          secret: request.secret,
          requested_at: this.options.store.now(),
        },
        lease,
      )
      this.enqueue(request.topicUrl, request.callback, id, lease)
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
    this.stopped = true
    clearInterval(this.sweepTimer)
    await this.sweeping
    await Promise.allSettled([...this.pending])
  }

  /** A lease on verifications for this node, from now (by the store's clock). */
  private lease(): VerificationLease {
    return {
      owner: this.options.nodeId,
      token: randomUUID(),
      until: this.options.store.now() + VERIFY_LEASE_MS,
    }
  }

  /**
   * Does the verification `id` under `lease` once the ones queued here before it for its topic and
   * callback are done (so that a slow subscribe cannot be verified after a later unsubscribe and undo
   * it); the store then checks that the lease still holds it and that no earlier one is pending on
   * another node.
   */
  private enqueue(topicUrl: string, callback: string, id: number, lease: VerificationLease): void {
    const key = `${topicUrl}\n${callback}`
    const previous = this.inOrder.get(key) ?? Promise.resolve()
    // (the previous one's failure is logged by its own track(), and does not stop this one)
    const next = previous
      .catch(() => {})
      .then(async () => {
        const renewed = { ...lease, until: this.options.store.now() + VERIFY_LEASE_MS }
        const verification = await this.options.store.startVerification(id, renewed)
        if (verification) await this.verify(verification, lease.token)
      })
    this.inOrder.set(key, next)
    const forget = () => {
      if (this.inOrder.get(key) === next) this.inOrder.delete(key)
    }
    next.then(forget, forget)
    this.track(next)
  }

  /**
   * Takes over the pending verifications no one does: their node died or stopped (it is no longer a
   * node of the store), their lease ran out, or they waited for an earlier one of their topic and
   * callback, now done. One look at a time; a look asked for meanwhile follows it.
   */
  private sweep(): void {
    if (this.stopped) return
    if (this.sweeping) {
      this.sweepAgain = true
      return
    }
    this.sweeping = (async () => {
      do {
        this.sweepAgain = false
        const room = Math.min(VERIFY_SWEEP_LIMIT, MAX_HUB_WORK - this.pending.size)
        if (room <= 0 || this.stopped) break
        const lease = this.lease()
        const taken = await this.options.store.claimVerifications({
          lease,
          now: this.options.store.now(),
          limit: room,
          ...(this.swept ? {} : { formerSelf: this.options.nodeId }),
        })
        this.swept = true
        for (const verification of taken) {
          this.options.logger.info(
            { id: verification.id, mode: verification.mode, topic: verification.topic_url },
            'websub: taking over a verification of intent no node was doing',
          )
          this.enqueue(verification.topic_url, verification.callback, verification.id, lease)
        }
      } while (this.sweepAgain)
    })()
      .catch((error: unknown) =>
        this.options.logger.warn(
          { reason: (error as Error).message },
          'websub: looking for verifications to take over failed',
        ),
      )
      .finally(() => {
        this.sweeping = undefined
      })
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

  /**
   * Verification of intent (§5.3); a topic the hub refuses is answered with a denial (§5.2) instead.
   * The outcome is recorded under `token`: if another node took the verification over meanwhile (this
   * one was paused past its lease), it changes nothing and the other node's outcome stands.
   */
  private async verify(verification: PendingVerification, token: string): Promise<void> {
    const { store } = this.options
    const { mode, topic_url: topicUrl, callback } = verification
    const finish = async (outcome: Omit<VerificationOutcome, 'id' | 'token' | 'now'>) => {
      const done = await store.finishVerification({
        ...outcome,
        id: verification.id,
        token,
        now: store.now(),
      })
      if (done) {
        this.options.onVerification(mode, outcome.state)
        // The next request for this topic and callback may be waiting for this one: look now.
        this.sweep()
      } else {
        this.options.logger.warn(
          { id: verification.id, mode, topic: topicUrl },
          'websub: a verification of intent was taken over by another node; its outcome here is not recorded',
        )
      }
    }
    const refusal = this.refusal(topicUrl)
    if (refusal !== undefined && mode === 'subscribe') {
      await this.callback(callback, { 'hub.mode': 'denied', 'hub.topic': topicUrl, 'hub.reason': refusal })
      await finish({ state: 'denied', error: refusal })
      return
    }
    const leaseSeconds = verification.lease_seconds ?? this.options.lease.defaultSeconds
    const challenge = randomBytes(24).toString('base64url') // random, single-use (§8.2)
    const query: Record<string, string> = {
      'hub.mode': mode,
      'hub.topic': topicUrl,
      'hub.challenge': challenge,
    }
    if (mode === 'subscribe') query['hub.lease_seconds'] = String(leaseSeconds)
    const answer = await this.callback(callback, query)
    const confirmed = answer.ok && answer.status >= 200 && answer.status < 300 && answer.body === challenge
    if (!confirmed) {
      // A failed verification changes nothing: an existing subscription stays as it was (§5.1).
      const why = answer.ok
        ? answer.status >= 200 && answer.status < 300
          ? 'the callback did not echo hub.challenge'
          : `the callback answered ${answer.status}`
        : answer.error
      await finish({ state: 'failed', error: why })
      return
    }
    if (mode === 'subscribe') {
      const request = { mode, topicUrl, callback, leaseSeconds, secret: verification.secret }
      await finish({ state: 'verified', error: null, subscription: this.subscription(request, Date.now()) })
    } else {
      await finish({ state: 'verified', error: null, unsubscribe: true })
    }
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
      filter: null,
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
