import { isUtf8 } from 'node:buffer'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { errors } from '../core/errors.ts'

/** Bodies parsed as JSON: plain JSON, and CloudEvents structured mode (one event or a batch). */
const JSON_TYPES = ['application/json', 'application/cloudevents+json', 'application/cloudevents-batch+json']

/**
 * How request bodies become values. JSON is checked to be UTF-8 (RFC 8259 §8.1) before it is parsed:
 * a decoder would otherwise turn every byte it cannot read into U+FFFD, and Herald would store data
 * other than what was sent. Every other media type arrives as bytes (CloudEvents binary mode carries
 * data of any type, and keeps what is not UTF-8 text as data_base64); Fastify's text/plain parser is
 * removed for the same reason as above.
 */
export function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'buffer' }, (_request: FastifyRequest, body, done) => {
    const bytes = body as Buffer
    if (bytes.length === 0) {
      done(errors.invalidJson('The body is empty, but its Content-Type says it is JSON.'), undefined)
      return
    }
    if (!isUtf8(bytes)) {
      done(errors.invalidJson('The body is not valid UTF-8, which JSON must be.'), undefined)
      return
    }
    let value: unknown
    try {
      value = JSON.parse(bytes.toString('utf8'))
    } catch {
      done(errors.invalidJson('The body is not valid JSON.'), undefined)
      return
    }
    done(null, value)
  })
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))
}
