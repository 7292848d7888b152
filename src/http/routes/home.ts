import type { FastifyInstance } from 'fastify'
import type { HttpContext } from '../context.ts'

/**
 * `GET /`: a small page that says what this server is and where its API and docs are, until the
 * console takes this place. Public, because it shows nothing stored: no topic, hook or key.
 */
export function registerHomeRoute(app: FastifyInstance, { config }: HttpContext): void {
  const page = homePage(config.publicUrl, config.apiKey !== undefined)
  app.get('/', { config: { right: 'public' } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
      .header('x-content-type-options', 'nosniff')
      .send(page),
  )
}

function homePage(publicUrl: string, keyRequired: boolean): string {
  const html = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
  const base = html(publicUrl)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem}code{background:#f2f2f2;padding:0 .2em}</style>
</head><body>
<h1>Herald</h1>
<p>An event gateway: publish an event once, and consumers get it over webhooks, WebSub, Server-Sent
Events, NDJSON, WebSockets or polling. The console in the browser comes in a later version.</p>
<p>${keyRequired ? 'Every <code>/v1</code> request needs <code>Authorization: Bearer &lt;HERALD_API_KEY&gt;</code>.' : 'No API key is set: the API is open to this machine only.'}</p>
<h2>Try it</h2>
<pre>curl -s ${base}/v1/topics/orders/events -H 'content-type: application/json' \\
  -d '{"type":"order.created","data":{"id":42}}'
curl -sN -H 'accept: text/event-stream' '${base}/v1/topics/orders/events?after=0'</pre>
<h2>Endpoints</h2>
<ul>
<li><code>POST /v1/topics/{topic}/events</code>, <code>GET /v1/topics/{topic}/events</code> (poll, long poll, SSE, NDJSON), <code>GET /v1/stream</code></li>
<li><code>GET /v1/ws</code> (WebSocket), <code>/v1/hooks</code> (webhooks), <code>POST /websub</code> (WebSub hub)</li>
<li><a href="/healthz">/healthz</a>, <a href="/readyz">/readyz</a>, <a href="/metrics">/metrics</a></li>
</ul>
<p>The API is described in <code>docs/api.md</code>, its errors in <code>docs/errors.md</code> and its
security model in <code>docs/security.md</code>, in Herald's repository; <code>herald --help</code> lists
the CLI.</p>
</body></html>
`
}
