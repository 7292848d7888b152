// The cost of the event-type check, in process: EventTypes.check on a registered type (Ajv compiled
// once, the pattern on RE2) and on an unregistered one, beside what publishing does to every event
// anyway (prepareEvent: defaults and JSON serialization), so the check is read as a share of it.
// Real parts: a SQLite store holding the type, the catalog as the server builds it.
//   node bench/schema-check.ts     (BENCH_ITERATIONS=200000, best of 5 runs each)
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type EventInput, prepareEvent } from '../src/core/event.ts'
import { EventTypes } from '../src/event-types/catalog.ts'
import { SqliteStore } from '../src/store/sqlite/sqlite-store.ts'
import { round, table } from './lib.ts'

/** The schema registered for `order.created` here and in bench/ingest.ts (what its bodies hold). */
export const ORDER_SCHEMA = {
  type: 'object',
  properties: {
    order: { type: 'integer', minimum: 0 },
    total: { type: 'number', minimum: 0 },
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
  },
  required: ['order', 'total', 'currency'],
  additionalProperties: false,
}

const ITERATIONS = Number(process.env['BENCH_ITERATIONS'] ?? 200_000)

async function best(run: () => Promise<void> | void): Promise<number> {
  let fastest = Number.POSITIVE_INFINITY
  for (let r = 0; r < 5; r++) {
    const started = performance.now()
    for (let i = 0; i < ITERATIONS; i++) await run()
    fastest = Math.min(fastest, ((performance.now() - started) * 1000) / ITERATIONS)
  }
  return fastest
}

export async function runSchemaCheck(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'herald-bench-'))
  const store = new SqliteStore({ dataDir, synchronous: 'normal' })
  const catalog = new EventTypes(store, 'http://127.0.0.1')
  try {
    await catalog.start()
    await catalog.register('order.created', { schema: ORDER_SCHEMA })
    const registered: EventInput[] = [
      { type: 'order.created', data: { order: 12345, total: 99.5, currency: 'EUR' } },
    ]
    const unregistered: EventInput[] = [
      { type: 'order.noted', data: { order: 12345, total: 99.5, currency: 'EUR' } },
    ]
    const now = new Date()
    const prepare = await best(() => {
      prepareEvent('bench', registered[0]!, now)
    })
    // A fresh input each time, as each request parses its own (the check stamps it in place).
    const checked = await best(async () => {
      await catalog.check('bench', [{ ...registered[0]! }])
    })
    const passed = await best(async () => {
      await catalog.check('bench', [{ ...unregistered[0]! }])
    })
    return [
      `The event-type check in process: best of 5 runs of ${ITERATIONS.toLocaleString('en-US')} events; Node ${process.version}`,
      '',
      table(
        ['work per event', 'µs'],
        [
          ['prepareEvent (defaults, serialization: every publish)', round(prepare, 2)],
          ['check, registered type (validate, stamp dataschema)', round(checked, 2)],
          ['check, unregistered type (a map lookup)', round(passed, 2)],
        ],
      ),
    ].join('\n')
  } finally {
    catalog.close()
    await store.close()
    await rm(dataDir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  process.stdout.write(`${await runSchemaCheck()}\n`)
}
