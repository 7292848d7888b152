import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { type ServerProcess, spawnServer } from '../helpers.ts'
import { freePort, postgresMissing, TEST_DATABASE_URL, testSchema } from '../postgres.ts'
import { natsMissing, programMissing, redisMissing, TEST_NATS_URL, TEST_REDIS_URL } from '../services.ts'
import { type Nginx, nginxMissing, startNginx } from './proxy.ts'

/**
 * A Herald cluster for a test: N `herald serve` processes on one PostgreSQL schema of the test's
 * own and one bus (Redis or NATS), behind the test's nginx (proxy.ts). Each node has a fixed port
 * and id (`n1`, `n2`…), so that it comes back at the same address, under the same name, when it
 * is started again. `cleanup()` ends every process and drops the schema; processes still running
 * when the test process exits (a failure, a timeout) are killed then.
 */

export type BusKind = 'redis' | 'nats'

/** The machine's shared servers (each test isolates itself by its schema, which names the channel). */
export const SHARED_BUS: Record<BusKind, string> = {
  redis: TEST_REDIS_URL,
  nats: TEST_NATS_URL,
}

export const BUSES: BusKind[] = ['redis', 'nats']

export interface ClusterOptions {
  bus: BusKind
  /** The bus's URL (a private server); the machine's shared one by default. */
  busUrl?: string
  /** The database (a private server); the machine's shared one by default. */
  databaseUrl?: string
  nodes?: number
  /** More `herald serve` flags, for every node. */
  args?: string[]
  /** Without the proxy (a test that talks to the nodes only). */
  proxy?: boolean
}

export interface ClusterNode {
  /** HERALD_NODE_ID: `n1`, `n2`… */
  id: string
  port: number
  /** `http://127.0.0.1:port`, whether it runs or not. */
  url: string
  /** The running process, or undefined while it is stopped. */
  process: ServerProcess | undefined
  /** Everything every life of this node logged (JSON lines). */
  output(): string
}

const alive = new Set<ServerProcess>()
process.on('exit', () => {
  for (const server of alive) server.child.kill('SIGKILL')
})

/**
 * Why a cluster test cannot run here, or false; written to stderr loudly too (node:test shows the
 * reason beside the skipped test). `shared`: the machine's bus servers it uses; `own`: the bus
 * servers it starts itself (redis-server, nats-server must be installed).
 */
export async function clusterSkip(
  needs: { shared?: BusKind[]; own?: BusKind[]; proxy?: boolean } = {},
): Promise<string | false> {
  const { shared = [], own = [], proxy = true } = needs
  const reasons: string[] = []
  const database = await postgresMissing()
  if (database !== undefined) reasons.push(database)
  if (proxy) {
    const nginx = nginxMissing()
    if (nginx !== undefined) reasons.push(nginx)
  }
  for (const bus of shared) {
    const missing = await (bus === 'redis' ? redisMissing() : natsMissing())
    if (missing !== undefined) reasons.push(missing)
  }
  for (const bus of own) {
    const program = bus === 'redis' ? 'redis-server' : 'nats-server'
    const missing = programMissing(program, `apt-get install ${program}`)
    if (missing !== undefined) reasons.push(missing)
  }
  if (reasons.length === 0) return false
  const reason = reasons.join('; ')
  process.stderr.write(`\n!!! SKIPPED cluster test: ${reason}\n\n`)
  return reason
}

export class Cluster {
  readonly bus: BusKind
  readonly busUrl: string
  readonly databaseUrl: string
  readonly schema: string
  readonly nodes: ClusterNode[]
  /** nginx in front of every node; its URL is where clients go. */
  proxy!: Nginx
  private readonly args: string[]
  private readonly dataDir: string
  private readonly outputs: string[][]

  /** The proxy's port, known before the nodes start: it is their public URL. */
  private readonly proxyPort: number

  private constructor(options: ClusterOptions, ports: number[], proxyPort: number, dataDir: string) {
    this.proxyPort = proxyPort
    this.bus = options.bus
    this.busUrl = options.busUrl ?? SHARED_BUS[options.bus]
    this.databaseUrl = options.databaseUrl ?? TEST_DATABASE_URL
    this.schema = testSchema(`cl_${options.bus}`)
    this.dataDir = dataDir
    this.args = options.args ?? []
    this.outputs = ports.map(() => [])
    this.nodes = ports.map((port, index) => ({
      id: `n${index + 1}`,
      port,
      url: `http://127.0.0.1:${port}`,
      process: undefined,
      output: () => [...this.outputs[index]!, this.nodes[index]!.process?.output() ?? ''].join(''),
    }))
  }

  /** Starts the nodes (at once: they migrate the new schema under the advisory lock) and the proxy. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const count = options.nodes ?? 3
    const ports: number[] = []
    while (ports.length <= count) {
      const port = await freePort()
      if (!ports.includes(port)) ports.push(port)
    }
    const proxyPort = ports.pop()!
    const cluster = new Cluster(options, ports, proxyPort, await mkdtemp(join(tmpdir(), 'herald-cluster-')))
    try {
      await Promise.all(cluster.nodes.map((_, index) => cluster.startNode(index)))
      if (options.proxy !== false) {
        cluster.proxy = await startNginx(
          ports.map((port) => `127.0.0.1:${port}`),
          proxyPort,
        )
      }
    } catch (error) {
      await cluster.cleanup()
      throw error
    }
    return cluster
  }

  /** The proxy's URL: where clients go. */
  get url(): string {
    return this.proxy.url
  }

