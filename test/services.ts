import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect as connectTcp } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { connect as connectNats } from '@nats-io/transport-node'
import { Redis } from 'ioredis'
import { sleep } from './helpers.ts'
import { freePort } from './postgres.ts'

/**
 * The buses of the cluster tests: the machine's shared Redis and NATS (127.0.0.1:6379 and :4222, or
 * HERALD_TEST_REDIS_URL and HERALD_TEST_NATS_URL), which a test only publishes and subscribes on
 * (channels of its own, never stopped); and private servers on spare ports, which a test may stop
 * and start again.
 */
export const TEST_REDIS_URL = process.env['HERALD_TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379'
export const TEST_NATS_URL = process.env['HERALD_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222'

const reachable = new Map<string, Promise<string | undefined>>()

/** Why the shared Redis cannot be used by the tests, or undefined when it can (asked once per process). */
export function redisMissing(url = TEST_REDIS_URL): Promise<string | undefined> {
  return once(`redis ${url}`, async () => {
    const client = new Redis(url, { lazyConnect: true, retryStrategy: () => null, connectTimeout: 3_000 })
    let cause: Error | undefined
    client.on('error', (error: Error) => (cause ??= error))
    try {
      await client.connect()
      await client.ping()
      return undefined
    } catch (error) {
      return `Redis is not reachable at ${url} (${(cause ?? (error as Error)).message}): start it with "redis-server --daemonize yes"`
    } finally {
      client.disconnect()
    }
  })
}

/** Why the shared NATS cannot be used by the tests, or undefined when it can (asked once per process). */
export function natsMissing(url = TEST_NATS_URL): Promise<string | undefined> {
  return once(`nats ${url}`, async () => {
    const { host } = new URL(url)
    try {
      const connection = await connectNats({ servers: host, timeout: 3_000, reconnect: false })
      await connection.close()
      return undefined
    } catch (error) {
      return `NATS is not reachable at ${url} (${(error as Error).message}): start it with "nats-server -a 127.0.0.1 &"`
    }
  })
}

function once(key: string, ask: () => Promise<string | undefined>): Promise<string | undefined> {
  let answer = reachable.get(key)
  if (answer === undefined) {
    answer = ask()
    reachable.set(key, answer)
  }
  return answer
}

/**
 * The `skip` option for a test that needs a service: false when `missing` is undefined, else the
 * reason, which node:test prints beside the skipped test (and which is also written to stderr, loudly).
 */
export async function skipWithout(missing: Promise<string | undefined> | string | undefined) {
  const reason = await missing
  if (reason === undefined) return false
  process.stderr.write(`\n!!! SKIPPED: ${reason}\n\n`)
  return reason
}

/** Where `program` is: on the PATH, or in an sbin directory a user's PATH may lack. */
function findProgram(program: string): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).concat('/usr/sbin', '/usr/local/sbin')
  return dirs.map((dir) => join(dir, program)).find((path) => path.startsWith('/') && existsSync(path))
}

/** Why `program` cannot be run (it is not installed), or undefined when it can. */
export function programMissing(program: string, install: string): string | undefined {
  return findProgram(program) === undefined ? `${program} is not installed (${install})` : undefined
}

/** A server of a test's own, on a spare loopback port, that the test may stop and start again. */
export interface PrivateServer {
  url: string
  port: number
  /** Starts it (again, on the same port); resolves once it accepts connections. */
  start(): Promise<void>
  /** Stops it: SIGTERM (a clean shutdown) or SIGKILL (a crash); resolves once it has exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
  /** Stops it and removes its files. */
  remove(): Promise<void>
}

/** `redis-server` with no persistence: a restart starts empty, as a cache-only Redis would. */
export function startPrivateRedis(): Promise<PrivateServer> {
  return startPrivateServer('redis-server', 'redis', (port, dir) => [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ])
}

/** `nats-server`, core only (no JetStream). */
export function startPrivateNats(): Promise<PrivateServer> {
  return startPrivateServer('nats-server', 'nats', (port) => ['-a', '127.0.0.1', '-p', String(port)])
}

async function startPrivateServer(
  program: string,
  scheme: string,
  args: (port: number, dir: string) => string[],
): Promise<PrivateServer> {
  const dir = await mkdtemp(join(tmpdir(), `herald-${scheme}-`))
  const port = await freePort()
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  const server: PrivateServer = {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    async start() {
      if (child !== undefined) return
      let output = ''
      const started = spawn(findProgram(program) ?? program, args(port, dir), {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      child = started
      for (const stream of [started.stdout, started.stderr]) stream.on('data', (chunk) => (output += chunk))
      let gone = false
      exited = new Promise((resolve) =>
        started.on('exit', () => {
          gone = true
          resolve()
        }),
      )
      started.on('error', (error) => (output += `${error.message}\n`))
      const deadline = Date.now() + 15_000
      while (!(await accepts(port))) {
        if (gone || Date.now() > deadline) {
          started.kill('SIGKILL')
          child = undefined
          throw new Error(`${program} did not start on port ${port}:\n${output}`)
        }
        await sleep(20)
      }
    },
    async stop(signal = 'SIGTERM') {
      if (child === undefined) return
      child.kill(signal)
      await exited
      child = undefined
    },
    async remove() {
      await server.stop('SIGKILL')
      await rm(dir, { recursive: true, force: true })
    },
  }
  await server.start()
  return server
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connectTcp(port, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.on('error', () => resolve(false))
  })
}
