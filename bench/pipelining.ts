// A socket that pipelines requests and never reads the answers: how much memory the server holds
// for it, and whether the server lets go of it (issue 10, defect 6).
//   npm run bench:pipelining    (BENCH_REQUESTS=30000 pipelined GET /metrics on one socket,
//                                BENCH_SECONDS=10 of watching; BENCH_BEFORE=<checkout> adds that commit's
//                                Herald, measured the same way, for a side-by-side row)
// The server's RSS (VmRSS) is sampled every 250 ms; the socket is never read, so every answer the
// server computes stays in its memory until it closes the socket.
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { ROOT, round, startHerald, table } from './lib.ts'

const REQUESTS = Number(process.env['BENCH_REQUESTS'] ?? 30_000)
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 10)
const BEFORE = process.env['BENCH_BEFORE']

function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN) / 1024
}

interface Outcome {
  before: number
  peak: number
  end: number
  /** Connections the server counts as closed by its pipelining guard (the client, paused, cannot see it). */
  closedByGuard: number
}

async function measure(root: string): Promise<Outcome> {
  const herald = await startHerald([], root)
  const pid = herald.child.pid!
  try {
    await (await fetch(`${herald.url}/metrics`)).text()
    await sleep(500)
    const before = rssMb(pid)
    const socket = connect(Number(new URL(herald.url).port), '127.0.0.1')
    socket.on('error', () => {})
    socket.pause() // never reads: the answers pile up in the kernel's buffers, then in the server
    const started = Date.now()
    socket.write('GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.repeat(REQUESTS))
    let peak = before
    while (Date.now() - started < SECONDS * 1000) {
      await sleep(250)
      peak = Math.max(peak, rssMb(pid))
    }
    const end = rssMb(pid)
    socket.destroy()
    const metrics = await (await fetch(`${herald.url}/metrics`)).text()
    const closed = /^herald_http_connections_closed_total\{reason="pipelining"\} (\d+)$/m.exec(metrics)
    return { before, peak, end, closedByGuard: Number(closed?.[1] ?? 0) }
  } finally {
    await herald.stop()
  }
}

export async function runPipelining(): Promise<string> {
  const targets: Array<[string, string]> = [['Herald', ROOT]]
  if (BEFORE !== undefined) targets.push([`Herald at ${BEFORE}`, BEFORE])
  const rows = []
  for (const [name, root] of targets) {
    const outcome = await measure(root)
    process.stderr.write(`${name}: ${JSON.stringify(outcome)}\n`)
    rows.push([
      name,
      round(outcome.before),
      round(outcome.peak),
      round(outcome.end),
      round(outcome.peak - outcome.before),
      outcome.closedByGuard,
    ])
  }
  return [
    `Pipelining: one socket sends ${REQUESTS.toLocaleString('en-US')} GET /metrics and reads nothing; server RSS over ${SECONDS} s`,
    '',
    table(
      [
        'target',
        'RSS before MB',
        'RSS peak MB',
        `RSS at ${SECONDS} s MB`,
        'peak growth MB',
        'connections closed by the pipelining guard',
      ],
      rows,
    ),
  ].join('\n')
}

if (import.meta.main) process.stdout.write(`${await runPipelining()}\n`)
