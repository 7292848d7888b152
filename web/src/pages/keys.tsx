import { useState } from 'preact/hooks'
import { get, post } from '../api.ts'
import { DeleteButton, isoOf, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'

interface Key {
  id: string
  name: string
  scopes: Array<{ actions: string[]; topics: string[] }>
  expires_at: string | null
  rate_limit: string | null
  created_at: string
  created_by: string | null
}

const ACTIONS = ['subscribe', 'publish', 'admin'] as const

function CreateKey({ onCreated }: { onCreated: () => void }) {
  const [name, setName] = useState('')
  const [actions, setActions] = useState<string[]>(['subscribe'])
  const [topics, setTopics] = useState('*')
  const [expires, setExpires] = useState('')
  const [secret, setSecret] = useState<string | undefined>(undefined)
  const action = useAction()
  const submit = (event: Event) => {
    event.preventDefault()
    void action.run(async () => {
      const created = await post<Key & { key: string }>('/v1/keys', {
        name,
        scopes: [{ actions, topics: topics.split(/[\s,]+/).filter(Boolean) }],
        ...(isoOf(expires) ? { expires_at: isoOf(expires) } : {}),
      })
      setSecret(created.key)
      onCreated()
    })
  }
  return (
    <>
      <details>
        <summary>Create a key</summary>
        <form onSubmit={submit} class="stack">
          <label for="key-name">Name</label>
          <input id="key-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
          <fieldset>
            <legend>Rights</legend>
            {ACTIONS.map((right) => (
              <label key={right} class="check">
                <input
                  type="checkbox"
                  checked={actions.includes(right)}
                  onChange={(e) =>
                    setActions(
                      e.currentTarget.checked ? [...actions, right] : actions.filter((a) => a !== right),
                    )
                  }
                />{' '}
                {right}
              </label>
            ))}
          </fieldset>
          <label for="key-topics">Topic patterns (comma separated: orders, orders/*, **)</label>
          <input id="key-topics" required value={topics} onInput={(e) => setTopics(e.currentTarget.value)} />
          <label for="key-expires">Expires (optional)</label>
          <input
            id="key-expires"
            type="datetime-local"
            value={expires}
            onInput={(e) => setExpires(e.currentTarget.value)}
          />
          <button type="submit" disabled={action.busy}>
            Create
          </button>
          <Problem error={action.error} />
        </form>
      </details>
      {secret && (
        <p role="status" class="notice">
          The new key, shown this once (Herald keeps only its hash):{' '}
          <code data-testid="new-key">{secret}</code>
        </p>
      )}
    </>
  )
}

export function Keys() {
  const { data, error, reload } = useLoad(() => get<{ keys: Key[] }>('/v1/keys?limit=1000'), [])
  const action = useAction()
  return (
    <>
      <h1>Keys</h1>
      <CreateKey onCreated={reload} />
      <Problem error={error ?? action.error} />
      <Table
        items={data?.keys}
        error={error}
        what="keys"
        empty={'No scoped key (the root key is HERALD_API_KEY).'}
        columns={['Name', 'Scopes', 'Expires', 'Created', <span class="sr-only">Actions</span>]}
        row={(key) => (
          <tr key={key.id}>
            <td>
              {key.name} <code class="muted">{key.id}</code>
            </td>
            <td>
              {key.scopes
                .map((scope) => `${scope.actions.join('+')} on ${scope.topics.join(', ')}`)
                .join('; ')}
            </td>
            <td>
              <Time at={key.expires_at} />
            </td>
            <td>
              <Time at={key.created_at} /> {key.created_by ? `by ${key.created_by}` : ''}
            </td>
            <td>
              <DeleteButton
                action={action}
                path={`/v1/keys/${key.id}`}
                question={`Revoke key ${key.name}?`}
                label={`Revoke key ${key.name}`}
                then={reload}
              >
                Revoke
              </DeleteButton>
            </td>
          </tr>
        )}
      />
    </>
  )
}
