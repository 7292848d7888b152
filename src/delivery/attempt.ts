import type { Agent } from 'undici'
import { request } from 'undici'
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
 */
export async function post(input: PostRequest): Promise<PostResult> {
  const at = Date.now()
  const started = performance.now()
  const signal = AbortSignal.timeout(input.timeoutMs)
  try {
    const response = await request(input.url, {
      method: 'POST',
      headers: input.headers,
      body: input.body,
      dispatcher: input.agent,
      signal,
    })
    // A short answer of known length (the usual "ok") is read whole; anything else up to the cap.
    const length = Number(response.headers['content-length'])
    const kept =
      length <= RESPONSE_KEPT_BYTES ? await response.body.text() : await readSome(response.body, signal)
    return {
      at,
      duration_ms: performance.now() - started,
      status: response.statusCode,
      error: null,
      response: kept,
      retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()),
      ...(input.responseHeader ? { header: first(response.headers[input.responseHeader]) } : {}),
    }
  } catch (error) {
    return {
      at,
      duration_ms: performance.now() - started,
      status: null,
      error: describe(error, signal, input.timeoutMs),
      response: null,
      retryAfterMs: undefined,
    }
  }
}

async function readSome(
  body: AsyncIterable<Buffer> & { destroy(): void },
  signal: AbortSignal,
): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    if (signal.aborted) break
    chunks.push(chunk)
    size += chunk.length
    if (size >= RESPONSE_READ_BYTES) {
      body.destroy()
      break
    }
  }
  const text = Buffer.concat(chunks).subarray(0, RESPONSE_KEPT_BYTES).toString('utf8')
  return size > RESPONSE_KEPT_BYTES ? `${text}…` : text
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function describe(error: unknown, signal: AbortSignal, timeoutMs: number): string {
  if (signal.aborted) return `timed out after ${timeoutMs} ms`
  const code = (error as { code?: string }).code
  const message = error instanceof Error ? error.message : String(error)
  return code && !message.includes(code) ? `${code}: ${message}` : message
}
