import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { type AddressInfo, connect, createServer } from 'node:net'
import { sleep } from '../helpers.ts'

/**
 * Private Redis and NATS servers for the tests that stop them (never the machine's shared ones, on
 * 6379 and 4222): each on a spare loopback port, in the foreground as a child of the test, keeping
 * nothing on disk, restartable on the same port. A minimal stand-in for the helpers of the bus
 * tests (branch bus-tests, test/services.ts): when those land, these can go.
 */
export interface PrivateService {
  url: string
  port: number
  /** Starts it (again), on the same port; resolves once it answers. */
  start(): Promise<void>
  /** Stops it: SIGTERM (a clean stop), or SIGKILL (a crash). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

/** A spare loopback port (the kernel's pick, released at once: a race only another binder could win). */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Why a program cannot be run here (it is not installed), or undefined when it can. */
export function programMissing(program: string, versionFlag: string, hint: string): string | undefined {
  const found = spawnSync(program, [versionFlag], { stdio: 'ignore' })
  return found.error === undefined ? undefined : `${program} is not installed (${hint})`
}

/** Resolves once `probe` answers `expect` on the port (the server's greeting or answer). */
async function answers(port: number, probe: string, expect: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      let text = ''
      const done = (value: boolean) => {
        socket.destroy()
        resolve(value)
      }
      socket.setTimeout(1000, () => done(false))
      socket.on('error', () => done(false))
      socket.on('connect', () => {
        if (probe !== '') socket.write(probe)
      })
      socket.on('data', (chunk) => {
        text += chunk
        if (text.includes(expect)) done(true)
      })
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing answered "${expect}" on port ${port}`)
    await sleep(50)
  }
}

/** Every service child started by this process, killed when the process exits, whatever the reason. */
const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

function privateService(
  port: number,
  url: string,
  command: string,
  args: string[],
  probe: { send: string; expect: string },
): PrivateService & { output(): string } {
  let child: ChildProcess | undefined
  let output = ''
  return {
    url,
    port,
    output: () => output,
    async start() {
      if (child !== undefined) return
      const started = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      child = started
      children.add(started)
      started.stdout!.on('data', (chunk) => {
        output += chunk
      })
      started.stderr!.on('data', (chunk) => {
        output += chunk
      })
      started.on('exit', () => {
        children.delete(started)
        if (child === started) child = undefined
      })
      const exited = once(started, 'exit').then(() => {
        throw new Error(`${command} exited at start:\n${output}`)
      })
      await Promise.race([answers(port, probe.send, probe.expect), exited])
    },
    async stop(signal = 'SIGTERM') {
      const running = child
      if (running === undefined) return
      const exited = once(running, 'exit')
      running.kill(signal)
      await exited
    },
  }
}

/** redis-server on a spare port: no persistence, no protected mode questions (loopback only). */
export async function startPrivateRedis(): Promise<PrivateService> {
  const port = await freePort()
  const service = privateService(
    port,
    `redis://127.0.0.1:${port}`,
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { send: 'PING\r\n', expect: '+PONG' },
  )
  await service.start()
  return service
}

/** nats-server on a spare port: core NATS only (the bus needs no JetStream). */
export async function startPrivateNats(): Promise<PrivateService> {
  const port = await freePort()
  const service = privateService(
    port,
    `nats://127.0.0.1:${port}`,
    'nats-server',
    ['-a', '127.0.0.1', '-p', String(port)],
    { send: '', expect: 'INFO ' },
  )
  await service.start()
  return service
}
