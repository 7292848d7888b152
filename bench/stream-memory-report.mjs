// Preloaded into a Herald by bench/stream-memory.ts (NODE_OPTIONS=--expose-gc --import=<this file>):
// on SIGURG it appends to BENCH_MEMORY_REPORT one JSON line with process.memoryUsage() and the V8 heap
// spaces, as they are and then after a full garbage collection.
import { appendFileSync } from 'node:fs'
import v8 from 'node:v8'

const report = process.env.BENCH_MEMORY_REPORT
const kb = (bytes) => bytes / 1024
const usage = () => Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [k, kb(v)]))

if (report) {
  process.on('SIGURG', () => {
    const asIs = usage()
    globalThis.gc?.()
    const afterGc = usage()
    const spaces = Object.fromEntries(
      v8.getHeapSpaceStatistics().map((space) => [space.space_name, kb(space.space_used_size)]),
    )
    appendFileSync(report, `${JSON.stringify({ asIs, afterGc, spaces })}\n`)
  })
}
