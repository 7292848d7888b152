import type { FastifyInstance } from 'fastify'
import { assertUtf8Json, parseJsonBytes } from '../core/event.ts'

/** Bodies parsed as JSON: plain JSON, and CloudEvents structured mode (one event or a batch). */
const JSON_TYPES = ['application/json', 'application/cloudevents+json', 'application/cloudevents-batch+json']

/**
 * How request bodies become values. JSON must be UTF-8 and is checked before it is parsed (a charset
 * other than UTF-8 is a 415, invalid bytes a 400), so no event is stored with U+FFFD in place of what
 * was sent. `__proto__` keys stay plain own properties (JSON.parse); Herald copies no untrusted object
 * into another, so they are inert, and dropping them would alter events. Every other media type
 * arrives as bytes: CloudEvents binary mode carries data of any type, and keeps what is not UTF-8 text
 * as data_base64 (Fastify's own text/plain parser, which decodes whatever the charset, is removed).
 */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, (request, body, done) => {
    try {
      assertUtf8Json(request.headers['content-type'])
      done(null, parseJsonBytes(body as Buffer))
    } catch (error) {
      done(error as Error, undefined)
    }
  })
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
}
