#!/usr/bin/env node
// Herald is written in TypeScript, which Node runs natively from version 24 on. When an older Node
// starts this file (a machine's own Node, say), it hands over to the Node 24 that `npm ci` installed
// with the project (the `node` package in its dependencies).
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const major = Number(process.versions.node.split('.')[0])

if (major >= 24) {
  await import('../src/cli/main.ts')
} else {
  const node24 = join(root, 'node_modules', 'node', 'bin', 'node')
  if (!existsSync(node24)) {
    process.stderr.write(`herald needs Node 24 or later (this is ${process.version}); run "npm ci" first.\n`)
    process.exit(1)
  }
  const child = spawn(node24, [join(root, 'src', 'cli', 'main.ts'), ...process.argv.slice(2)], {
    stdio: 'inherit',
  })
  // A signal sent to this process alone (kill <pid>) must reach the server too. A terminal's Ctrl-C
  // reaches both processes (one process group) and is forwarded once more: `herald serve` takes a
  // repeat of the same signal within a second as the same request.
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
}