  node(index: number): ClusterNode {
    return this.nodes[index]!
  }

  /** Starts node `index` (again), on its port, under its id; resolves once it listens. */
  async startNode(index: number): Promise<void> {
    const node = this.node(index)
    if (node.process !== undefined) throw new Error(`${node.id} is running`)
    const server = await spawnServer(
      [
        '--port',
        String(node.port),
        '--data',
        this.dataDir,
        '--log-level',
        'info',
        '--allow-private-targets',
        'true',
        // What clients are told (WebSub topic URLs, the hub): the proxy's address, as in production.
        '--public-url',
        `http://127.0.0.1:${this.proxyPort}`,
        ...this.args,
      ],
      {
        HERALD_DATABASE_URL: this.databaseUrl,
        HERALD_DATABASE_SCHEMA: this.schema,
        HERALD_BUS_URL: this.busUrl,
        HERALD_NODE_ID: node.id,
      },
    )
    alive.add(server)
    node.process = server
    void server.exited.then(() => {
      alive.delete(server)
      if (node.process === server) {
        this.outputs[index]!.push(server.output())
        node.process = undefined
      }
    })
  }

  /**
   * Stops node `index` by `signal` and waits for its exit: SIGTERM drains (exit 0), SIGKILL is a crash.
   */
  async stopNode(
    index: number,
    signal: NodeJS.Signals = 'SIGTERM',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const server = this.node(index).process
    if (server === undefined) throw new Error(`${this.node(index).id} is not running`)
    server.child.kill(signal)
    const exit = await server.exited
    // Let the exit handler above record the output before a restart replaces the process.
    await new Promise((resolve) => setImmediate(resolve))
    return exit
  }

  /** SIGSTOP / SIGCONT: a node that is alive but does nothing (a frozen VM, a long GC). */
  pause(index: number, paused: boolean): void {
    this.node(index).process?.child.kill(paused ? 'SIGSTOP' : 'SIGCONT')
  }

  /**
   * Every line at error level (50 and above) logged by any node, any life (since `since`, a
   * Date.now(), when given), and what a crashed node printed last (an uncaught error).
   */
  errors(since = 0): string[] {
    return this.nodes.flatMap((node) =>
      node
        .output()
        .split('\n')
        .filter((line) => {
          if (line.startsWith('Node.js v')) return true // the last line of an uncaught error
          const entry = /^\{"level":(\d+),"time":(\d+)/.exec(line)
          return entry !== null && Number(entry[1]) >= 50 && Number(entry[2]) >= since
        }),
    )
  }

  /** The last `count` warnings and errors each node logged (for a failure's message). */
  warnings(count = 5): string {
    return this.nodes
      .map((node) => {
        const lines = node
          .output()
          .split('\n')
          .filter((line) => /"level":[4-6]0/.test(line))
        return `${node.id} (${node.process === undefined ? 'stopped' : 'running'}):\n  ${lines.slice(-count).join('\n  ')}`
      })
      .join('\n')
  }

  /** Waits until every running node answers /readyz 200; the timeout's error says which did not, and why. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const answers = await Promise.all(
        this.nodes.map(async (node) => {
          if (node.process === undefined) return 'stopped'
          try {
            const response = await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(5_000) })
            return `${response.status} ${await response.text()}`
          } catch (error) {
            return `no answer: ${(error as Error).message}`
          }
        }),
      )
      if (answers.every((answer) => answer.startsWith('200') || answer === 'stopped')) return
      if (Date.now() > deadline) {
        throw new Error(
          `nodes not ready after ${timeoutMs} ms: ${answers.map((a, i) => `${this.node(i).id}: ${a}`).join('; ')}\n${this.warnings()}`,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }

  /** One query on the cluster's database, with its schema first on the search path. */
  async query<Row extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<Row[]> {
    const client = new pg.Client({ connectionString: this.databaseUrl })
    await client.connect()
    try {
      await client.query(`SET search_path TO ${this.schema}`)
      return (await client.query<Row>(sql, values)).rows
    } finally {
      await client.end()
    }
  }

  /**
   * Ends every process (SIGKILL: what matters was checked), stops the proxy, drops the schema. With
   * HERALD_TEST_CLUSTER_LOGS=<dir>, each node's log (every life of it) is kept there first.
   */
  async cleanup(): Promise<void> {
    for (const node of this.nodes) {
      node.process?.child.kill('SIGCONT')
      node.process?.child.kill('SIGKILL')
    }
    await Promise.all(this.nodes.map((node) => node.process?.exited))
    const logs = process.env['HERALD_TEST_CLUSTER_LOGS']
    if (logs !== undefined) {
      await mkdir(logs, { recursive: true })
      for (const node of this.nodes)
        await writeFile(join(logs, `${this.schema}-${node.id}.log`), node.output())
    }
    await this.proxy?.stop()
    const client = new pg.Client({ connectionString: this.databaseUrl })
    try {
      await client.connect()
      await client.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`)
    } catch {
      // A private server already removed: its schema went with it.
    } finally {
      await client.end().catch(() => {})
    }
    await rm(this.dataDir, { recursive: true, force: true })
  }
}
