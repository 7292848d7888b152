import assert from 'node:assert/strict'
import { copyFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type ServerProcess, spawnServer, tempDir, until } from '../helpers.ts'
import { h1fetch, h2fetch, h2session, h2stream, handshake, makeCert, type TestCert } from './clients.ts'

const SSE = { accept: 'text/event-stream' }
const JSON_BODY = { 'content-type': 'application/json' }

describe('certificate reload on SIGHUP', () => {
  let dir: string
  let first: TestCert
  let second: TestCert
  let certFile: string
  let keyFile: string
  let server: ServerProcess
  before(async () => {
    dir = await tempDir()
    first = makeCert(dir, 'first')
    second = makeCert(dir, 'second')
    // The files the server is given: the first pair now, the second copied over them later.
    certFile = join(dir, 'live.crt')
    keyFile = join(dir, 'live.key')
    await copyFile(first.certFile, certFile)
    await copyFile(first.keyFile, keyFile)
    server = await spawnServer(['--data', join(dir, 'data'), '--tls-cert', certFile, '--tls-key', keyFile])
  })
  after(async () => {
    server.child.kill('SIGKILL')
    await server.exited
    await rm(dir, { recursive: true, force: true })
  })

  test('new handshakes get the new certificate, a stream opened before keeps streaming; a bad file keeps it', async () => {
    assert.match(server.url, /^https:/)
    assert.equal((await handshake(server.url)).fingerprint, first.fingerprint)
    const session = h2session(server.url, first.cert)
    try {
      const stream = await h2stream(session, '/v1/topics/reload/events', SSE)
      assert.equal(stream.status, 200)

      await copyFile(second.certFile, certFile)
      await copyFile(second.keyFile, keyFile)
      server.child.kill('SIGHUP')
      await until(
        'the reload',
        () => server.output().includes('TLS certificate reloaded') || undefined,
        10_000,
      )
      const seen = await handshake(server.url)
      assert.equal(seen.fingerprint, second.fingerprint)
      assert.equal(seen.alpn, 'h2', 'ALPN still offers h2 after the reload')
      assert.ok(!server.output().includes('PRIVATE KEY'), 'no key material in the log')

      // Published over a new HTTP/1.1 connection trusting the new certificate only.
      const published = await h1fetch(`${server.url}/v1/topics/reload/events`, second.cert, {
        method: 'POST',
        headers: JSON_BODY,
        body: JSON.stringify({ type: 'after-reload', data: 1 }),
      })
      assert.equal(published.status, 201, published.body)
      await stream.until(() => stream.sse().length === 1)
      assert.equal(stream.ended, false)

      // A bad certificate file: the reload fails, is logged, and the second certificate stays.
      await writeFile(certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n')
      server.child.kill('SIGHUP')
      await until(
        'the failed reload',
        () => server.output().includes('TLS reload failed') || undefined,
        10_000,
      )
      assert.equal(server.child.exitCode, null, 'still running')
      assert.equal((await handshake(server.url)).fingerprint, second.fingerprint)
      // A missing key file too.
      await rm(keyFile)
      server.child.kill('SIGHUP')
      await until(
        'the second failed reload',
        () => server.output().split('TLS reload failed').length === 3 || undefined,
        10_000,
      )
      assert.equal((await handshake(server.url)).fingerprint, second.fingerprint)
      assert.ok(!server.output().includes('PRIVATE KEY'), 'no key material in the log')
      // The old session still answers, on the certificate it was made with.
      assert.equal((await h2fetch(session, '/healthz')).status, 200)
      await h1fetch(`${server.url}/v1/topics/reload/events`, second.cert, {
        method: 'POST',
        headers: JSON_BODY,
        body: JSON.stringify({ type: 'after-bad-reload', data: 2 }),
      })
      await stream.until(() => stream.sse().length === 2)
      stream.close()
    } finally {
      session.destroy()
    }
  })
})
