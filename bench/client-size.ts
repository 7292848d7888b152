/**
 * The client's bundle size (issue 15) beside socket.io-client and centrifuge: each bundled for the
 * browser by Vite (library mode, ES module, rolldown's minifier: the same build as
 * `npm run build:client`), then gzipped at level 9. "Core" is `Herald` (src/client/index.ts), what
 * GET /v1/client.js serves; verifyWebhook (Node only) is not part of it.
 *
 *   npm run bench:client-size
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { build, type Rolldown } from 'vite'

const ROOT = join(import.meta.dirname, '..')
const BUDGET = 8 * 1024

const candidates: Array<[name: string, source: string]> = [
  [
    'herald (src/client)',
    `export { Herald } from ${JSON.stringify(join(ROOT, 'src', 'client', 'index.ts'))}`,
  ],
  ['socket.io-client', `export { io } from 'socket.io-client'`],
  ['centrifuge', `export { Centrifuge } from 'centrifuge'`],
]

// Inside the checkout (bench/results is git-ignored), so that the entries resolve its node_modules.
await mkdir(join(ROOT, 'bench', 'results'), { recursive: true })
const dir = await mkdtemp(join(ROOT, 'bench', 'results', 'client-size-'))
const rows: Array<{ name: string; min: number; gzip: number; version: string }> = []
try {
  for (const [index, [name, source]] of candidates.entries()) {
    const entry = join(dir, `entry${index}.ts`)
    await writeFile(entry, `${source}\n`)
    const result = (await build({
      root: ROOT,
      configFile: false,
      logLevel: 'silent',
      build: {
        write: false,
        target: 'es2022',
        minify: true,
        lib: { entry, formats: ['es'], fileName: 'bundle' },
        rolldownOptions: { output: { minify: true } },
      },
    })) as Rolldown.RolldownOutput[]
    const chunks = result.flatMap((output) => output.output).filter((item) => item.type === 'chunk')
    const code = Buffer.from(chunks.map((chunk) => chunk.code).join('\n'))
    const version = name.startsWith('herald')
      ? 'this checkout'
      : (
          JSON.parse(await readFile(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
            version: string
          }
        ).version
    rows.push({ name, min: code.length, gzip: gzipSync(code, { level: 9 }).length, version })
  }
} finally {
  await rm(dir, { recursive: true, force: true })
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`
console.log(`| library | version | min | min+gzip |`)
console.log(`| --- | --- | ---: | ---: |`)
for (const row of rows) console.log(`| ${row.name} | ${row.version} | ${kb(row.min)} | ${kb(row.gzip)} |`)
const herald = rows[0]!
console.log(
  `\nHerald's client core: ${herald.gzip} B min+gzip (budget ${BUDGET} B): ${herald.gzip <= BUDGET ? 'within' : 'OVER'}`,
)
if (herald.gzip > BUDGET) process.exitCode = 1
