import { useEffect, useState } from 'preact/hooks'
import { get, type HeraldEvent, streamUrl, type Topic } from '../api.ts'
import { Loading, Problem, Sparkline, Time, useLoad } from '../ui.tsx'

const EVERY_MS = 3000
const SAMPLES = 40
const SYSTEM = 'herald.system'

/** The sums of the Prometheus text's samples by name and labels (`name{label="x"}` → value). */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const space = line.lastIndexOf(' ')
    values.set(line.slice(0, space), Number(line.slice(space + 1)))
  }
  return values
}

function sum(values: Map<string, number>, name: string, label?: string): number {
  let total = 0
  for (const [key, value] of values) {
    if (key === name || (key.startsWith(`${name}{`) && (label === undefined || key.includes(label))))
      total += value
  }
  return total
}

interface Sample {
  at: number
  published: number
  delivered: number
  failed: number
  durationSum: number
  durationCount: number
  connections: Record<string, number>
}

function sampleOf(text: string): Sample {
  const values = parseMetrics(text)
  return {
    at: performance.now(),
    published: sum(values, 'herald_events_published_total'),
    delivered: sum(values, 'herald_delivery_attempts_total', 'outcome="delivered"'),
    failed:
      sum(values, 'herald_delivery_attempts_total', 'outcome="retry"') +
      sum(values, 'herald_delivery_attempts_total', 'outcome="failed"') +
      sum(values, 'herald_delivery_attempts_total', 'outcome="gone"'),
    durationSum: sum(values, 'herald_delivery_attempt_duration_seconds_sum'),
    durationCount: sum(values, 'herald_delivery_attempt_duration_seconds_count'),
    connections: Object.fromEntries(
      ['sse', 'ndjson', 'ws'].map((p) => [p, sum(values, 'herald_connections_open', `protocol="${p}"`)]),
    ),
  }
}

interface Rates {
  publish: number
  delivered: number
  failed: number
  latencyMs: number
}

function useMetrics() {
  const [samples, setSamples] = useState<Sample[]>([])
  const [error, setError] = useState<unknown>(undefined)
  useEffect(() => {
    let live = true
    const scrape = async () => {
      try {
        const response = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' })
        const sample = sampleOf(await response.text())
        if (live) setSamples((list) => [...list, sample].slice(-(SAMPLES + 1)))
      } catch (problem) {
        if (live) setError(problem)
      }
    }
    void scrape()
    const timer = setInterval(scrape, EVERY_MS)
    return () => {
      live = false
      clearInterval(timer)
    }
  }, [])
  const rates: Rates[] = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!
    const b = samples[i]!
    const seconds = Math.max(0.001, (b.at - a.at) / 1000)
    const count = b.durationCount - a.durationCount
    rates.push({
      publish: (b.published - a.published) / seconds,
      delivered: (b.delivered - a.delivered) / seconds,
      failed: (b.failed - a.failed) / seconds,
      latencyMs: count > 0 ? ((b.durationSum - a.durationSum) / count) * 1000 : 0,
    })
  }
  return { last: samples.at(-1), rates, error }
}

function Tile({
  title,
  value,
  unit,
  values,
}: {
  title: string
  value: string
  unit: string
  values: number[]
}) {
  return (
    <div class="tile">
      <h3>{title}</h3>
      <p class="big">
        {value} <span class="muted">{unit}</span>
      </p>
      <Sparkline values={values} label={`${title}, the last ${values.length} samples`} />
    </div>
  )
}

function SystemEvents() {
  const [events, setEvents] = useState<HeraldEvent[]>([])
  const [error, setError] = useState<unknown>(undefined)
  useEffect(() => {
    let source: EventSource | undefined
    let live = true
    get<Topic>(`/v1/topics/${SYSTEM}`).then(
      (topic) => {
        if (!live) return
        source = new EventSource(
          streamUrl(`/v1/topics/${SYSTEM}/events?after=${Math.max(0, topic.head_seq - 10)}`),
        )
        source.onmessage = (message) =>
          setEvents((list) => [JSON.parse(message.data) as HeraldEvent, ...list].slice(0, 20))
      },
      (problem) => live && setError(problem),
    )
    return () => {
      live = false
      source?.close()
    }
  }, [])
  return (
    <section aria-labelledby="system">
      <h2 id="system">Recent herald.system events</h2>
      <Problem error={error} />
      {events.length === 0 ? (
        <p class="muted">None yet.</p>
      ) : (
        <ul class="events">
          {events.map((event) => (
            <li key={event.seq}>
              <details>
                <summary>
                  <span class="seq">#{event.seq}</span> <strong>{event.type}</strong>{' '}
                  <span class="muted">{event.time ? new Date(event.time).toLocaleString() : ''}</span>
                </summary>
                <pre class="json">{JSON.stringify(event.data, null, 2)}</pre>
              </details>
            </li>
          ))}
        </ul>
      )}
    </section>
  )
}

interface Cluster {
  store: string
  bus: string
  nodes: Array<{ id: string; started_at: string; heartbeat_at: string; leader: boolean }>
}

export function Overview() {
  const { last, rates, error } = useMetrics()
  const cluster = useLoad(() => get<Cluster>('/v1/cluster'), [], 10_000)
  const now = rates.at(-1)
  const fixed = (n: number | undefined, digits = 1) => (n === undefined ? '…' : n.toFixed(digits))
  return (
    <>
      <h1>Overview</h1>
      <Problem error={error} />
      <section aria-labelledby="rates">
        <h2 id="rates">Traffic (every {EVERY_MS / 1000} s)</h2>
        <div class="tiles">
          <Tile
            title="Published"
            value={fixed(now?.publish)}
            unit="events/s"
            values={rates.map((r) => r.publish)}
          />
          <Tile
            title="Deliveries OK"
            value={fixed(now?.delivered)}
            unit="/s"
            values={rates.map((r) => r.delivered)}
          />
          <Tile
            title="Deliveries failed"
            value={fixed(now?.failed)}
            unit="/s"
            values={rates.map((r) => r.failed)}
          />
          <Tile
            title="Delivery latency"
            value={fixed(now?.latencyMs)}
            unit="ms"
            values={rates.map((r) => r.latencyMs)}
          />
        </div>
        {last && (
          <p data-testid="totals">
            Since start: {last.published} events published, {last.delivered} deliveries succeeded,{' '}
            {last.failed} attempts failed.
          </p>
        )}
      </section>
      <section aria-labelledby="open">
        <h2 id="open">Open connections</h2>
        {last ? (
          <ul class="inline-list">
            {Object.entries(last.connections).map(([protocol, count]) => (
              <li key={protocol}>
                {protocol}: <strong>{count}</strong>
              </li>
            ))}
          </ul>
        ) : (
          <Loading what="metrics" />
        )}
      </section>
      <section aria-labelledby="cluster">
        <h2 id="cluster">Cluster</h2>
        <Problem error={cluster.error} />
        {cluster.data && (
          <>
            <p>
              Store {cluster.data.store}, bus {cluster.data.bus}.
            </p>
            <ul>
              {cluster.data.nodes.map((node) => (
                <li key={node.id}>
                  <code>{node.id}</code> {node.leader && <strong>leader</strong>} since{' '}
                  <Time at={node.started_at} />, heartbeat <Time at={node.heartbeat_at} />
                </li>
              ))}
            </ul>
          </>
        )}
      </section>
      <SystemEvents />
    </>
  )
}
