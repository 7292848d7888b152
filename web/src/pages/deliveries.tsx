import { useState } from 'preact/hooks'
import { type Attempt, type Delivery, get, post, query } from '../api.ts'
import { navigate } from '../router.ts'
import { Badge, isoOf, Loading, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'

export function DeliveryState({ state }: { state: Delivery['state'] }) {
  return <Badge kind={state === 'delivered' ? 'ok' : state === 'pending' ? 'warn' : 'bad'}>{state}</Badge>
}

export function DeliveryTable({ deliveries }: { deliveries: Delivery[] }) {
  return (
    <Table
      items={deliveries}
      error={undefined}
      what="deliveries"
      empty="No delivery matches."
      columns={[
        'Delivery',
        'State',
        'Hook',
        'Topic',
        'Seq',
        'Attempts',
        'Last status',
        'Last error',
        'Updated',
      ]}
      row={(delivery) => (
        <tr key={delivery.id}>
          <td>
            <a href={`#/hooks/${delivery.hook_id}/deliveries/${delivery.id}`}>#{delivery.id}</a>
          </td>
          <td>
            <DeliveryState state={delivery.state} />
          </td>
          <td>
            <a href={`#/hooks/${delivery.hook_id}`}>{delivery.hook_id}</a>
          </td>
          <td>{delivery.topic}</td>
          <td class="num">{delivery.seq}</td>
          <td class="num">{delivery.attempts}</td>
          <td class="num">{delivery.last_status ?? '—'}</td>
          <td class="wrap">{delivery.last_error ?? ''}</td>
          <td>
            <Time at={delivery.updated_at} />
          </td>
        </tr>
      )}
    />
  )
}

/** A local `datetime-local` value for an ISO time (for the filter's inputs). */
function localOf(iso: string | null): string {
  if (!iso) return ''
  const at = new Date(iso)
  if (Number.isNaN(at.getTime())) return ''
  return new Date(at.getTime() - at.getTimezoneOffset() * 60_000).toISOString().slice(0, 19)
}

function RetryAll({ hook, topic }: { hook: string; topic: string }) {
  const [since, setSince] = useState(localOf(new Date(Date.now() - 3_600_000).toISOString()))
  const [result, setResult] = useState<string | undefined>(undefined)
  const action = useAction()
  const submit = (event: Event) => {
    event.preventDefault()
    void action.run(async () => {
      const answer = await post<{ queued: number; more: boolean }>('/v1/deliveries/retry', {
        state: 'failed',
        ...(isoOf(since) ? { since: isoOf(since) } : {}),
        ...(hook ? { hook } : {}),
        ...(topic ? { topic } : {}),
      })
      setResult(
        `${answer.queued} failed deliveries queued again${answer.more ? ' (more remain: retry again)' : ''}.`,
      )
    })
  }
  return (
    <form onSubmit={submit} class="inline" aria-labelledby="retry-all-title">
      <h2 id="retry-all-title">Retry all failed</h2>
      <label for="retry-since">Failed since</label>
      <input
        id="retry-since"
        type="datetime-local"
        step={1}
        value={since}
        onInput={(e) => setSince(e.currentTarget.value)}
      />
      <button type="submit" disabled={action.busy}>
        Retry all failed since then{hook ? ' (this hook)' : ''}
        {topic ? ' (this topic)' : ''}
      </button>
      <Problem error={action.error} />
      {result && <output>{result}</output>}
    </form>
  )
}

export function Deliveries({ params }: { params: URLSearchParams }) {
  const filter = {
    state: params.get('state') ?? '',
    hook: params.get('hook') ?? '',
    topic: params.get('topic') ?? '',
    since: params.get('since') ?? '',
    until: params.get('until') ?? '',
  }
  const key = JSON.stringify(filter)
  const { data, error } = useLoad(
    () =>
      get<{ deliveries: Delivery[]; next: number | null }>(
        `/v1/deliveries${query({ ...filter, limit: 100 })}`,
      ),
    [key],
    3000,
  )
  const [form, setForm] = useState({ ...filter, since: localOf(filter.since), until: localOf(filter.until) })
  const apply = (event: Event) => {
    event.preventDefault()
    navigate(`#/deliveries${query({ ...form, since: isoOf(form.since), until: isoOf(form.until) })}`)
  }
  const field = (name: keyof typeof form) => ({
    id: `filter-${name}`,
    value: form[name],
    onInput: (e: Event) => setForm({ ...form, [name]: (e.currentTarget as HTMLInputElement).value }),
  })
  return (
    <>
      <h1>Deliveries</h1>
      <form onSubmit={apply} class="filters" aria-label="Filter deliveries">
        <div>
          <label for="filter-state">State</label>
          <select {...field('state')}>
            <option value="">any</option>
            <option value="pending">pending</option>
            <option value="delivered">delivered</option>
            <option value="failed">failed</option>
          </select>
        </div>
        <div>
          <label for="filter-hook">Hook</label>
          <input {...field('hook')} />
        </div>
        <div>
          <label for="filter-topic">Topic</label>
          <input {...field('topic')} />
        </div>
        <div>
          <label for="filter-since">Since</label>
          <input type="datetime-local" step={1} {...field('since')} />
        </div>
        <div>
          <label for="filter-until">Until</label>
          <input type="datetime-local" step={1} {...field('until')} />
        </div>
        <button type="submit">Filter</button>
      </form>
      <RetryAll hook={filter.hook} topic={filter.topic} />
      <Problem error={error} />
      {data === undefined ? (
        !error && <Loading what="deliveries" />
      ) : (
        <DeliveryTable deliveries={data.deliveries} />
      )}
    </>
  )
}

export function DeliveryPage({ hook, id }: { hook: string; id: string }) {
  const { data, error, reload } = useLoad(
    () => get<Delivery & { attempt_log: Attempt[] }>(`/v1/hooks/${hook}/deliveries/${id}`),
    [hook, id],
    2000,
  )
  const action = useAction()
  const [queued, setQueued] = useState(false)
  if (data === undefined) return error ? <Problem error={error} /> : <Loading what="the delivery" />
  return (
    <>
      <h1>Delivery #{data.id}</h1>
      <dl class="facts">
        <dt>State</dt>
        <dd>
          <DeliveryState state={data.state} />
        </dd>
        <dt>Hook</dt>
        <dd>
          <a href={`#/hooks/${data.hook_id}`}>{data.hook_id}</a>
        </dd>
        <dt>Event</dt>
        <dd>
          <a href={`#/topics/${data.topic}`}>{data.topic}</a> #{data.seq} <code>{data.event_id}</code>
        </dd>
        <dt>Next attempt</dt>
        <dd>
          <Time at={data.next_attempt_at} />
        </dd>
      </dl>
      <div class="row">
        <button
          type="button"
          disabled={action.busy || data.state === 'pending'}
          onClick={() =>
            action.run(async () => {
              await post(`/v1/hooks/${hook}/deliveries/${id}/retry`, {})
              setQueued(true)
              reload()
            })
          }
        >
          Retry
        </button>
      </div>
      <Problem error={action.error} />
      {queued && <output>Queued for another attempt.</output>}
      <h2>Attempts</h2>
      {data.attempt_log.length === 0 ? (
        <p>No attempt yet.</p>
      ) : (
        <ol class="attempts" reversed>
          {data.attempt_log.map((attempt) => (
            <li key={attempt.id} class="attempt">
              <p>
                Attempt {attempt.attempt} at <Time at={attempt.at} />, {attempt.duration_ms} ms:{' '}
                {attempt.status === null ? (
                  <Badge kind="bad">no response</Badge>
                ) : (
                  <Badge kind={attempt.status < 300 ? 'ok' : 'bad'}>{`HTTP ${attempt.status}`}</Badge>
                )}
              </p>
              {attempt.error && <p class="problem">{attempt.error}</p>}
              {attempt.response !== null && attempt.response !== '' && (
                <>
                  <p class="muted">Response body</p>
                  <pre class="json">{attempt.response}</pre>
                </>
              )}
            </li>
          ))}
        </ol>
      )}
    </>
  )
}
