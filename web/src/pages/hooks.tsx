import { useState } from 'preact/hooks'
import { type Delivery, get, type Hook, patch, post, type TestSend } from '../api.ts'
import { navigate } from '../router.ts'
import { Badge, DeleteButton, isoOf, Loading, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'
import { DeliveryTable } from './deliveries.tsx'

export function HookState({ hook }: { hook: Hook }) {
  return (
    <>
      <Badge kind={hook.state === 'active' ? 'ok' : hook.state === 'paused' ? 'warn' : 'bad'}>
        {hook.state}
      </Badge>
      {hook.failing_since && (
        <>
          {' '}
          <Badge kind="bad">failing</Badge>
        </>
      )}
    </>
  )
}

function CreateHook({ onCreated }: { onCreated: (hook: Hook) => void }) {
  const [target, setTarget] = useState('')
  const [topic, setTopic] = useState('')
  const [pattern, setPattern] = useState('')
  const [description, setDescription] = useState('')
  const [filter, setFilter] = useState('')
  const action = useAction()
  const submit = (event: Event) => {
    event.preventDefault()
    void action.run(async () => {
      let parsed: unknown
      if (filter.trim() !== '') {
        try {
          parsed = JSON.parse(filter)
        } catch {
          throw new Error('The filter is not valid JSON.')
        }
      }
      const hook = await post<Hook>('/v1/hooks', {
        target_url: target,
        ...(topic ? { topic } : {}),
        ...(pattern ? { event: pattern } : {}),
        ...(description ? { description } : {}),
        ...(parsed === undefined ? {} : { filter: parsed }),
      })
      onCreated(hook)
    })
  }
  return (
    <details>
      <summary>Create a hook</summary>
      <form onSubmit={submit} class="stack">
        <label for="hook-target">Target URL</label>
        <input
          id="hook-target"
          type="url"
          required
          value={target}
          placeholder="https://example.com/webhook"
          onInput={(e) => setTarget(e.currentTarget.value)}
        />
        <label for="hook-topic">Topic (empty: every topic)</label>
        <input id="hook-topic" value={topic} onInput={(e) => setTopic(e.currentTarget.value)} />
        <label for="hook-event">Event type pattern (e.g. order.*; empty: every type)</label>
        <input id="hook-event" value={pattern} onInput={(e) => setPattern(e.currentTarget.value)} />
        <label for="hook-description">Description</label>
        <input
          id="hook-description"
          value={description}
          onInput={(e) => setDescription(e.currentTarget.value)}
        />
        <label for="hook-filter">
          Filter (CloudEvents JSON, e.g. {'{"exact":{"data.tier":"gold"}}'}; empty: every event)
        </label>
        <textarea
          id="hook-filter"
          rows={2}
          value={filter}
          spellcheck={false}
          onInput={(e) => setFilter(e.currentTarget.value)}
        />
        <button type="submit" disabled={action.busy}>
          Create
        </button>
        <Problem error={action.error} />
      </form>
    </details>
  )
}

export function Hooks() {
  const { data, error, reload } = useLoad(() => get<{ hooks: Hook[] }>('/v1/hooks?limit=1000'), [])
  const [created, setCreated] = useState<Hook | undefined>(undefined)
  return (
    <>
      <h1>Hooks</h1>
      <CreateHook
        onCreated={(hook) => {
          setCreated(hook)
          reload()
        }}
      />
      {created && (
        <p role="status" class="notice">
          Hook <a href={`#/hooks/${created.id}`}>{created.id}</a> created. Its signing secret:{' '}
          <code>{created.secret}</code>
        </p>
      )}
      <Problem error={error} />
      <Table
        items={data?.hooks}
        error={error}
        what="hooks"
        empty={'No hook yet.'}
        columns={['Hook', 'State', 'Target', 'Topic', 'Events', 'Failing since']}
        row={(hook) => (
          <tr key={hook.id}>
            <td>
              <a href={`#/hooks/${hook.id}`}>{hook.description || hook.id}</a>
            </td>
            <td>
              <HookState hook={hook} />
            </td>
            <td class="wrap">{hook.target_url}</td>
            <td>{hook.topic ?? <span class="muted">every topic</span>}</td>
            <td>{hook.event ?? <span class="muted">every type</span>}</td>
            <td>
              <Time at={hook.failing_since} />
            </td>
          </tr>
        )}
      />
    </>
  )
}

function Replay({ hook }: { hook: Hook }) {
  const [topic, setTopic] = useState(hook.topic ?? '')
  const [after, setAfter] = useState('0')
  const [since, setSince] = useState('')
  const [result, setResult] = useState<string | undefined>(undefined)
  const action = useAction()
  const submit = (event: Event) => {
    event.preventDefault()
    void action.run(async () => {
      const sinceIso = isoOf(since)
      const answer = await post<{ queued: number }>(`/v1/hooks/${hook.id}/replay`, {
        ...(topic ? { topic } : {}),
        ...(sinceIso ? { since: sinceIso } : { after: Number(after) }),
      })
      setResult(`${answer.queued} events queued for redelivery.`)
    })
  }
  return (
    <section aria-labelledby="replay">
      <h2 id="replay">Replay a topic range</h2>
      <form onSubmit={submit} class="stack">
        <label for="replay-topic">Topic</label>
        <input
          id="replay-topic"
          value={topic}
          readOnly={hook.topic !== null}
          required
          onInput={(e) => setTopic(e.currentTarget.value)}
        />
        <label for="replay-after">After seq</label>
        <input
          id="replay-after"
          type="number"
          min={0}
          value={after}
          onInput={(e) => setAfter(e.currentTarget.value)}
        />
        <label for="replay-since">Or since (overrides the seq)</label>
        <input
          id="replay-since"
          type="datetime-local"
          step={1}
          value={since}
          onInput={(e) => setSince(e.currentTarget.value)}
        />
        <button type="submit" disabled={action.busy}>
          Replay
        </button>
        <Problem error={action.error} />
        {result && <output>{result}</output>}
      </form>
    </section>
  )
}

export function HookPage({ id }: { id: string }) {
  const { data: hook, error, reload } = useLoad(() => get<Hook>(`/v1/hooks/${id}`), [id])
  const deliveries = useLoad(
    () => get<{ deliveries: Delivery[] }>(`/v1/deliveries?hook=${encodeURIComponent(id)}&limit=50`),
    [id],
    3000,
  )
  const [secret, setSecret] = useState<string | undefined>(undefined)
  const [tested, setTested] = useState<TestSend | undefined>(undefined)
  const action = useAction()
  if (hook === undefined) return error ? <Problem error={error} /> : <Loading what="the hook" />
  const setState = (state: 'active' | 'paused') =>
    action.run(async () => {
      await patch(`/v1/hooks/${id}`, { state })
      reload()
    })
  return (
    <>
      <h1>
        Hook <code>{hook.id}</code>
      </h1>
      <dl class="facts">
        <dt>State</dt>
        <dd>
          <HookState hook={hook} /> {hook.disabled_reason}
        </dd>
        <dt>Target</dt>
        <dd class="wrap">{hook.target_url}</dd>
        <dt>Topic</dt>
        <dd>{hook.topic ?? 'every topic'}</dd>
        <dt>Event types</dt>
        <dd>{hook.event ?? 'every type'}</dd>
        <dt>Filter</dt>
        <dd>{hook.filter ? <code>{JSON.stringify(hook.filter)}</code> : 'every event'}</dd>
        <dt>Failing since</dt>
        <dd>
          <Time at={hook.failing_since} />
        </dd>
        <dt>Created</dt>
        <dd>
          <Time at={hook.created_at} />
        </dd>
      </dl>
      <div class="row">
        {hook.state === 'active' ? (
          <button type="button" disabled={action.busy} onClick={() => setState('paused')}>
            Pause
          </button>
        ) : (
          <button type="button" disabled={action.busy} onClick={() => setState('active')}>
            Resume
          </button>
        )}
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            action.run(async () => {
              const rotated = await patch<Hook>(`/v1/hooks/${id}`, { rotate_secret: true })
              setSecret(rotated.secret)
            })
          }
        >
          Rotate secret
        </button>
        <button
          type="button"
          disabled={action.busy}
          onClick={() =>
            action.run(async () => {
              setTested(undefined)
              setTested(await post<TestSend>(`/v1/hooks/${id}/test`, {}))
            })
          }
        >
          Send a test event
        </button>
        <DeleteButton
          action={action}
          path={`/v1/hooks/${id}`}
          question={`Delete hook ${id}?`}
          then={() => navigate('#/hooks')}
        >
          Delete
        </DeleteButton>
      </div>
      <Problem error={action.error} />
      {tested && (
        <p role="status" class="notice">
          Test event <code>{tested.event_id}</code>:{' '}
          {tested.status === null
            ? `no answer (${tested.error ?? 'unknown error'})`
            : `HTTP ${tested.status}`}{' '}
          in {tested.duration_ms} ms
          {tested.response ? (
            <>
              {' '}
              — <code class="wrap">{tested.response}</code>
            </>
          ) : null}
        </p>
      )}
      {secret && (
        <p role="status" class="notice">
          New signing secret (the previous one stays valid for a while): <code>{secret}</code>
        </p>
      )}
      <section aria-labelledby="hook-deliveries">
        <h2 id="hook-deliveries">Deliveries</h2>
        <Problem error={deliveries.error} />
        {deliveries.data ? (
          <DeliveryTable deliveries={deliveries.data.deliveries} />
        ) : (
          <Loading what="deliveries" />
        )}
        <p>
          <a href={`#/deliveries?hook=${id}`}>Filter every delivery of this hook</a>
        </p>
      </section>
      <Replay hook={hook} />
    </>
  )
}
