import { parentPort, workerData } from 'node:worker_threads'
import type { ClaimedRun } from '../store/store.ts'
import { type RunExtension, RunSender } from './run-sender.ts'
import { createGuardedAgent } from './targets.ts'

/**
 * The dispatcher's sending thread: signs and POSTs the runs the main thread claimed, and reports
 * their outcomes back; the main thread keeps the Store (claims and settlements) to itself.
 *
 * Messages in: {type:'run', id, run, lastStart, extensible}, {type:'extension', id, extension},
 * {type:'stop'}.
 * Messages out: {type:'batch', id, outcomes, next}, {type:'extend', id, afterSeq} (answered by one
 * 'extension'), {type:'end', id, end} or {type:'end', id, error}.
 */

export interface WorkerConfig {
  retryScheduleMs: number[]
  timeoutMs: number
  hubUrl: string
  allowPrivateTargets: boolean
  connectTimeoutMs: number
}

export type ToWorker =
  // The run as claimed, its lease token with it (and an extension's, the same): the main thread
  // settles and extends under that token.
  | { type: 'run'; id: number; run: ClaimedRun; lastStart: number; extensible: boolean }
  | { type: 'extension'; id: number; extension: RunExtension | undefined }
  | { type: 'stop' }

const config = workerData as WorkerConfig
const port = parentPort!
const agent = createGuardedAgent({
  allowPrivate: config.allowPrivateTargets,
  connectTimeoutMs: config.connectTimeoutMs,
})
const sender = new RunSender({ ...config, agent })
/** Runs waiting for the answer to their 'extend' (a run asks for one at a time). */
const extensions = new Map<number, (extension: RunExtension | undefined) => void>()
let stopped = false

port.on('message', (message: ToWorker) => {
  if (message.type === 'stop') {
    stopped = true
    return
  }
  if (message.type === 'extension') {
    extensions.get(message.id)?.(message.extension)
    extensions.delete(message.id)
    return
  }
  const { id, run, lastStart, extensible } = message
  const extend = (afterSeq: number) =>
    new Promise<RunExtension | undefined>((resolve) => {
      extensions.set(id, resolve)
      port.postMessage({ type: 'extend', id, afterSeq })
    })
  sender
    .send(
      run,
      lastStart,
      (outcomes, next) => port.postMessage({ type: 'batch', id, outcomes, next }),
      () => stopped,
      extensible ? extend : undefined,
    )
    .then(
      (end) => port.postMessage({ type: 'end', id, end }),
      (error: unknown) => port.postMessage({ type: 'end', id, error: String(error) }),
    )
})
