import { useEffect, useRef, useState } from 'preact/hooks'
import { get, type HeraldEvent, post, streamUrl, type Topic, topicPath } from '../api.ts'
import { Json, Loading, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'

const PAGE = 50
const TAIL_MAX = 200

function retentionText(retention: Topic['retention']): string {
  const parts: string[] = []
  if (retention.max_age_ms !== null) parts.push(`${Math.round(retention.max_age_ms / 3_600_000)} h`)
  if (retention.max_events !== null) parts.push(`${retention.max_events} events`)
  return parts.length === 0 ? 'kept' : parts.join(', ')
}

export function Topics() {
  const { data, error } = useLoad(() => get<{ topics: Topic[] }>('/v1/topics?limit=1000'), [])
  return (
    <>
      <h1>Topics</h1>
      <Problem error={error} />
      <Table
        items={data?.topics}
        error={error}
        what="topics"
        empty={'No topic yet: publish an event to create one.'}
        columns={['Topic', 'Head', 'Events kept', 'Retention', 'Created']}
        row={(topic) => (
          <tr key={topic.topic}>
            <td>
              <a href={`#/topics/${topicPath(topic.topic)}`}>{topic.topic}</a>
            </td>
            <td class="num">{topic.head_seq}</td>
            <td class="num">{topic.events}</td>
            <td>{retentionText(topic.retention)}</td>
            <td>
              <Time at={topic.created_at} />
            </td>
          </tr>
        )}
      />
    </>
  )
}

function EventItem({ event }: { event: HeraldEvent }) {
  return (
    <li>
      <details>
        <summary>
          <span class="seq">#{event.seq}</span> <strong>{event.type}</strong>{' '}
          <span class="muted">{event.time ? new Date(event.time).toLocaleTimeString() : ''}</span>
        </summary>
        <Json value={event} />
      </details>
    </li>
  )
}

/** The live tail: an EventSource from `after` (the head when the page opened). */
function LiveTail({ topic, after }: { topic: string; after: number }) {
  const [events, setEvents] = useState<HeraldEvent[]>([])
  const [status, setStatus] = useState('connecting')
  useEffect(() => {
    const source = new EventSource(streamUrl(`/v1/topics/${topicPath(topic)}/events?after=${after}`))
    source.onopen = () => setStatus('live')
    source.onerror = () => setStatus(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting')
    source.onmessage = (message) => {
      const event = JSON.parse(message.data) as HeraldEvent
      setEvents((list) => [event, ...list].slice(0, TAIL_MAX))
    }
    return () => source.close()
  }, [topic, after])
  return (
    <section aria-labelledby="tail">
      <h2 id="tail">
        Live tail <span class={`badge badge-${status === 'live' ? 'ok' : 'warn'}`}>{status}</span>
      </h2>
      {events.length === 0 ? (
        <p class="muted">Events published from now on appear here.</p>
      ) : (
        <ul class="events" aria-live="polite" data-testid="tail">
          {events.map((event) => (
            <EventItem key={event.seq} event={event} />
          ))}
        </ul>
      )}
    </section>
  )
}

/** Pages back through what is kept: `after = end - PAGE`, older with each click. */
function History({ topic, head }: { topic: string; head: number }) {
  const [end, setEnd] = useState(head)
  const { data, error } = useLoad(
    () =>
      get<{ events: HeraldEvent[] }>(
        `/v1/topics/${topicPath(topic)}/events?after=${Math.max(0, end - PAGE)}&limit=${PAGE}`,
      ),
    [topic, end],
  )
  const events = (data?.events ?? []).filter((event) => event.seq <= end).reverse()
  return (
    <section aria-labelledby="history">
      <h2 id="history">History</h2>
      <Problem error={error} />
      <p class="muted">
        Events {Math.max(1, end - PAGE + 1)}–{end} of {head}
      </p>
      <ul class="events">
        {events.map((event) => (
          <EventItem key={event.seq} event={event} />
        ))}
      </ul>
      <div class="row">
        <button type="button" disabled={end >= head} onClick={() => setEnd(Math.min(head, end + PAGE))}>
          Newer
        </button>
        <button type="button" disabled={end - PAGE <= 0} onClick={() => setEnd(Math.max(PAGE, end - PAGE))}>
          Older
        </button>
      </div>
    </section>
  )
}

function PublishForm({ topic }: { topic: string }) {
  const [type, setType] = useState('')
  const [data, setData] = useState('{}')
  const [result, setResult] = useState<string | undefined>(undefined)
  const action = useAction()
  const submit = async (event: Event) => {
    event.preventDefault()
    setResult(undefined)
    await action.run(async () => {
      let body: unknown
      try {
        body = JSON.parse(data || 'null')
      } catch {
        throw new Error('The data is not JSON.')
      }
      const stored = await post<HeraldEvent>(`/v1/topics/${topicPath(topic)}/events`, { type, data: body })
      setResult(`Published as #${stored.seq}.`)
    })
  }
  return (
    <section aria-labelledby="publish">
      <h2 id="publish">Publish</h2>
      <form onSubmit={submit} class="stack">
        <label for="publish-type">Type</label>
        <input
          id="publish-type"
          required
          value={type}
          placeholder="order.created"
          onInput={(e) => setType(e.currentTarget.value)}
        />
        <label for="publish-data">Data (JSON)</label>
        <textarea id="publish-data" rows={4} value={data} onInput={(e) => setData(e.currentTarget.value)} />
        <button type="submit" disabled={action.busy}>
          Publish
        </button>
        <Problem error={action.error} />
        {result && <output>{result}</output>}
      </form>
    </section>
  )
}

export function TopicPage({ topic }: { topic: string }) {
  const ref = useRef<number | undefined>(undefined)
  const { data, error } = useLoad(() => get<Topic>(`/v1/topics/${topicPath(topic)}`), [topic])
  if (data !== undefined && ref.current === undefined) ref.current = data.head_seq
  return (
    <>
      <h1>
        Topic <code>{topic}</code>
      </h1>
      <Problem error={error} />
      {data === undefined || ref.current === undefined ? (
        !error && <Loading what="the topic" />
      ) : (
        <>
          <p>
            Head <strong>{data.head_seq}</strong>, {data.events} events kept (from #{data.first_seq}),
            retention {retentionText(data.retention)}.
          </p>
          <div class="columns">
            <div>
              <LiveTail topic={topic} after={ref.current} />
              <PublishForm topic={topic} />
            </div>
            <History topic={topic} head={ref.current} />
          </div>
        </>
      )}
    </>
  )
}
