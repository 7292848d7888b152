// Where an idle stream's memory goes: opens BENCH_IDLE_CONNECTIONS idle SSE (or NDJSON) streams on a
// fresh Herald and reports, per connection, the growth of its RSS, of the V8 heap as it is (heapTotal,
// heapUsed) and of the V8 heap still used after a full garbage collection, i.e. what the streams keep
// alive. RSS less heapTotal is what lies outside the V8 heap (native objects, malloc).
//   node bench/stream-memory.ts
// Environment, with defaults:
//   BENCH_IDLE_CONNECTIONS=15000
//   BENCH_PROTOCOLS=sse,ndjson
//   BENCH_BASE_ROOT            another checkout of Herald, measured too (as in bench/fanout.ts)
// The client is raw sockets in this process, spread over loopback source addresses.
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT, round, rssKb, startHerald, table } from './lib.ts'

const env = process.env
const CONNECTIONS = Number(env['BENCH_IDLE_CONNECTIONS'] ?? 15_000)
const PROTOCOLS = (env['BENCH_PROTOCOLS'] ?? 'sse,ndjson').split(',') as Array<'sse' | 'ndjson'>
const ACCEPT = { sse: 'text/event-stream', ndjson: 'application/x-ndjson' }
const PER_ADDRESS = 5_000
const TOPIC = 'bench'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface Usage {
  asIs: Record<string, number>
  afterGc: Record<string, number>
  spaces: Record<string, number>
}

async function measure(root: string, protocol: 'sse' | 'ndjson'): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-stream-memory-'))
  const report = join(dir, 'report.jsonl')
  const herald = await startHerald(
    ['--max-connections', String(CONNECTIONS + 100), '--max-connections-per-ip', String(PER_ADDRESS + 10)],
    root,
    {
      NODE_OPTIONS: `--expose-gc --import=${join(ROOT, 'bench/stream-memory-report.mjs')}`,
      BENCH_MEMORY_REPORT: report,
    },
  )
  const sockets: Socket[] = []
  try {
    const pid = herald.child.pid!
    const publish = await fetch(`${herald.url}/v1/topics/${TOPIC}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'bench', data: {} }),
    })
    if (publish.status !== 201) throw new Error(`publish: HTTP ${publish.status}`)
    let samples = 0
    const sample = async (): Promise<Usage & { rss: number }> => {
      const rss = rssKb(pid) // before the collection, as bench/fanout.ts reads it
      herald.child.kill('SIGURG')
      for (let i = 0; i < 100; i++) {
        await sleep(100)
        const lines = readFileSafe(report).trim().split('\n').filter(Boolean)
        if (lines.length > samples) {
          samples = lines.length
          return { rss, ...(JSON.parse(lines.at(-1)!) as Usage) }
        }
      }
      throw new Error('no memory report from the server')
    }
    await sleep(2_000)
    const before = await sample()
    const { port } = new URL(herald.url)
    for (let first = 0; first < CONNECTIONS; first += 50) {
      const batch = Array.from({ length: Math.min(50, CONNECTIONS - first) }, (_, i) => {
        const k = first + i
        const socket = connect({
          port: Number(port),
          host: '127.0.0.1',
          localAddress: `127.0.2.${1 + Math.floor(k / PER_ADDRESS)}`,
        })
        sockets.push(socket)
        socket.on('error', () => undefined)
        socket.write(
          `GET /v1/topics/${TOPIC}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${ACCEPT[protocol]}\r\n\r\n`,
        )
        return once(socket, 'data')
      })
      await Promise.all(batch)
    }
    await sleep(3_000)
    const after = await sample()
    const per = (a: number, b: number) => round((b - a) / CONNECTIONS, 2)
    const old = 'old_space'
    return [
      root === ROOT ? 'this checkout' : root,
      protocol,
      round(CONNECTIONS),
      per(before.rss, after.rss),
      per(before.asIs['heapTotal']!, after.asIs['heapTotal']!),
      per(before.asIs['heapUsed']!, after.asIs['heapUsed']!),
      per(before.afterGc['heapUsed']!, after.afterGc['heapUsed']!),
      per(before.spaces[old]!, after.spaces[old]!),
      round(
        (after.rss - before.rss - (after.asIs['heapTotal']! - before.asIs['heapTotal']!)) / CONNECTIONS,
        2,
      ),
    ].map(String)
  } finally {
    for (const socket of sockets) socket.destroy()
    await herald.stop()
    rmSync(herald.dataDir, { recursive: true, force: true })
    rmSync(dir, { recursive: true, force: true })
  }
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

const rows: string[][] = []
for (const root of [...(env['BENCH_BASE_ROOT'] ? [env['BENCH_BASE_ROOT']] : []), ROOT]) {
  for (const protocol of PROTOCOLS) {
    process.stderr.write(`${root} ${protocol}: ${CONNECTIONS} idle streams\n`)
    rows.push(await measure(root, protocol))
  }
}
process.stdout.write(
  `Per idle stream, KB (growth over ${CONNECTIONS} streams, divided by their number):\n\n${table(
    [
      'Herald',
      'protocol',
      'streams',
      'RSS',
      'V8 heap committed',
      'V8 heap used',
      'V8 heap used after full GC',
      'of which old space',
      'outside the V8 heap (RSS − committed)',
    ],
    rows,
  )}\n`,
)
