/**
 * The one catalogue of Herald's errors. Every failure a client can see is created here, with a stable
 * code, an HTTP status and a title; the HTTP layer renders it as RFC 9457 problem+json with
 * `type: urn:herald:problem:<code>`. docs/errors.md lists the same codes (a test keeps them in sync).
 */

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  code: string
  /** The request field that caused the error, when there is one (a JSON pointer-ish path or a name). */
  field?: string
}

export class HeraldError extends Error {
  readonly code: string
  readonly status: number
  readonly title: string
  readonly field: string | undefined
  /** Extra response headers, e.g. Retry-After or WWW-Authenticate. */
  readonly headers: Record<string, string>
  /** More members of the problem (RFC 9457 extensions), such as a schema mismatch's `errors`. */
  members: Record<string, unknown> | undefined

  constructor(
    code: string,
    status: number,
    title: string,
    detail: string,
    field?: string,
    headers: Record<string, string> = {},
  ) {
    super(detail)
    this.name = 'HeraldError'
    this.code = code
    this.status = status
    this.title = title
    this.field = field
    this.headers = headers
  }

  /** Adds members to the problem this error renders as (never the standard ones). */
  with(members: Record<string, unknown>): this {
    this.members = { ...this.members, ...members }
    return this
  }

  toProblem(): ProblemBody {
    const body: ProblemBody = {
      ...this.members,
      type: `urn:herald:problem:${this.code}`,
      title: this.title,
      status: this.status,
      detail: this.message,
      code: this.code,
    }
    if (this.field !== undefined) body.field = this.field
    return body
  }
}

interface ErrorFactory {
  (detail: string, field?: string, headers?: Record<string, string>): HeraldError
  readonly code: string
  readonly status: number
  readonly title: string
}

function define(code: string, status: number, title: string): ErrorFactory {
  const factory = (detail: string, field?: string, headers?: Record<string, string>) =>
    new HeraldError(code, status, title, detail, field, headers)
  return Object.assign(factory, { code, status, title })
}

export const errors = {
  invalidJson: define('invalid-json', 400, 'Malformed JSON'),
  invalidRequest: define('invalid-request', 400, 'Invalid request'),
  invalidTopic: define('invalid-topic', 400, 'Invalid topic name'),
  invalidEvent: define('invalid-event', 422, 'Invalid event'),
  schemaMismatch: define('schema-mismatch', 422, "Event data does not match its type's schema"),
  unregisteredType: define('unregistered-type', 422, 'Event type not registered'),
  unauthorized: define('unauthorized', 401, 'Authentication required'),
  forbidden: define('forbidden', 403, 'Forbidden'),
  notFound: define('not-found', 404, 'Not found'),
  methodNotAllowed: define('method-not-allowed', 405, 'Method not allowed'),
  notAcceptable: define('not-acceptable', 406, 'Not acceptable'),
  targetNotAllowed: define('target-not-allowed', 422, 'Target URL not allowed'),
  invalidSecret: define('invalid-secret', 422, 'Invalid webhook secret'),
  hookVerificationFailed: define('hook-verification-failed', 422, 'Hook verification failed'),
  idempotencyKeyReused: define('idempotency-key-reused', 422, 'Idempotency key reused with another request'),
  requestTimeout: define('request-timeout', 408, 'Request timeout'),
  payloadTooLarge: define('payload-too-large', 413, 'Request body too large'),
  headersTooLarge: define('headers-too-large', 431, 'Request header fields too large'),
  unsupportedMediaType: define('unsupported-media-type', 415, 'Unsupported media type'),
  rateLimited: define('rate-limited', 429, 'Too many requests'),
  unavailable: define('unavailable', 503, 'Service unavailable'),
  internal: define('internal', 500, 'Internal server error'),
} as const

/**
 * Whether `error` is a 503: the store out of reach (or the server draining). A state that passes,
 * which /readyz reports, not a fault of the work that met it.
 */
export function isUnavailable(error: unknown): error is HeraldError {
  return error instanceof HeraldError && error.status === 503
}

/**
 * Logs a failure of background work (claims, settlements, maintenance): a 503 as a warning with its
 * reason and no stack (an outage is reported elsewhere, and passes); anything else as an error.
 */
export function logFailure(
  logger: { warn(fields: object, message: string): void; error(fields: object, message: string): void },
  error: unknown,
  fields: Record<string, unknown>,
  message: string,
): void {
  if (isUnavailable(error)) logger.warn({ ...fields, reason: error.message }, message)
  else logger.error({ ...fields, err: error }, message)
}
