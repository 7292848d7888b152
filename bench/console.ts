/**
 * The console's first load (issue 14): the gzipped size of what `GET /` makes the browser fetch
 * (index.html and the scripts and stylesheets it names), and the time to interactive in Chromium
 * (navigation timing's domInteractive, and the app's `herald:ready` mark once it has checked the key
 * with the API and rendered its first page), median of
 * several cold loads. Needs a build (npm run build:web) and /usr/bin/chromium.
 *
 *   npm run bench:console
 */
import { gzipSync } from 'node:zlib'
import { chromium } from 'playwright-core'
import { startTestServer } from '../test/helpers.ts'
import { median } from './lib.ts'

const LOADS = Number(process.env['BENCH_LOADS'] ?? 7)
const BUDGET = 150 * 1024
const KEY = 'bench-console-key-0123456789abcdef'

const server = await startTestServer({ apiKey: KEY })
try {
  const html = await (await fetch(`${server.url}/`)).text()
  const urls = ['/', ...[...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((m) => m[1]!)]
  let raw = 0
  let gzipped = 0
  const rows: string[] = []
  for (const url of urls) {
    const body = Buffer.from(await (await fetch(`${server.url}${url}`)).arrayBuffer())
    const gz = gzipSync(body, { level: 9 }).length
    raw += body.length
    gzipped += gz
    rows.push(`  ${url.padEnd(44)} ${String(body.length).padStart(7)} B  ${String(gz).padStart(7)} B gzipped`)
  }
  console.log(`first load: ${urls.length} files`)
  for (const row of rows) console.log(row)
  console.log(
    `  total ${raw} B, ${(gzipped / 1024).toFixed(1)} KB gzipped (budget ${BUDGET / 1024} KB: ${gzipped <= BUDGET ? 'within' : 'OVER'})`,
  )

  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--disable-background-networking',
    ],
  })
  const interactive: number[] = []
  const rendered: number[] = []
  try {
    for (let i = 0; i < LOADS; i++) {
      const context = await browser.newContext() // a cold cache each time
      const page = await context.newPage()
      // Signed in (the key in session storage) before the page's own script runs.
      await page.addInitScript((key) => sessionStorage.setItem('herald.key', key), KEY)
      await page.goto(`${server.url}/#/topics`)
      await page.locator('body[data-ready="in"] h1').waitFor()
      const timing = await page.evaluate(() => {
        const [nav] = performance.getEntriesByType('navigation') as PerformanceNavigationTiming[]
        const [ready] = performance.getEntriesByName('herald:ready')
        return { domInteractive: nav!.domInteractive, rendered: ready!.startTime }
      })
      interactive.push(timing.domInteractive)
      rendered.push(timing.rendered)
      await context.close()
    }
  } finally {
    await browser.close()
  }
  console.log(
    `time to interactive, median of ${LOADS} cold loads: domInteractive ${median(interactive).toFixed(1)} ms; ` +
      `first page rendered (the app's herald:ready mark: key checked with the API, Topics on screen) ${median(rendered).toFixed(1)} ms`,
  )
  console.log(`  domInteractive: ${interactive.map((v) => v.toFixed(1)).join(', ')}`)
  console.log(`  rendered:       ${rendered.map((v) => v.toFixed(1)).join(', ')}`)
} finally {
  await server.close()
}
