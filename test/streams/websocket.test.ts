import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { CLOSE_SLOW_CONSUMER } from '../../src/streams/websocket.ts'
import { publish, sleep, startTestServer, type TestServer } from '../helpers.ts'
import { range, seqs, WsClient } from './clients.ts'

function wsUrl(server: TestServer, query = ''): string {
  return `${server.url.replace('http', 'ws')}/v1/ws${query}`
}

describe('WebSocket pub/sub', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ heartbeatMs: 100 })
  })
  after(() => server.close())

  test('subscribe with after: subscribed (ref echoed), the backlog, then live; the subprotocol', async () => {
    await publish(server.url, 'w1', [{ type: 'a' }, { type: 'b' }, { type: 'c' }])
    const client = await WsClient.open(wsUrl(server), ['herald.v1'])
    try {
      assert.equal(client.ws.protocol, 'herald.v1')
      client.send({ op: 'subscribe', topic: 'w1', after: 1, ref: 'r1' })
      assert.deepEqual(await client.reply('r1'), { op: 'subscribed', topic: 'w1', ref: 'r1' })
      await client.until(() => client.events('w1').length === 2)
      await publish(server.url, 'w1', { type: 'd' })
      await client.until(() => client.events('w1').length === 3)
      assert.deepEqual(seqs(client.events('w1')), [2, 3, 4])
      assert.ok(
        client.messages.findIndex((m) => m['op'] === 'subscribed') <
          client.messages.findIndex((m) => m['op'] === 'event'),
      )
    } finally {
      await client.close()
    }
  })

  test('several topics on one socket; unsubscribe stops one of them', async () => {
    const client = await WsClient.open(wsUrl(server))
    try {
      client.send({ op: 'subscribe', topic: 'wa', ref: 1 })
      client.send({ op: 'subscribe', topic: 'wb', ref: 2 })
      await client.reply(1)
      await client.reply(2)
      await publish(server.url, 'wa', { type: 'x' })
      await publish(server.url, 'wb', { type: 'y' })
      await client.until(() => client.events().length === 2)
      client.send({ op: 'unsubscribe', topic: 'wa', ref: 3 })
      assert.deepEqual(await client.reply(3), { op: 'unsubscribed', topic: 'wa', ref: 3 })
      await publish(server.url, 'wa', { type: 'x2' })
      await publish(server.url, 'wb', { type: 'y2' })
      await client.until(() => client.events('wb').length === 2)
      await sleep(100)
      assert.equal(client.events('wa').length, 1)
    } finally {
      await client.close()
    }
  })

  test('publish over the socket: published with the stored event, delivered to subscribers', async () => {
    const publisher = await WsClient.open(wsUrl(server))
    const subscriber = await WsClient.open(wsUrl(server))
    try {
      subscriber.send({ op: 'subscribe', topic: 'wpub', after: 0, ref: 's' })
      await subscriber.reply('s')
      publisher.send({ op: 'publish', topic: 'wpub', type: 'chat.message', data: { text: 'hi' }, ref: 'p1' })
      const reply = await publisher.reply('p1')
      assert.equal(reply['op'], 'published')
      const event = reply['event'] as { seq: number; type: string; data: unknown }
      assert.deepEqual([event.seq, event.type, event.data], [1, 'chat.message', { text: 'hi' }])
      await subscriber.until(() => subscriber.events('wpub').length === 1)
      assert.deepEqual(subscriber.events('wpub')[0], event)
    } finally {
      await publisher.close()
      await subscriber.close()
    }
  })

  test('bad messages get problem-style errors and the connection stays open', async () => {
    const client = await WsClient.open(wsUrl(server))
    try {
      client.ws.send('{not json')
      await client.until(() => client.messages.length === 1)
      assert.deepEqual(
        [client.messages[0]!['op'], client.messages[0]!['status'], client.messages[0]!['title']],
        ['error', 400, 'Malformed JSON'],
      )
      client.send({ op: 'dance', ref: 'e1' })
      assert.equal((await client.reply('e1'))['status'], 400)
      client.send({ op: 'subscribe', topic: 'bad topic', ref: 'e2' })
      assert.equal((await client.reply('e2'))['status'], 400)
      client.send({ op: 'subscribe', topic: 'ok', after: -1, ref: 'e3' })
      assert.equal((await client.reply('e3'))['field'], 'after')
      client.send({ op: 'publish', topic: 'ok', data: 1, ref: 'e4' })
      const missingType = await client.reply('e4')
      assert.deepEqual([missingType['status'], missingType['field']], [422, 'type'])
      client.send({ op: 'publish', topic: 'herald.system', type: 'hook.disabled', ref: 'e5' })
      assert.equal((await client.reply('e5'))['status'], 403, 'herald.* topics are written by Herald only')
      const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`
      client.ws.send(`{"op":"publish","topic":"ok","type":"t","data":${deep},"ref":"e6"}`)
      const tooDeep = await client.reply('e6')
      assert.deepEqual([tooDeep['status'], tooDeep['field']], [422, 'data'])
      client.ws.send('{"op":"publish","topic":"ok","type":"t","data":{"n":1e400},"ref":"e8"}')
      const infinite = await client.reply('e8')
      assert.deepEqual([infinite['status'], infinite['field']], [422, 'data'])
      client.ws.send(`{"op":${deep},"ref":"e7"}`)
      assert.deepEqual([(await client.reply('e7'))['status'], client.messages.at(-1)!['field']], [400, 'op'])
      client.send({ op: 'subscribe', topic: 'ok', ref: 'fine' })
      assert.equal((await client.reply('fine'))['op'], 'subscribed')
      assert.equal(client.ws.readyState, WebSocket.OPEN)
    } finally {
      await client.close()
    }
  })

  test('resume: resubscribing with after gets exactly what was missed, in order', async () => {
    await publish(server.url, 'wres', [{ type: 'a' }, { type: 'b' }])
    const first = await WsClient.open(wsUrl(server))
    first.send({ op: 'subscribe', topic: 'wres', after: 0 })
    await first.until(() => first.events().length === 2)
    const last = first.events().at(-1)!.seq
    await first.close()
    await publish(server.url, 'wres', [{ type: 'c' }, { type: 'd' }, { type: 'e' }])
    const second = await WsClient.open(wsUrl(server))
    try {
      second.send({ op: 'subscribe', topic: 'wres', after: last })
      await second.until(() => second.events().length === 3)
      await publish(server.url, 'wres', { type: 'f' })
      await second.until(() => second.events().length === 4)
      await sleep(50)
      assert.deepEqual(seqs(second.events()), range(3, 6))
    } finally {
      await second.close()
    }
  })

  test('a peer that answers no pings is closed after missing two', async () => {
    const client = new WebSocket(wsUrl(server), { autoPong: false })
    let pings = 0
    client.on('ping', () => pings++) // before 'open': the shared heartbeat may tick at any moment
    await once(client, 'open')
    const [code] = (await once(client, 'close')) as [number]
    assert.ok(pings >= 2, `pinged ${pings} times`)
    assert.equal(code, 1006, 'terminated without a close frame')
  })
})

describe('WebSocket slow consumers', () => {
  let server: TestServer
  before(async () => {
    // Long heartbeats: the stalled client cannot answer pings, and must be cut for its backlog.
    server = await startTestServer({ heartbeatMs: 60_000 })
  })
  after(() => server.close())

  test('a stalled reader is closed with the slow-consumer code; a fast one keeps up', async () => {
    const stalled = await rawUpgrade(server)
    stalled.write(maskedFrame(0x1, Buffer.from(JSON.stringify({ op: 'subscribe', topic: 'wslow' }))))
    await sleep(100)
    stalled.pause()
    const fast = await WsClient.open(wsUrl(server))
    fast.send({ op: 'subscribe', topic: 'wslow', ref: 'f' })
    await fast.reply('f')
    const big = 'y'.repeat(64 * 1024)
    try {
      // 400 × 64 KiB = 25 MiB: past what the kernel's socket buffers absorb, and then Herald's.
      for (let i = 0; i < 400; i += 10) {
        await publish(
          server.url,
          'wslow',
          Array.from({ length: 10 }, () => ({ type: 'big', data: big })),
        )
      }
      await fast.until(() => fast.events().length === 400, 30_000)
      assert.deepEqual(seqs(fast.events()), range(1, 400))
      const metrics = await (await fetch(`${server.url}/metrics`)).text()
      assert.match(metrics, /^herald_slow_consumer_disconnects_total\{protocol="ws"\} 1$/m)
    } finally {
      stalled.destroy()
      await fast.close()
    }
    assert.equal(CLOSE_SLOW_CONSUMER, 4008)
  })
})

describe('WebSocket auth', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ apiKey: 'ws-key' })
  })
  after(() => server.close())

  test('a wrong key in the query is refused at the handshake with 401', async () => {
    const client = new WebSocket(wsUrl(server, '?access_token=nope'))
    const [, response] = (await once(client, 'unexpected-response')) as [unknown, { statusCode: number }]
    assert.equal(response.statusCode, 401)
  })

  test('the key in the query, or in a first auth message', async () => {
    const viaQuery = await WsClient.open(wsUrl(server, '?access_token=ws-key'))
    viaQuery.send({ op: 'subscribe', topic: 't', ref: 1 })
    assert.equal((await viaQuery.reply(1))['op'], 'subscribed')
    await viaQuery.close()
    const viaMessage = await WsClient.open(wsUrl(server))
    viaMessage.send({ op: 'subscribe', topic: 't', ref: 'early' })
    assert.equal((await viaMessage.reply('early'))['status'], 401)
    viaMessage.send({ op: 'auth', token: 'wrong', ref: 'bad' })
    assert.equal((await viaMessage.reply('bad'))['status'], 401)
    viaMessage.send({ op: 'auth', token: 'ws-key', ref: 'good' })
    assert.equal((await viaMessage.reply('good'))['op'], 'authenticated')
    viaMessage.send({ op: 'subscribe', topic: 't', ref: 2 })
    assert.equal((await viaMessage.reply(2))['op'], 'subscribed')
    await viaMessage.close()
  })
})

// RFC 6455 conformance with raw bytes on a TCP socket.

async function rawUpgrade(server: TestServer, headers: Record<string, string> = {}): Promise<Socket> {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  await once(socket, 'connect')
  const lines = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    ...headers,
  }
  socket.write(
    `GET /v1/ws HTTP/1.1\r\n${Object.entries(lines)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`,
  )
  let head = ''
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer]
    head += chunk.toString('latin1')
  }
  ;(socket as Socket & { handshake?: string }).handshake = head
  return socket
}

/** Everything the server answers to a handshake it refuses, up to the close. */
async function refusedHandshake(server: TestServer, headers: Record<string, string>, method: string) {
  const socket = connect(Number(new URL(server.url).port), '127.0.0.1')
  await once(socket, 'connect')
  const lines = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    ...headers,
  }
  let answer = ''
  socket.on('data', (chunk: Buffer) => {
    answer += chunk.toString('latin1')
  })
  const closed = once(socket, 'close')
  socket.write(
    `${method} /v1/ws HTTP/1.1\r\n${Object.entries(lines)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`,
  )
  await closed
  return answer
}

function frame(opcode: number, payload: Buffer, { fin = true, mask = true, rsv = 0 } = {}): Buffer {
  const header = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
  const length = payload.length
  if (length < 126) header.push((mask ? 0x80 : 0) | length)
  else header.push((mask ? 0x80 : 0) | 126, length >> 8, length & 0xff)
  if (!mask) return Buffer.concat([Buffer.from(header), payload])
  const key = Buffer.from([1, 2, 3, 4])
  const masked = Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!))
  return Buffer.concat([Buffer.from(header), key, masked])
}

function maskedFrame(opcode: number, payload: Buffer): Buffer {
  return frame(opcode, payload)
}

/** Reads frames until the server's close frame; returns its code (or null if the TCP closed first). */
async function closeCode(socket: Socket): Promise<number | null> {
  let buffer = Buffer.alloc(0)
  const done = new Promise<number | null>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      while (buffer.length >= 2) {
        const opcode = buffer[0]! & 0x0f
        const length = buffer[1]! & 0x7f
        if (length > 125 || buffer.length < 2 + length) return
        if (opcode === 0x8) return resolve(length >= 2 ? buffer.readUInt16BE(2) : null)
        buffer = buffer.subarray(2 + length)
      }
    })
    socket.on('close', () => resolve(null))
  })
  return done
}

describe('RFC 6455 conformance (raw frames)', () => {
  let server: TestServer
  before(async () => {
    server = await startTestServer({ bodyLimitBytes: 1024 })
  })
  after(() => server.close())

  test('handshake: 101 with the Sec-WebSocket-Accept of RFC 6455 §1.3', async () => {
    const socket = await rawUpgrade(server)
    const head = (socket as Socket & { handshake?: string }).handshake!
    assert.match(head, /^HTTP\/1\.1 101/)
    assert.match(head, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i)
    assert.equal(
      createHash('sha1')
        .update('dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11')
        .digest('base64'),
      's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
    )
    socket.destroy()
  })

  test('a version other than 13 is refused with Sec-WebSocket-Version: 13', async () => {
    const socket = await rawUpgrade(server, { 'Sec-WebSocket-Version': '8' })
    const head = (socket as Socket & { handshake?: string }).handshake!
    assert.match(head, /^HTTP\/1\.1 (400|426)/)
    assert.match(head, /Sec-WebSocket-Version: 13/i)
    socket.destroy()
  })

  test('a handshake without a key is a 400', async () => {
    const socket = await rawUpgrade(server, { 'Sec-WebSocket-Key': '' })
    assert.match((socket as Socket & { handshake?: string }).handshake!, /^HTTP\/1\.1 400/)
    socket.destroy()
  })

  test('every refused handshake is problem+json, the checks ws makes itself included', async () => {
    // ws answered these in text/html ("Invalid Upgrade header"…), unlike every other Herald error.
    const cases: Array<[string, Record<string, string>, number, string | undefined]> = [
      ['GET', { Upgrade: 'h2c' }, 400, 'Upgrade'],
      ['GET', { Upgrade: 'websocket, h2c' }, 400, 'Upgrade'],
      ['GET', { 'Sec-WebSocket-Key': '' }, 400, 'Sec-WebSocket-Key'],
      ['GET', { 'Sec-WebSocket-Key': 'not a key' }, 400, 'Sec-WebSocket-Key'],
      ['GET', { 'Sec-WebSocket-Protocol': 'a b' }, 400, 'Sec-WebSocket-Protocol'],
      ['POST', {}, 405, undefined],
    ]
    for (const [method, headers, status, field] of cases) {
      const answer = await refusedHandshake(server, headers, method)
      const what = `${method} ${JSON.stringify(headers)}: ${answer.slice(0, 300)}`
      assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), what)
      assert.match(answer, /\r\ncontent-type: application\/problem\+json\r\n/i, what)
      const problem = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>
      assert.equal(problem['status'], status, what)
      assert.equal(problem['field'], field, what)
      if (method === 'POST') assert.match(answer, /\r\nallow: GET\r\n/i, what)
    }
  })

  const violations: Array<[string, () => Buffer | Buffer[], number]> = [
    ['an unmasked client frame', () => frame(0x1, Buffer.from('{}'), { mask: false }), 1002],
    ['an RSV bit with no extension', () => frame(0x1, Buffer.from('{}'), { rsv: 4 }), 1002],
    ['a reserved opcode (3)', () => frame(0x3, Buffer.from('x')), 1002],
    ['a reserved control opcode (0xB)', () => frame(0xb, Buffer.from('x')), 1002],
    ['a control frame over 125 bytes', () => frame(0x9, Buffer.alloc(126)), 1002],
    ['a fragmented control frame', () => frame(0x9, Buffer.from('x'), { fin: false }), 1002],
    ['a continuation with no message started', () => frame(0x0, Buffer.from('x')), 1002],
    [
      'a new data frame in the middle of a message',
      () => [frame(0x1, Buffer.from('{'), { fin: false }), frame(0x1, Buffer.from('}'))],
      1002,
    ],
    ['invalid UTF-8 in a text message', () => frame(0x1, Buffer.from([0xc3, 0x28])), 1007],
    [
      'invalid UTF-8 across fragments',
      () => [frame(0x1, Buffer.from([0xf0, 0x9f]), { fin: false }), frame(0x0, Buffer.from([0x28, 0x28]))],
      1007,
    ],
    ['a binary message (Herald speaks JSON text)', () => frame(0x2, Buffer.from([1, 2, 3])), 1003],
    ['a message over the size limit', () => frame(0x1, Buffer.alloc(2000, 0x20)), 1009],
  ]
  for (const [name, build, code] of violations) {
    test(`${name} → close ${code}`, async () => {
      const socket = await rawUpgrade(server)
      const closed = closeCode(socket)
      const frames = build()
      for (const bytes of Array.isArray(frames) ? frames : [frames]) socket.write(bytes)
      assert.equal(await closed, code)
      socket.destroy()
    })
  }

  test('a ping is answered by a pong with the same payload, also between fragments', async () => {
    const socket = await rawUpgrade(server)
    const pong = new Promise<Buffer>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        if ((chunk[0]! & 0x0f) === 0xa) resolve(chunk.subarray(2, 2 + (chunk[1]! & 0x7f)))
      })
    })
    socket.write(frame(0x1, Buffer.from('{"op":'), { fin: false }))
    socket.write(frame(0x9, Buffer.from('hello')))
    socket.write(frame(0x0, Buffer.from('"dance"}')))
    assert.equal((await pong).toString(), 'hello')
    socket.destroy()
  })

  test('a close frame is answered with a close frame echoing the code', async () => {
    const socket = await rawUpgrade(server)
    const closed = closeCode(socket)
    const payload = Buffer.alloc(2)
    payload.writeUInt16BE(1000)
    socket.write(frame(0x8, payload))
    assert.equal(await closed, 1000)
    socket.destroy()
  })

  test('server frames are never masked', async () => {
    const socket = await rawUpgrade(server)
    const first = once(socket, 'data') as Promise<[Buffer]>
    socket.write(frame(0x1, Buffer.from('{"op":"subscribe","topic":"m","ref":1}')))
    const [chunk] = await first
    assert.equal(chunk[1]! & 0x80, 0)
    socket.destroy()
  })
})
