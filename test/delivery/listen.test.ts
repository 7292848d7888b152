import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { after, describe, test } from 'node:test'
import { request } from 'undici'
import { generateSecret, signedHeaders } from '../../src/delivery/signing.ts'
import { BIN, runCli } from '../helpers.ts'

interface Listener {
  child: ChildProcess
  url: string
  lines: string[]
  stderr: () => string
}

const started: ChildProcess[] = []

/** `herald listen` on a free loopback port; resolves once it says where it listens. */
function startListener(args: string[]): Promise<Listener> {
  const child = spawn(process.execPath, [BIN, 'listen', '--port', '0', ...args], {
    env: { PATH: process.env['PATH'] ?? '' },
  })
  started.push(child)
  const lines: string[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => lines.push(line))
  let stderr = ''
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (chunk) => {
      stderr += chunk
      const match = /listening on (http:\/\/\S+?)\/,/.exec(stderr)
      if (match) resolve({ child, url: match[1]!, lines, stderr: () => stderr })
    })
    child.on('exit', (code) => reject(new Error(`herald listen exited (${code}): ${stderr}`)))
  })
}

async function waitForLines(lines: string[], count: number): Promise<void> {
  const deadline = Date.now() + 10_000
  while (lines.length < count) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} lines: ${lines.join('\n')}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function post(url: string, body: string, headers: Record<string, string>) {
  const response = await request(url, { method: 'POST', body, headers })
  await response.body.dump()
  return response
}

const run = (args: string[]) => runCli(args)

const EVENT = { id: 'evt_1', type: 'order.created', topic: 'orders', seq: 7, data: { total: 99.5 } }
const BODY = JSON.stringify(EVENT)

describe('herald listen', () => {
  after(() => {
    for (const child of started) child.kill('SIGKILL')
  })

  test('verifies signatures: 200 and "verified" when right, 401 and "INVALID signature" when wrong', async () => {
    const secret = generateSecret()
    const listener = await startListener(['--secret', secret])
    assert.match(listener.stderr(), /verifying signatures/)

    const good = await post(`${listener.url}/hook`, BODY, signedHeaders('evt_1', BODY, [secret]))
    assert.equal(good.statusCode, 200)
    const wrong = await post(`${listener.url}/hook`, BODY, signedHeaders('evt_1', BODY, [generateSecret()]))
    assert.equal(wrong.statusCode, 401)
    const tampered = await post(
      `${listener.url}/hook`,
      BODY.replace('99.5', '0.5'),
      signedHeaders('evt_1', BODY, [secret]),
    )
    assert.equal(tampered.statusCode, 401)
    const stale = await post(
      `${listener.url}/hook`,
      BODY,
      signedHeaders('evt_1', BODY, [secret], Date.now() - 600_000),
    )
    assert.equal(stale.statusCode, 401)
    const unsigned = await post(`${listener.url}/hook`, BODY, { 'content-type': 'application/json' })
    assert.equal(unsigned.statusCode, 401)

    await waitForLines(listener.lines, 5)
    const [first, second, third, fourth, fifth] = listener.lines
    assert.match(first!, /^\d{4}-\d\d-\d\dT\S+Z \/hook evt_1 orders#7 order\.created verified -> 200$/)
    assert.match(
      second!,
      /^\S+ \/hook evt_1 orders#7 order\.created INVALID signature \(no signature matches\) -> 401$/,
    )
    assert.match(third!, /evt_1 orders#7 order\.created INVALID signature \(no signature matches\) -> 401$/)
    assert.match(fourth!, /INVALID signature \(webhook-timestamp is more than 5 minutes off\) -> 401$/)
    assert.match(
      fifth!,
      /^\S+ \/hook - orders#7 order\.created INVALID signature \(missing webhook-\* headers\) -> 401$/,
    )
  })

  test('accepts either secret of a rotation, and answers --status for a verified delivery', async () => {
    const old = generateSecret()
    const next = generateSecret()
    const listener = await startListener(['--secret', old, '--secret', next, '--status', '503'])
    const byOld = await post(listener.url, BODY, signedHeaders('evt_1', BODY, [old]))
    const byBoth = await post(listener.url, BODY, signedHeaders('evt_1', BODY, [old, next]))
    const wrong = await post(listener.url, BODY, signedHeaders('evt_1', BODY, [generateSecret()]))
    assert.deepEqual([byOld.statusCode, byBoth.statusCode, wrong.statusCode], [503, 503, 401])
    await waitForLines(listener.lines, 3)
    assert.match(listener.lines[0]!, /verified -> 503$/)
    assert.match(listener.lines[1]!, /verified -> 503$/)
    assert.match(listener.lines[2]!, /INVALID signature .* -> 401$/)
  })

  test('without --secret it prints deliveries unverified and says so; --body prints the body', async () => {
    const listener = await startListener(['--body'])
    assert.match(listener.stderr(), /NOT verifying signatures/)
    const response = await post(`${listener.url}/x`, BODY, { 'webhook-id': 'evt_1' })
    assert.equal(response.statusCode, 200)
    const other = await post(`${listener.url}/x`, 'not json', {})
    assert.equal(other.statusCode, 200)
    await waitForLines(listener.lines, 4)
    assert.match(listener.lines[0]!, / \/x evt_1 orders#7 order\.created unverified -> 200$/)
    assert.deepEqual(JSON.parse(listener.lines[1]!), EVENT)
    assert.match(listener.lines[2]!, / \/x - -#- - unverified -> 200$/)
    assert.equal(listener.lines[3], 'not json')
  })

  test('answers a REST Hooks handshake by echoing X-Hook-Secret, and only takes POST', async () => {
    const listener = await startListener(['--secret', generateSecret()])
    const handshake = await request(listener.url, { method: 'POST', headers: { 'x-hook-secret': 'abc123' } })
    await handshake.body.dump()
    assert.equal(handshake.statusCode, 200)
    assert.equal(handshake.headers['x-hook-secret'], 'abc123')
    const get = await request(listener.url)
    await get.body.dump()
    assert.equal(get.statusCode, 405)
    await waitForLines(listener.lines, 1)
    assert.match(listener.lines[0]!, /handshake: X-Hook-Secret echoed -> 200$/)
    assert.equal(listener.lines.length, 1)
  })

  test('SIGTERM stops it with exit 0', async () => {
    const listener = await startListener([])
    const exited = new Promise((resolve) => listener.child.on('exit', (code) => resolve(code)))
    listener.child.kill('SIGTERM')
    assert.equal(await exited, 0)
  })

  test('help, and refusals of bad options with exit 1', async () => {
    const help = await run(['listen', '--help'])
    assert.equal(help.code, 0)
    for (const option of ['--port', '--host', '--secret', '--status', '--body'])
      assert.ok(help.stdout.includes(option))
    assert.match((await run(['--help'])).stdout, /\blisten\b/)
    const noPort = await run(['listen'])
    assert.equal(noPort.code, 1)
    assert.match(noPort.stderr, /--port is required/)
    const badSecret = await run(['listen', '--port', '0', '--secret', 'whsec_tooshort'])
    assert.equal(badSecret.code, 1)
    assert.match(badSecret.stderr, /secret .*whsec_/)
    const badStatus = await run(['listen', '--port', '0', '--status', '99'])
    assert.equal(badStatus.code, 1)
    assert.match(badStatus.stderr, /--status/)
  })
})
