// The events of the dispatch benchmark (bench/dispatch.ts): what is published to Herald, and the
// body Herald then delivers for it, which the bare undici loop sends as is (same shape, same size).
import { randomBytes } from 'node:crypto'

export const TOPIC = 'bench'
const SOURCE = '/bench/shop'

/** The `data` of event number `seq` (1-based). */
function data(seq: number) {
  return {
    order: seq,
    total: 99.5,
    currency: 'EUR',
    items: [{ sku: 'SKU-1042', quantity: 2, price: 49.75 }],
  }
}

/** What the benchmark publishes to Herald (Herald adds specversion, id, time, datacontenttype). */
export function publishedEvent(seq: number) {
  return { type: 'order.created', source: SOURCE, data: data(seq) }
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

function fakeUlid(): string {
  let id = ''
  for (const byte of randomBytes(26)) id += CROCKFORD[byte & 31]
  return id
}

export interface DeliveredEvent {
  id: string
  body: string
}

/**
 * The body Herald delivers for event `seq`, as Herald builds it (src/core/event.ts prepareEvent and
 * withPosition): the CloudEvent in that key order, then `topic` and `seq`.
 */
export function deliveredEvent(seq: number, time = new Date()): DeliveredEvent {
  const id = fakeUlid()
  const event = {
    specversion: '1.0',
    id,
    source: SOURCE,
    type: 'order.created',
    time: time.toISOString(),
    datacontenttype: 'application/json',
    data: data(seq),
  }
  const body = JSON.stringify(event)
  return { id, body: `${body.slice(0, -1)},"topic":${JSON.stringify(TOPIC)},"seq":${seq}}` }
}
