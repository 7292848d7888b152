import { parentPort, workerData } from 'node:worker_threads'
import type { ClaimedRun } from '../store/store.ts'
import { RunSender } from './run-sender.ts'
import { createGuardedAgent } from './targets.ts'

/**
 * The dispatcher's sending thread: signs and POSTs the runs the main thread claimed, and reports
 * their outcomes back; the main thread keeps the Store (claims and settlements) to itself.
 *
 * Messages in: {type:'run', id, run, lastStart}, {type:'stop'}.
 * Messages out: {type:'batch', id, outcomes, next}, {type:'end', id, end} or {type:'end', id, error}.
 */

export interface WorkerConfig {
  retryScheduleMs: number[]
  timeoutMs: number
  hubUrl: string
  allowPrivateTargets: boolean
  connectTimeoutMs: number
}

export type ToWorker = { type: 'run'; id: number; run: ClaimedRun; lastStart: number } | { type: 'stop' }

const config = workerData as WorkerConfig
const port = parentPort!
const agent = createGuardedAgent({
  allowPrivate: config.allowPrivateTargets,
  connectTimeoutMs: config.connectTimeoutMs,
})
const sender = new RunSender({ ...config, agent })
let stopped = false

port.on('message', (message: ToWorker) => {
  if (message.type === 'stop') {
    stopped = true
    return
  }
  const { id, run, lastStart } = message
  sender
    .send(
      run,
      lastStart,
      (outcomes, next) => port.postMessage({ type: 'batch', id, outcomes, next }),
      () => stopped,
    )
    .then(
      (end) => port.postMessage({ type: 'end', id, end }),
      (error: unknown) => port.postMessage({ type: 'end', id, error: String(error) }),
    )
})
