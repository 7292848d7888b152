import { ulid } from '../core/event.ts'
import type { HookRecord } from '../store/store.ts'
import { post } from './attempt.ts'
import type { HookPolicy } from './hooks.ts'
import { webhookDelivery } from './run-sender.ts'

/** What a test send answers: the receiver's status and the start of its body, or why it failed. */
export interface TestSend {
  event_id: string
  status: number | null
  duration_ms: number
  response: string | null
  error: string | null
}

/**
 * Sends one test event to a webhook's target now, signed like every delivery (Standard Webhooks,
 * both secrets while one is being rotated), through the SSRF-guarded agent, and answers with what the
 * receiver said. Nothing is stored or queued: the event is of no topic (type `herald.test`), and a
 * failure is not retried. The console's "send a test event".
 */
export async function sendTestEvent(
  hook: HookRecord,
  policy: HookPolicy,
  timeoutMs: number,
): Promise<TestSend> {
  const now = Date.now()
  const id = ulid(now)
  const body = JSON.stringify({
    specversion: '1.0',
    id,
    source: '/herald/test',
    type: 'herald.test',
    time: new Date(now).toISOString(),
    datacontenttype: 'application/json',
    data: {
      message: 'A test event from Herald: nothing happened, this checks the endpoint.',
      hook_id: hook.id,
    },
    topic: hook.topic,
    seq: 0,
  })
  const { headers } = webhookDelivery(hook, id, body, now)
  const result = await post({ url: hook.target_url, headers, body, timeoutMs, agent: policy.agent })
  return {
    event_id: id,
    status: result.status,
    duration_ms: Math.round(result.duration_ms * 10) / 10,
    response: result.response,
    error: result.error,
  }
}
