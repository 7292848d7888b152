import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { StoredEvent } from '../../src/core/event.ts'
import { ASCII_SLACK, BatchFrameCache, writeAsciiJson } from '../../src/streams/frame-cache.ts'
import { publish, startTestServer, type TestServer } from '../helpers.ts'

/**
 * Frames and poll answers are sized as if the stored JSON were ASCII, and built again exactly when it
 * is not (src/streams/frame-cache.ts writeAsciiJson): text of every UTF-8 length must come out
 * byte-identical, wherever it falls in a batch, the last event (where a buffer sized for ASCII runs out)
 * included.
 */

// 2-, 3- and 4-byte characters (a surrogate pair), each alone and among ASCII.
const TEXTS = ['plain', 'café', '€', '😀', 'a😀b', 'ü€😀', 'x'.repeat(40)]

const event = (seq: number, data: string): StoredEvent => ({
  topic: 't',
  seq,
  json: JSON.stringify({ data, seq }),
})

describe('frames of JSON that is not ASCII', () => {
  test('writeAsciiJson writes ASCII, and refuses anything else even where the buffer runs out', () => {
    for (const text of ['', 'a', '{"a":1}', ...TEXTS]) {
      const json = JSON.stringify(text)
      const ascii = Buffer.byteLength(json) === json.length
      // Exactly the room writeAsciiJson is given for the last JSON of a buffer, and more.
      for (const room of [json.length + ASCII_SLACK, json.length + ASCII_SLACK + 8, 3 * json.length + 8]) {
        const target = Buffer.alloc(room + 3)
        const end = writeAsciiJson(target, json, 3)
        if (ascii) {
          assert.equal(end, 3 + json.length)
          assert.equal(target.toString('utf8', 3, end), json)
        } else assert.equal(end, -1, `${json} in ${room} bytes`)
      }
    }
  })

  test('a batch of SSE, named SSE and NDJSON frames is its text in UTF-8, wherever the other characters are', () => {
    const sse = new BatchFrameCache({ before: 'id: ', after: '\ndata: ', tail: '\n\n' })
    const named = new BatchFrameCache({ head: (each) => `id: ${each.seq}\nevent: ê\ndata: `, tail: '\n\n' })
    const ndjson = new BatchFrameCache({ tail: '\n' })
    const batches: string[][] = [[]]
    for (const text of TEXTS) {
      batches.push([text], ['plain', text], [text, 'plain'], ['plain', text, 'plain', 'plain'])
    }
    batches.push(TEXTS, [...TEXTS].reverse())
    let seq = 7
    for (const texts of batches) {
      const events = texts.map((text) => event(seq++, text))
      assert.deepEqual(
        sse.get(events),
        Buffer.from(events.map((e) => `id: ${e.seq}\ndata: ${e.json}\n\n`).join('')),
      )
      assert.deepEqual(
        named.get(events),
        Buffer.from(events.map((e) => `id: ${e.seq}\nevent: ê\ndata: ${e.json}\n\n`).join('')),
      )
      assert.deepEqual(ndjson.get(events), Buffer.from(events.map((e) => `${e.json}\n`).join('')))
    }
  })
})

describe('replay of JSON that is not ASCII: SSE, NDJSON and polls carry the stored bytes', () => {
  let server: TestServer
  // Published in batches, so that pages and batches start and end on every kind of text.
  const published = [...TEXTS, 'plain', ...[...TEXTS].reverse(), 'é']
  before(async () => {
    server = await startTestServer()
    for (const batch of [published.slice(0, 3), published.slice(3, 10), published.slice(10)]) {
      const response = await publish(
        server.url,
        'utf',
        batch.map((data) => ({ type: 'text', data })),
      )
      assert.equal(response.status, 201, await response.text())
    }
  })
  after(() => server.close())

  /** Each event's JSON as the server sent it, checked against its data and its own re-serialization. */
  function check(jsons: Buffer[]): void {
    assert.deepEqual(
      jsons.map((json) => (JSON.parse(json.toString('utf8')) as { data: string }).data),
      published,
    )
    for (const json of jsons) {
      // Herald stores JSON.stringify's output: parsing and serializing again gives the same bytes.
      assert.deepEqual(json, Buffer.from(JSON.stringify(JSON.parse(json.toString('utf8')))))
    }
  }

  /** The bytes of a stream from seq 0 until `frames` separators came. */
  async function streamBytes(accept: string, separator: string, frames: number): Promise<Buffer> {
    const controller = new AbortController()
    const response = await fetch(`${server.url}/v1/topics/utf/events?after=0`, {
      headers: { accept },
      signal: controller.signal,
    })
    assert.equal(response.status, 200)
    const reader = response.body!.getReader()
    let bytes = Buffer.alloc(0)
    const count = (data: Buffer) => data.toString('latin1').split(separator).length - 1
    while (count(bytes) < frames) {
      const { value, done } = await reader.read()
      if (done) break
      bytes = Buffer.concat([bytes, value])
    }
    controller.abort()
    await reader.cancel().catch(() => undefined)
    return bytes
  }

  test('SSE', async () => {
    const bytes = await streamBytes('text/event-stream', '\n\n', published.length + 1)
    const jsons: Buffer[] = []
    const marker = Buffer.from('\ndata: ')
    for (let at = bytes.indexOf(marker); at !== -1; at = bytes.indexOf(marker, at + 1)) {
      const start = at + marker.length
      jsons.push(bytes.subarray(start, bytes.indexOf('\n\n', start)))
    }
    check(jsons)
  })

  test('NDJSON', async () => {
    const bytes = await streamBytes('application/x-ndjson', '\n', published.length)
    const jsons: Buffer[] = []
    let start = 0
    for (let end = bytes.indexOf(10); end !== -1; start = end + 1, end = bytes.indexOf(10, start)) {
      if (end > start) jsons.push(bytes.subarray(start, end))
    }
    check(jsons)
  })

  test('short polls, pages ending on each event', async () => {
    for (const limit of [1, 2, 3, published.length]) {
      const jsons: Buffer[] = []
      let after = 0
      while (after < published.length) {
        const response = await fetch(`${server.url}/v1/topics/utf/events?after=${after}&limit=${limit}`)
        assert.equal(response.status, 200)
        const body = Buffer.from(await response.arrayBuffer())
        const page = JSON.parse(body.toString('utf8')) as { events: unknown[]; next: number }
        // The answer is the stored JSON joined as it is: its events serialized again give its bytes.
        assert.deepEqual(
          body,
          Buffer.from(
            `{"events":[${page.events.map((each) => JSON.stringify(each)).join(',')}],"next":${page.next}}`,
          ),
        )
        for (const each of page.events) jsons.push(Buffer.from(JSON.stringify(each)))
        after = page.next
      }
      check(jsons)
    }
  })
})
