import { get } from '../api.ts'
import { Badge, Problem, Table, Time, useLoad } from '../ui.tsx'

interface Subscription {
  id: string
  topic: string
  callback: string
  state: 'active' | 'expired'
  signed: boolean
  lease_seconds: number | null
  expires_at: string | null
  failing_since: string | null
}

interface Verification {
  id?: number
  mode: string
  topic_url: string
  callback: string
  state: string
  error: string | null
  requested_at: string | null
  completed_at: string | null
  [key: string]: unknown
}

export function WebSub() {
  const subscriptions = useLoad(
    () => get<{ subscriptions: Subscription[] }>('/v1/websub/subscriptions?limit=1000'),
    [],
  )
  const verifications = useLoad(
    () => get<{ verifications: Verification[] }>('/v1/websub/verifications?limit=100'),
    [],
  )
  return (
    <>
      <h1>WebSub subscriptions</h1>
      <Problem error={subscriptions.error} />
      <Table
        items={subscriptions.data?.subscriptions}
        error={subscriptions.error}
        what="subscriptions"
        empty={'No subscription.'}
        columns={['Topic URL', 'Callback', 'State', 'Lease ends', 'Signed', 'Failing since']}
        row={(s) => (
          <tr key={s.id}>
            <td class="wrap">{s.topic}</td>
            <td class="wrap">{s.callback}</td>
            <td>
              <Badge kind={s.state === 'active' ? 'ok' : 'warn'}>{s.state}</Badge>
            </td>
            <td>
              <Time at={s.expires_at} />
            </td>
            <td>{s.signed ? 'yes' : 'no'}</td>
            <td>
              <Time at={s.failing_since} />
            </td>
          </tr>
        )}
      />
      <h2>Verifications of intent</h2>
      <Problem error={verifications.error} />
      <Table
        items={verifications.data?.verifications}
        error={verifications.error}
        what="verifications"
        empty={'No verification.'}
        columns={['Mode', 'Topic URL', 'Callback', 'Outcome', 'Requested', 'Completed']}
        row={(v) => (
          <tr key={v.id ?? `${v.callback} ${v.requested_at}`}>
            <td>{v.mode}</td>
            <td class="wrap">{v.topic_url}</td>
            <td class="wrap">{v.callback}</td>
            <td>
              {v.state}
              {v.error ? `: ${v.error}` : ''}
            </td>
            <td>
              <Time at={v.requested_at} />
            </td>
            <td>
              <Time at={v.completed_at} />
            </td>
          </tr>
        )}
      />
    </>
  )
}
