/** Full-jitter exponential back-off: a random delay up to `base * 2^attempt`, capped. */
export function backoff(attempt: number, base = 500, cap = 30_000): number {
  return Math.random() * Math.min(cap, base * 2 ** Math.min(attempt, 16))
}

/** A JWT's `exp` in ms, read without verifying (the server verifies); undefined for keys and opaque tokens. */
export function tokenExpiry(token: string): number | undefined {
  const part = token.split('.')[1]
  if (token.split('.').length !== 3 || part === undefined) return undefined
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'))
    const exp = (JSON.parse(json) as { exp?: unknown }).exp
    return typeof exp === 'number' ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}

/**
 * When to ask for a fresh token: 30 s before `exp`, or at half of the remaining life when that is
 * shorter (short-lived tokens). Undefined when the token does not say when it expires.
 */
export function refreshDelay(token: string, now = Date.now()): number | undefined {
  const exp = tokenExpiry(token)
  if (exp === undefined) return undefined
  const left = exp - now
  return Math.max(0, left > 60_000 ? left - 30_000 : left / 2)
}
