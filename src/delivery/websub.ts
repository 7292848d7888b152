import { createHmac } from 'node:crypto'
import { EXTERNAL_CONTENT_PREFIX } from '../core/topic.ts'
import type { HookRecord } from '../store/store.ts'

/**
 * WebSub distribution (W3C WebSub §7): what the dispatcher POSTs to a subscriber's callback. The
 * hub side (subscription requests, verification of intent, publish pings) is src/http/routes/websub.ts
 * and src/delivery/websub-hub.ts.
 */

interface ContentEvent {
  datacontenttype?: string
  data?: unknown
  data_base64?: string
}

/**
 * The body and headers of one distribution. A Herald topic's event goes as its JSON; an external
 * topic's content (stored as an event on its `herald.websub/…` topic) goes as the bytes fetched, with
 * the Content-Type they came with. `Link` names the hub and the topic (one header, §5.1.1);
 * `X-Hub-Signature` is there only when the subscriber gave a secret (§7.1), in lowercase hex.
 */
export function websubDistribution(subscription: HookRecord, eventJson: string, hubUrl: string) {
  let body: string | Buffer = eventJson
  let contentType = 'application/json'
  if (subscription.topic?.startsWith(EXTERNAL_CONTENT_PREFIX)) {
    const event = JSON.parse(eventJson) as ContentEvent
    contentType = event.datacontenttype ?? 'application/octet-stream'
    body =
      event.data_base64 !== undefined
        ? Buffer.from(event.data_base64, 'base64')
        : typeof event.data === 'string'
          ? event.data
          : JSON.stringify(event.data ?? null)
  }
  const headers: Record<string, string> = {
    'content-type': contentType,
    link: `<${hubUrl}>; rel="hub", <${subscription.topic_url}>; rel="self"`,
    'user-agent': 'Herald-WebSub',
  }
  if (subscription.secret !== null) {
    headers['x-hub-signature'] =
      `sha256=${createHmac('sha256', subscription.secret).update(body).digest('hex')}`
  }
  return { headers, body }
}
