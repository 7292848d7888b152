import { type Connection, get } from '../api.ts'
import { DeleteButton, Problem, Table, Time, useAction, useLoad } from '../ui.tsx'

export function Connections() {
  const { data, error, reload } = useLoad(
    () => get<{ node: string; connections: Connection[] }>('/v1/connections?limit=1000'),
    [],
    3000,
  )
  const action = useAction()
  return (
    <>
      <h1>Connections</h1>
      <p class="muted">
        This node's open streams and sockets{data ? ` (node ${data.node})` : ''}, refreshed every 3 seconds.
      </p>
      <Problem error={error ?? action.error} />
      <Table
        items={data?.connections}
        error={error}
        what="connections"
        empty={'No open connection.'}
        columns={['Protocol', 'Topics', 'Who', 'Remote', 'Since', <span class="sr-only">Actions</span>]}
        row={(connection) => (
          <tr key={connection.id} data-connection={connection.id}>
            <td>{connection.protocol}</td>
            <td class="wrap">
              {connection.topics.join(', ')}
              {connection.topic_count > connection.topics.length
                ? ` and ${connection.topic_count - connection.topics.length} more`
                : ''}
            </td>
            <td>{connection.sub ?? connection.actor ?? 'anonymous'}</td>
            <td>{connection.remote ?? '—'}</td>
            <td>
              <Time at={connection.since} />
            </td>
            <td>
              <DeleteButton
                action={action}
                path={`/v1/connections/${encodeURIComponent(connection.id)}`}
                label={`Close ${connection.protocol} connection ${connection.id}`}
                then={reload}
              >
                Close
              </DeleteButton>
            </td>
          </tr>
        )}
      />
    </>
  )
}
