import { errors } from './errors.ts'
import { validateTopic } from './topic.ts'

/**
 * A multi-topic stream's cursor: every topic's position in one opaque token (base64url of a JSON
 * object `{topic: seq}`). Clients store it as an SSE `id` and send it back as `Last-Event-ID`.
 */
export type Positions = Map<string, number>

export function encodeCursor(positions: Positions): string {
  return Buffer.from(JSON.stringify(Object.fromEntries(positions))).toString('base64url')
}

export function decodeCursor(token: string, field: string): Positions {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'))
  } catch {
    throw errors.invalidRequest('This is not a cursor Herald issued.', field)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw errors.invalidRequest('This is not a cursor Herald issued.', field)
  }
  const positions: Positions = new Map()
  for (const [topic, seq] of Object.entries(parsed)) {
    validateTopic(topic)
    if (!Number.isSafeInteger(seq) || (seq as number) < 0) {
      throw errors.invalidRequest('This is not a cursor Herald issued.', field)
    }
    positions.set(topic, seq as number)
  }
  return positions
}
