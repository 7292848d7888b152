// Pushpin (Debian's `pushpin` package, with condure and zurl) for the fan-out comparison, started as a
// child process with the configuration of bench/peers/pushpin/. Its built-in test handler (route
// `* test`) serves the subscribers with no backend: GET /stream?channel=X is an HTTP stream and
// /ws?channel=X a WebSocket; events are published with POST /publish/ (JSON items format).
import { type ChildProcess, spawn } from 'node:child_process'
import { openSync, rmSync } from 'node:fs'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const CONFIG_DIR = join(import.meta.dirname, 'pushpin')
const START_TIMEOUT_MS = 15_000
const STOP_TIMEOUT_MS = 5_000

export interface Pushpin {
  /** The runner's pid; condure, pushpin-proxy, pushpin-handler and zurl are its children. */
  pid: number
  /** http://127.0.0.1:<http_port> */
  url: string
  /** http://127.0.0.1:<push_in_http_port>/publish/ */
  publishUrl: string
  stop(): Promise<void>
}

function setting(config: string, key: string): string {
  const match = new RegExp(`^${key}=(.*)$`, 'm').exec(config)
  if (!match) throw new Error(`bench/peers/pushpin/pushpin.conf has no ${key}=`)
  return match[1]!.trim()
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

async function answered(response: Response): Promise<boolean> {
  await response.arrayBuffer()
  return response.ok
}

/** Pushpin logs its own errors and warnings, the clue when connections fail: pass them on to stderr. */
async function reportProblems(logFile: string): Promise<void> {
  const lines = (await readFile(logFile, 'utf8').catch(() => '')).split('\n')
  const problems = lines.filter((line) => /^\[(WARN|ERR|ERROR)\]/.test(line))
  if (problems.length === 0) return
  process.stderr.write(`pushpin logged ${problems.length} warnings or errors; the last ones:\n`)
  for (const line of problems.slice(-5)) process.stderr.write(`  ${line}\n`)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export async function startPushpin(): Promise<Pushpin> {
  const template = await readFile(join(CONFIG_DIR, 'pushpin.conf'), 'utf8')
  const streamPort = Number(setting(template, 'http_port').split(':').at(-1))
  const publishPort = Number(setting(template, 'push_in_http_port'))
  for (const port of [streamPort, publishPort]) {
    // a Pushpin left over from another run would answer in place of ours
    if (await portInUse(port)) throw new Error(`port ${port} is already in use; is another Pushpin running?`)
  }

  // Pushpin has no command-line option for its runtime directory: run from a copy of the config
  const runDir = await mkdtemp(join(tmpdir(), 'pushpin-bench-'))
  const config = template
    .replace(/^rundir=.*$/m, `rundir=${runDir}`)
    .replace(/^logdir=.*$/m, `logdir=${runDir}`)
  await writeFile(join(runDir, 'pushpin.conf'), config)
  await writeFile(join(runDir, 'routes'), await readFile(join(CONFIG_DIR, 'routes')))

  const logFile = join(runDir, 'pushpin.log')
  const log = openSync(logFile, 'a')
  // its own process group, so that a stuck runner can be killed together with its services
  const child: ChildProcess = spawn('pushpin', ['--config', join(runDir, 'pushpin.conf'), '--merge-output'], {
    cwd: runDir,
    stdio: ['ignore', log, log],
    detached: true,
  })
  let exited = false
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true
      resolve()
    })
    child.once('error', () => {
      exited = true
      resolve()
    })
  })
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve))

  const stop = async () => {
    if (!exited && child.pid) {
      child.kill('SIGTERM')
      await Promise.race([exitedPromise, sleep(STOP_TIMEOUT_MS)])
      if (!exited) process.kill(-child.pid, 'SIGKILL')
    }
    await reportProblems(logFile)
    rmSync(runDir, { recursive: true, force: true })
  }

  const url = `http://127.0.0.1:${streamPort}`
  const publishUrl = `http://127.0.0.1:${publishPort}/publish/`
  const deadline = Date.now() + START_TIMEOUT_MS
  for (;;) {
    const failure = await Promise.race([spawnError, sleep(200).then(() => undefined)])
    if (failure) {
      await stop()
      throw new Error(`cannot start pushpin (${failure.message}): apt-get install -y pushpin`)
    }
    if (exited || Date.now() > deadline) {
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
      await stop()
      throw new Error(`pushpin did not start:\n${tail}`)
    }
    // ready once the test handler answers and the publish endpoint accepts an empty publish; a
    // request sent while the services are still connecting to each other can go unanswered, so
    // each attempt has a short timeout
    const signal = AbortSignal.timeout(1_000)
    const ready = await Promise.all([
      fetch(`${url}/`, { signal }).then(answered),
      fetch(publishUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"items":[]}',
        signal,
      }).then(answered),
    ]).catch(() => [false])
    if (ready.every(Boolean)) return { pid: child.pid!, url, publishUrl, stop }
  }
}
