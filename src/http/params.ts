import { errors } from '../core/errors.ts'

/** A request's query parameters as parsed: a parameter given more than once is an array. */
export type Query = Record<string, string | string[] | undefined>

/**
 * A query parameter as text, or undefined when absent. Given more than once (`?after=a&after=b`), it
 * is a 400 naming it: an array would otherwise reach code, or SQLite, that expects one string.
 */
export function stringParam(query: Query, name: string): string | undefined {
  const value = query[name]
  if (value === undefined || typeof value === 'string') return value
  throw errors.invalidRequest(`"${name}" is given more than once; give it once.`, name)
}

/** A whole-number query parameter in [min, max], or `fallback` when absent; otherwise a 400 naming it. */
export function integerParam(query: Query, name: string, fallback: number, min: number, max: number): number {
  const text = stringParam(query, name)
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
