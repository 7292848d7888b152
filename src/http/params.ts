import { errors } from '../core/errors.ts'

/** A whole-number query parameter in [min, max], or `fallback` when absent; otherwise a 400 naming it. */
export function integerParam(
  query: Record<string, string | undefined>,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const text = query[name]
  if (text === undefined || text === '') return fallback
  return wholeNumber(text, name, min, max)
}

/** `text` as a whole number in [min, max], or a 400 naming `name` (a parameter or a header). */
export function wholeNumber(text: string, name: string, min: number, max: number): number {
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw errors.invalidRequest(`"${name}" must be a whole number from ${min} to ${max}.`, name)
  }
  return value
}

/** The largest seq a cursor may name. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER
