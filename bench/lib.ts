import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import autocannon from 'autocannon'

export const ROOT = join(import.meta.dirname, '..')

export interface Target {
  name: string
  url: string
  child: ChildProcess
  stop(): Promise<void>
}

/** Starts a server process and waits for the line that tells its address. */
export function startProcess(
  name: string,
  args: string[],
  parseUrl: (line: string) => string | undefined,
  env: NodeJS.ProcessEnv = process.env,
) {
  return new Promise<Target>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT, env })
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      const url = parseUrl(line)
      if (url) {
        resolve({
          name,
          url,
          child,
          stop: () =>
            new Promise((done) => {
              child.once('exit', () => done())
              child.kill('SIGTERM')
            }),
        })
      }
    })
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening`)))
  })
}

/**
 * What every benchmarked Herald runs with: load generators open thousands of connections from one
 * loopback address within a second, which --connection-rate-per-ip exists to cut. (An environment
 * variable, not a flag: an older checkout, compared with `root`, ignores it rather than refusing it.)
 */
export const BENCH_HERALD_ENV = { HERALD_CONNECTION_RATE_PER_IP: 'off' }

/**
 * Herald from this checkout, or from `root` (another checkout, to compare commits in one run); `env`
 * adds to the environment (e.g. HERALD_DATABASE_URL and HERALD_DATABASE_SCHEMA for PostgreSQL).
 */
export async function startHerald(
  extraArgs: string[] = [],
  root = ROOT,
  env: NodeJS.ProcessEnv = {},
): Promise<Target & { dataDir: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'herald-bench-'))
  const target = await startProcess(
    'herald',
    [join(root, 'src/cli/main.ts'), 'serve', '--port', '0', '--data', dataDir, ...extraArgs],
    heraldListening,
    { ...process.env, ...BENCH_HERALD_ENV, ...env },
  )
  return { ...target, dataDir }
}

export async function startBareFastify(): Promise<Target> {
  return startPeer('bare fastify', 'bare-fastify.ts')
}

/**
 * One of bench/peers/, which reports its port as a JSON line (peer-util.ts reportListening);
 * `scheme`: https for a peer started with TLS.
 */
export function startPeer(
  name: string,
  file: string,
  env: NodeJS.ProcessEnv = {},
  scheme: 'http' | 'https' = 'http',
): Promise<Target> {
  return startProcess(
    name,
    [join(ROOT, 'bench/peers', file)],
    (line) => {
      try {
        const port = (JSON.parse(line) as { port?: number }).port
        return port ? `${scheme}://127.0.0.1:${port}` : undefined
      } catch {
        return undefined
      }
    },
    { ...process.env, ...env },
  )
}

export interface LoadResult {
  requestsPerSecond: number
  latencyP50Ms: number
  latencyP99Ms: number
  /** The server's CPU µs per request over the measured run (NaN without a server pid). */
  serverCpuUsPerRequest: number
  non2xx: number
  errors: number
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100

/** CPU seconds (user + system, all its threads) a process has used so far, from /proc; NaN elsewhere. */
export function cpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return Number.NaN
  }
}

/**
 * Drives POSTs with autocannon: a short warm-up, then the measured run. With `serverPid`, also the
 * server's CPU time per request over the measured run: unlike requests/s, it does not drift with how
 * fast the machine happens to be running.
 */
export async function post(
  url: string,
  body: string,
  options: {
    connections: number
    seconds: number
    warmupSeconds?: number
    serverPid?: number
    /** Called after the warm-up, right before the measured run (e.g. to find and meter more processes). */
    beforeMeasure?: () => Promise<void>
    /** More request headers (e.g. Authorization). */
    headers?: Record<string, string>
  },
): Promise<LoadResult & { requests: number }> {
  const run = (duration: number) =>
    autocannon({
      url,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...options.headers },
      body,
      connections: options.connections,
      duration,
    })
  if (options.warmupSeconds) await run(options.warmupSeconds)
  await options.beforeMeasure?.()
  const cpuBefore = cpuSeconds(options.serverPid)
  const result = await run(options.seconds)
  const cpu = cpuSeconds(options.serverPid) - cpuBefore
  return {
    requestsPerSecond: result.requests.average,
    requests: result.requests.total,
    serverCpuUsPerRequest: (cpu * 1e6) / result.requests.total,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  }
}

/**
 * The middle of `values`; of an even count, the upper of the two middle ones, so that it is always a
 * value that was measured.
 */
export function median(values: number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
}

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

export function round(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

/** The URL a `herald serve` log line announces it listens on, or undefined for any other line. */
export function heraldListening(line: string): string | undefined {
  try {
    const entry = JSON.parse(line) as { msg?: string; url?: string }
    return entry.msg === 'herald is listening' ? entry.url : undefined
  } catch {
    return undefined
  }
}

/**
 * Fills `topic` of the Herald at `url` with `events` events (`event(i)` for i = 0…), in batches of
 * `batch` with `inFlight` requests at once (1: in order, so event i has seq i + 1), and checks the
 * topic's head after. Resolves with the seconds it took.
 */
export async function fillTopic(
  url: string,
  options: { topic: string; events: number; batch: number; inFlight: number; event: (i: number) => unknown },
): Promise<number> {
  const { topic, events, batch, inFlight, event } = options
  const started = performance.now()
  let next = 0
  const worker = async () => {
    for (;;) {
      const first = next
      if (first >= events) return
      next += batch
      const count = Math.min(batch, events - first)
      const body = JSON.stringify(Array.from({ length: count }, (_, i) => event(first + i)))
      const response = await fetch(`${url}/v1/topics/${topic}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      })
      await response.arrayBuffer()
      if (response.status !== 201) throw new Error(`fill: ${response.status}`)
    }
  }
  await Promise.all(Array.from({ length: inFlight }, worker))
  const seconds = (performance.now() - started) / 1000
  const info = (await (await fetch(`${url}/v1/topics/${topic}`)).json()) as { head_seq: number }
  if (info.head_seq !== events) throw new Error(`fill: head_seq ${info.head_seq}, not ${events}`)
  return seconds
}

/** A process and its descendants (from /proc), so that a server's workers count too. */
export function processTree(pid: number): number[] {
  const pids = [pid]
  for (let i = 0; i < pids.length; i++) {
    let tasks: string[] = []
    try {
      tasks = readdirSync(`/proc/${pids[i]}/task`)
    } catch {
      continue
    }
    for (const task of tasks) {
      try {
        const children = readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8')
        for (const child of children.split(' ')) if (child.trim()) pids.push(Number(child))
      } catch {}
    }
  }
  return pids
}

/** VmRSS of a process tree, in kB (/proc). */
export function rssKb(pid: number): number {
  let total = 0
  for (const each of processTree(pid)) {
    try {
      const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${each}/status`, 'utf8'))
      if (match) total += Number(match[1])
    } catch {}
  }
  return total
}
