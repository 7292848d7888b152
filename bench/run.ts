// Every benchmark, in one run on one machine, so the figures compare: npm run bench
import { runIngest } from './ingest.ts'

process.stdout.write(`${await runIngest()}\n`)
