// Every benchmark, in one run on one machine, so the figures compare: npm run bench
// (the fan-out part needs Debian's pushpin for its Pushpin rows; see bench/fanout.ts)
import { runDispatch } from './dispatch.ts'
import { runFanout } from './fanout.ts'
import { runFilters } from './filters.ts'
import { runIngest } from './ingest.ts'

process.stdout.write(`${await runIngest()}\n\n`)
process.stdout.write(`${await runFanout()}\n\n`)
process.stdout.write(`${await runFilters()}\n\n`)
process.stdout.write(`${await runDispatch()}\n`)
