import { useState } from 'preact/hooks'
import { get, request } from '../api.ts'
import { Badge, Json, Loading, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'

interface EventType {
  type: string
  version: number
  schema: unknown
  description: string | null
  deprecated: boolean
  created_at: string
  url: string
}

interface Registered extends EventType {
  compatibility?: {
    backward: 'compatible' | 'breaking' | 'unknown'
    findings: Array<{ pointer: string; kind: string; message: string }>
  }
}

const typePath = (type: string) => `/v1/event-types/${encodeURIComponent(type)}`

/** Registers a schema; a new version's compatibility report is shown until the next registration. */
function RegisterType({
  onRegistered,
  type: fixed,
  current,
}: {
  onRegistered: () => void
  type?: string
  /** The type's latest version, which the form starts from. */
  current?: EventType
}) {
  const [type, setType] = useState(fixed ?? '')
  const [schema, setSchema] = useState(
    current ? JSON.stringify(current.schema, null, 2) : '{\n  "type": "object"\n}',
  )
  const [description, setDescription] = useState(current?.description ?? '')
  const [deprecated, setDeprecated] = useState(current?.deprecated ?? false)
  const [result, setResult] = useState<Registered | undefined>(undefined)
  const action = useAction()
  const submit = (event: Event) => {
    event.preventDefault()
    void action.run(async () => {
      let parsed: unknown
      try {
        parsed = JSON.parse(schema)
      } catch (error) {
        throw new Error(`The schema is not JSON: ${(error as Error).message}`)
      }
      const registered = await request<Registered>(typePath(type), {
        method: 'PUT',
        body: { schema: parsed, description: description || null, deprecated },
      })
      setResult(registered)
      onRegistered()
    })
  }
  return (
    <>
      <details>
        <summary>{fixed ? 'Register a new version' : 'Register a type'}</summary>
        <form onSubmit={submit} class="stack">
          {!fixed && (
            <>
              <label for="type-name">Event type</label>
              <input
                id="type-name"
                required
                placeholder="order.created"
                value={type}
                onInput={(e) => setType(e.currentTarget.value)}
              />
            </>
          )}
          <label for="type-schema">JSON Schema (2020-12)</label>
          <textarea
            id="type-schema"
            rows={8}
            required
            value={schema}
            onInput={(e) => setSchema(e.currentTarget.value)}
          />
          <label for="type-description">Description (optional)</label>
          <input
            id="type-description"
            value={description}
            onInput={(e) => setDescription(e.currentTarget.value)}
          />
          <label class="check">
            <input
              type="checkbox"
              checked={deprecated}
              onChange={(e) => setDeprecated(e.currentTarget.checked)}
            />{' '}
            Deprecated
          </label>
          <button type="submit" disabled={action.busy}>
            Register
          </button>
          <Problem error={action.error} />
        </form>
      </details>
      {result && (
        <div role="status" class="notice" data-testid="registered">
          <p>
            {result.type} is at version {result.version}.{' '}
            {result.compatibility && (
              <Badge kind={result.compatibility.backward === 'compatible' ? 'ok' : 'warn'}>
                {result.compatibility.backward}
              </Badge>
            )}
          </p>
          {result.compatibility && result.compatibility.findings.length > 0 && (
            <ul>
              {result.compatibility.findings.map((f) => (
                <li key={`${f.pointer}${f.message}`}>
                  <code>{f.pointer}</code> ({f.kind}): {f.message}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </>
  )
}

export function Types() {
  const { data, error, reload } = useLoad(
    () => get<{ event_types: EventType[] }>('/v1/event-types?limit=1000'),
    [],
  )
  return (
    <>
      <h1>Event types</h1>
      <RegisterType onRegistered={reload} />
      <Problem error={error} />
      <Table
        items={data?.event_types}
        error={error}
        what="event types"
        empty={'No event type registered: events of any type are stored as they come.'}
        columns={['Type', 'Version', 'Description', 'Registered']}
        row={(t) => (
          <tr key={t.type}>
            <td>
              <a href={`#/types/${encodeURIComponent(t.type)}`}>{t.type}</a>{' '}
              {t.deprecated && <Badge kind="warn">deprecated</Badge>}
            </td>
            <td>{t.version}</td>
            <td class="wrap">{t.description ?? ''}</td>
            <td>
              <Time at={t.created_at} />
            </td>
          </tr>
        )}
      />
    </>
  )
}

/** One type: its latest schema, and every version (each one's URL is its events' `dataschema`). */
export function TypePage({ type }: { type: string }) {
  const [shown, setShown] = useState<number | undefined>(undefined)
  const { data, error, reload } = useLoad(
    () =>
      get<EventType & { versions: Array<{ version: number; url: string; created_at: string }> }>(
        typePath(type),
      ),
    [type],
  )
  const version = useLoad(
    () =>
      shown === undefined
        ? Promise.resolve(undefined)
        : get<EventType>(`${typePath(type)}/versions/${shown}`),
    [type, shown],
  )
  const current = version.data ?? data
  return (
    <>
      <h1>
        {type} {data?.deprecated && <Badge kind="warn">deprecated</Badge>}
      </h1>
      <Problem error={error ?? version.error} />
      {data === undefined ? (
        !error && <Loading what="the type" />
      ) : (
        <>
          {data.description && <p>{data.description}</p>}
          <RegisterType type={type} current={data} onRegistered={reload} />
          <h2>Versions</h2>
          <ul>
            {data.versions.map((v) => (
              <li key={v.version}>
                <button type="button" class="link" onClick={() => setShown(v.version)}>
                  Version {v.version}
                </button>{' '}
                <Time at={v.created_at} /> <code class="muted">{v.url}</code>
              </li>
            ))}
          </ul>
          <h2>Schema of version {current?.version}</h2>
          <Json value={current?.schema} />
        </>
      )}
    </>
  )
}
