import type { Agent, Dispatcher } from 'undici'
import type { AttemptResult } from '../store/store.ts'
import { parseRetryAfter } from './retry.ts'

/** How much of a receiver's answer is kept in the attempts log. */
export const RESPONSE_KEPT_BYTES = 2048
/** How much of it is read at most (the rest is dropped with the connection). */
const RESPONSE_READ_BYTES = 64 * 1024

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
 * `timeoutMs` in all (connecting, waiting, reading), keeps the start of the response body.
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
  private readonly timer: NodeJS.Timeout
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
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
    this.size += chunk.length
    // Enough kept: what is left is not read, the connection goes with it.
    if (this.size >= RESPONSE_READ_BYTES) {
      this.succeed()
      controller.abort(new Error('response body past the read limit'))
    }
  }

  onResponseEnd(): void {
    this.succeed()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.fail(error)
  }

  fail(error: unknown): void {
    this.settle({
      status: null,
      error: this.timedOut ? this.timeoutError().message : describe(error),
      response: null,
      retryAfterMs: undefined,
    })
  }

  private succeed(): void {
    const { headers, input } = this
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
    const text = body.subarray(0, RESPONSE_KEPT_BYTES).toString('utf8')
    this.settle({
      status: this.status,
      error: null,
      response: body.length > RESPONSE_KEPT_BYTES ? `${text}…` : text,
      retryAfterMs: parseRetryAfter(headers['retry-after'], Date.now()),
      ...(input.responseHeader ? { header: first(headers[input.responseHeader]) } : {}),
    })
  }

  private timeout(): void {
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
