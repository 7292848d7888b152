/**
 * What `GET /` says when the console is not built (web/dist missing): what this server is, where its
 * API and docs are, and how to build the console. Plain HTML, nothing inline but text.
 */
export function homePage(publicUrl: string, keyRequired: boolean): string {
  const html = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
  const base = html(publicUrl)
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Herald</title>
</head><body>
<h1>Herald</h1>
<p>An event gateway: publish an event once, and consumers get it over webhooks, WebSub, Server-Sent
Events, NDJSON, WebSockets or polling.</p>
<p><strong>The console is not built.</strong> It is made by <code>npm ci</code> (or <code>npm run build:web</code>)
in Herald's directory, into <code>web/dist</code>; restart Herald and it is served here.</p>
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
