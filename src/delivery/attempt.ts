import type { Agent, Dispatcher } from 'undici'
import type { AttemptResult } from '../store/store.ts'
import { parseRetryAfter } from './retry.ts'

/** How much of a receiver's answer is kept in the attempts log. */
export const RESPONSE_KEPT_BYTES = 2048
/**
 * How much of it is read at most; past this the rest is not read and the connection goes with it.
 * More than is kept, so that a receiver answering with a page of a few kilobytes keeps its
 * connection alive for the next delivery.
 */
const RESPONSE_READ_BYTES = 64 * 1024
/**
 * How long the body is read after the status line, at most (and never past the attempt's timeout):
 * the status decides the outcome, the body is only logged, so a receiver that answers and then
 * trickles its body holds a dispatch slot this long, not until the timeout.
 */
export const RESPONSE_BODY_WAIT_MS = 1000

export interface PostRequest {
  url: string
  headers: Record<string, string>
  body: string | Buffer
  timeoutMs: number
  agent: Agent
  /** A response header to return (the REST Hooks handshake reads X-Hook-Secret). */
  responseHeader?: string
}

export interface PostResult extends AttemptResult {
  /** Retry-After of the answer, in ms from now. */
  retryAfterMs: number | undefined
  /** The value of `responseHeader`, when asked for and present. */
  header?: string
}

/**
 * One outbound POST through the SSRF-guarded agent: never follows redirects, gives up after
 * `timeoutMs` in all (connecting, sending, waiting for the status line). The status line decides the
 * outcome; then at most RESPONSE_READ_BYTES of the body are read (RESPONSE_KEPT_BYTES kept), for at
 * most RESPONSE_BODY_WAIT_MS, and the connection is dropped if the body has not ended by then.
 *
 * It talks to undici's dispatcher directly rather than through `request()`: that skips a Readable
 * stream per response and an AbortSignal timer per attempt, which together cost more CPU than
 * signing the delivery (bench/dispatch.ts is where that shows).
 */
export function post(input: PostRequest): Promise<PostResult> {
  return new Promise((resolve) => {
    const attempt = new PostAttempt(input, resolve)
    let url: URL
    try {
      url = new URL(input.url)
    } catch (error) {
      attempt.fail(error)
      return
    }
    try {
      input.agent.dispatch(
        {
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'POST',
          headers: input.headers,
          body: input.body,
        },
        attempt,
      )
    } catch (error) {
      attempt.fail(error)
    }
  })
}

/** The handler of one POST: collects the answer and settles once, whatever undici calls after. */
class PostAttempt implements Dispatcher.DispatchHandler {
  private readonly input: PostRequest
  private readonly resolve: (result: PostResult) => void
  private readonly at = Date.now()
  private readonly started = performance.now()
  private timer: NodeJS.Timeout
  private controller: Dispatcher.DispatchController | undefined
  private settled = false
  private timedOut = false
  private status = 0
  private headers: Record<string, string | string[] | undefined> = {}
  private chunks: Buffer[] = []
  private size = 0

  constructor(input: PostRequest, resolve: (result: PostResult) => void) {
    this.input = input
    this.resolve = resolve
    this.timer = setTimeout(() => this.timeout(), input.timeoutMs)
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    // Timed out while waiting for a connection: nothing is sent.
    if (this.timedOut) controller.abort(this.timeoutError())
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.status = statusCode
    this.headers = headers
    // Usually the whole answer is in the same read and onResponseEnd follows at once: the body's
    // deadline is only set, after that read, for an answer that has not ended by then.
    queueMicrotask(() => this.awaitBody())
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
    this.size += chunk.length
    // Enough read: what is left is not, the connection goes with it.
    if (this.size >= RESPONSE_READ_BYTES) this.stopReading(controller)
  }

  onResponseEnd(): void {
    this.succeed(true)
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // After the status line, a body cut short (reset, closed early) does not undo the answer.
    if (this.status !== 0) this.succeed(false)
    else this.fail(error)
  }

  fail(error: unknown): void {
    this.settle({
      status: null,
      error: this.timedOut ? this.timeoutError().message : describe(error),
      response: null,
      retryAfterMs: undefined,
    })
  }

  /**
   * Settles with the status line and the body read so far; `whole` is false when the body was not
   * read to its end (marked with an ellipsis in the log).
   */
  private succeed(whole: boolean): void {
    const { headers, input } = this
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
    const text = body.subarray(0, RESPONSE_KEPT_BYTES).toString('utf8')
    this.settle({
      status: this.status,
      error: null,
      response: whole && body.length <= RESPONSE_KEPT_BYTES ? text : `${text}…`,
      retryAfterMs: parseRetryAfter(headers['retry-after'], Date.now()),
      ...(input.responseHeader ? { header: first(headers[input.responseHeader]) } : {}),
    })
  }

  /** Settles with what was read and drops the connection with the rest of the body. */
  private stopReading(controller: Dispatcher.DispatchController | undefined): void {
    this.succeed(false)
    controller?.abort(new Error('the rest of the response body is not read'))
  }

  /** The status line came and the body has not ended in the same read: bound the time it may take. */
  private awaitBody(): void {
    if (this.settled) return
    const left = this.input.timeoutMs - (performance.now() - this.started)
    if (left <= RESPONSE_BODY_WAIT_MS) return // the attempt's own timer comes first
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.stopReading(this.controller), RESPONSE_BODY_WAIT_MS)
  }

  private timeout(): void {
    // The status line came (the body is still being read): it stands.
    if (this.status !== 0) {
      this.stopReading(this.controller)
      return
    }
    this.timedOut = true
    this.fail(undefined)
    this.controller?.abort(this.timeoutError())
  }

  private timeoutError(): Error {
    return new Error(`timed out after ${this.input.timeoutMs} ms`)
  }

  private settle(result: Omit<PostResult, 'at' | 'duration_ms'>): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    this.chunks = []
    this.resolve({ at: this.at, duration_ms: performance.now() - this.started, ...result })
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function describe(error: unknown): string {
  const code = (error as { code?: string } | undefined)?.code
  const message = error instanceof Error ? error.message : String(error)
  return code && !message.includes(code) ? `${code}: ${message}` : message
}
