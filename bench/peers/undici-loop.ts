// The limit of the dispatch benchmark (bench/dispatch.ts): a bare undici POST loop, in its own
// process (forked, with an IPC channel). One sequential loop per "hook", all running at once, each
// POSTing event 1, 2, …, events to its own path of the receiver and waiting for the answer before the
// next (the order an ordered hook keeps). One keep-alive undici Agent, as Herald's dispatcher has.
// Nothing is stored, retried or logged.
//
// `signed`: each request also carries Standard Webhooks headers (webhook-id, webhook-timestamp,
// webhook-signature: HMAC-SHA256 with node:crypto, computed per request), to show what signing alone
// costs when done well.
//
// IPC, from the benchmark: {type: 'run', url, hooks, events, signed}; answered
// {type: 'finished', startedAt, posts, non2xx, errors} (startedAt: performance.timeOrigin +
// performance.now() when the first POSTs went out, after the bodies were built). To it, once started:
// {type: 'ready'}.
import { createHmac, createSecretKey, randomBytes } from 'node:crypto'
import { Agent, request } from 'undici'
import { type DeliveredEvent, deliveredEvent } from './dispatch-events.ts'

export interface LoopCommand {
  type: 'run'
  url: string
  hooks: number
  events: number
  signed: boolean
}

export type LoopMessage =
  | { type: 'ready' }
  | { type: 'finished'; startedAt: number; posts: number; non2xx: number; errors: number }

// The key made a KeyObject once: createHmac with raw key bytes costs several times more per call
// (Node 24 checks and wraps the bytes on every call).
const key = createSecretKey(randomBytes(32))

function signedHeaders(event: DeliveredEvent): Record<string, string> {
  const timestamp = Math.floor(Date.now() / 1000)
  const signature = createHmac('sha256', key).update(`${event.id}.${timestamp}.`).update(event.body).digest()
  return {
    'content-type': 'application/json',
    'webhook-id': event.id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': `v1,${signature.toString('base64')}`,
  }
}

const PLAIN = { 'content-type': 'application/json' }

async function run(command: LoopCommand): Promise<LoopMessage> {
  const bodies = Array.from({ length: command.events }, (_, i) => deliveredEvent(i + 1))
  const agent = new Agent()
  let posts = 0
  let non2xx = 0
  let errors = 0
  const loop = async (hook: number) => {
    const url = `${command.url}/hook/${hook}`
    for (const event of bodies) {
      try {
        const response = await request(url, {
          method: 'POST',
          headers: command.signed ? signedHeaders(event) : PLAIN,
          body: event.body,
          dispatcher: agent,
        })
        await response.body.text()
        if (response.statusCode < 200 || response.statusCode >= 300) non2xx++
      } catch {
        errors++
      }
      posts++
    }
  }
  const startedAt = performance.timeOrigin + performance.now()
  await Promise.all(Array.from({ length: command.hooks }, (_, hook) => loop(hook)))
  await agent.close()
  return { type: 'finished', startedAt, posts, non2xx, errors }
}

process.on('message', (command: LoopCommand) => {
  if (command.type === 'run') {
    run(command).then(
      (result) => process.send!(result),
      (error: unknown) => {
        process.stderr.write(`${String(error)}\n`)
        process.exit(1)
      },
    )
  }
})
process.on('disconnect', () => process.exit(0))
process.send!({ type: 'ready' } satisfies LoopMessage)
