import type { ComponentChildren } from 'preact'
import { useCallback, useEffect, useState } from 'preact/hooks'
import { ApiError, del } from './api.ts'

/** Loads with `load`, again when `deps` change or `reload()` is called; every `everyMs` if given. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], everyMs?: number) {
  const [data, setData] = useState<T | undefined>(undefined)
  const [error, setError] = useState<unknown>(undefined)
  const [tick, setTick] = useState(0)
  const reload = useCallback(() => setTick((n) => n + 1), [])
  useEffect(() => {
    let live = true
    const run = () =>
      load().then(
        (value) => {
          if (!live) return
          setData(value)
          setError(undefined)
        },
        (problem: unknown) => live && setError(problem),
      )
    void run()
    const timer = everyMs === undefined ? undefined : setInterval(run, everyMs)
    return () => {
      live = false
      if (timer !== undefined) clearInterval(timer)
    }
  }, [...deps, tick])
  return { data, error, reload }
}

export function messageOf(error: unknown): string {
  if (error instanceof ApiError) return `${error.status} ${error.title}: ${error.detail}`
  return error instanceof Error ? error.message : String(error)
}

export function Problem({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null
  return (
    <p class="problem" role="alert">
      {messageOf(error)}
    </p>
  )
}

export function Loading({ what }: { what: string }) {
  return <p class="muted">Loading {what}…</p>
}

/**
 * A list shown as a table, in its three states: loading (no items yet and no error, which the page
 * shows itself), `empty` when there are none, else a scrollable table with these column headers and
 * `row` for each item (a `<tr>` with its key).
 */
export function Table<T>({
  items,
  error,
  what,
  empty,
  columns,
  row,
}: {
  items: T[] | undefined
  error: unknown
  what: string
  empty: ComponentChildren
  columns: ComponentChildren[]
  row: (item: T) => ComponentChildren
}) {
  if (items === undefined) return error ? null : <Loading what={what} />
  if (items.length === 0) return <p>{empty}</p>
  return (
    <div class="scroll">
      <table>
        <thead>
          <tr>
            {columns.map((column, index) => (
              <th scope="col" key={index}>
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{items.map((item) => row(item))}</tbody>
      </table>
    </div>
  )
}

export function Time({ at }: { at: string | null | undefined }) {
  if (!at) return <span class="muted">—</span>
  const date = new Date(at)
  return (
    <time dateTime={at} title={at}>
      {date.toLocaleString()}
    </time>
  )
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge badge-${kind}`}>{children}</span>
}

/** A small inline SVG line of the last values (no chart library). */
export function Sparkline({ values, label }: { values: number[]; label: string }) {
  const width = 160
  const height = 36
  const max = Math.max(1e-9, ...values)
  const step = values.length > 1 ? width / (values.length - 1) : width
  const points = values
    .map((value, i) => `${(i * step).toFixed(1)},${(height - 2 - (value / max) * (height - 4)).toFixed(1)}`)
    .join(' ')
  return (
    <svg class="spark" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label}>
      <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  )
}

/** Runs an action from a button or form, with its error shown and a busy state. */
export function useAction() {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<unknown>(undefined)
  const run = useCallback(async (action: () => Promise<unknown>) => {
    setBusy(true)
    setError(undefined)
    try {
      await action()
      return true
    } catch (problem) {
      setError(problem)
      return false
    } finally {
      setBusy(false)
    }
  }, [])
  return { busy, error, run }
}

/**
 * A destructive button: asks `question` first (when given), DELETEs `path` through `action` (busy and
 * error shown by its page), then calls `then`.
 */
export function DeleteButton({
  action,
  path,
  question,
  label,
  then,
  children,
}: {
  action: ReturnType<typeof useAction>
  path: string
  question?: string
  label?: string
  then: () => void
  children: ComponentChildren
}) {
  return (
    <button
      type="button"
      class="danger"
      disabled={action.busy}
      aria-label={label}
      onClick={() =>
        (question === undefined || confirm(question)) &&
        action.run(async () => {
          await del(path)
          then()
        })
      }
    >
      {children}
    </button>
  )
}

export function Json({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>
}

/** A local datetime-local value to ISO 8601 (UTC), or undefined when empty. */
export function isoOf(local: string): string | undefined {
  if (!local) return undefined
  const at = new Date(local)
  return Number.isNaN(at.getTime()) ? undefined : at.toISOString()
}
