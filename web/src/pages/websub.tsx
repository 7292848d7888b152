import { get } from '../api.ts'
import { Badge, Loading, Problem, Time, useLoad } from '../ui.tsx'

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
      {subscriptions.data === undefined ? (
        !subscriptions.error && <Loading what="subscriptions" />
      ) : subscriptions.data.subscriptions.length === 0 ? (
        <p>No subscription.</p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Topic URL</th>
                <th scope="col">Callback</th>
                <th scope="col">State</th>
                <th scope="col">Lease ends</th>
                <th scope="col">Signed</th>
                <th scope="col">Failing since</th>
              </tr>
            </thead>
            <tbody>
              {subscriptions.data.subscriptions.map((s) => (
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
              ))}
            </tbody>
          </table>
        </div>
      )}
      <h2>Verifications of intent</h2>
      <Problem error={verifications.error} />
      {verifications.data === undefined ? (
        !verifications.error && <Loading what="verifications" />
      ) : verifications.data.verifications.length === 0 ? (
        <p>No verification.</p>
      ) : (
        <div class="scroll">
          <table>
            <thead>
              <tr>
                <th scope="col">Mode</th>
                <th scope="col">Topic URL</th>
                <th scope="col">Callback</th>
                <th scope="col">Outcome</th>
                <th scope="col">Requested</th>
                <th scope="col">Completed</th>
              </tr>
            </thead>
            <tbody>
              {verifications.data.verifications.map((v, i) => (
                <tr key={v.id ?? i}>
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
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  )
}
