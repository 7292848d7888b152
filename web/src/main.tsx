import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { ApiError, request, storedKey, storeKey } from './api.ts'
import { Connections } from './pages/connections.tsx'
import { Deliveries, DeliveryPage } from './pages/deliveries.tsx'
import { HookPage, Hooks } from './pages/hooks.tsx'
import { Keys } from './pages/keys.tsx'
import { Overview } from './pages/overview.tsx'
import { TopicPage, Topics } from './pages/topics.tsx'
import { TypePage, Types } from './pages/types.tsx'
import { WebSub } from './pages/websub.tsx'
import { useRoute } from './router.ts'
import { messageOf } from './ui.tsx'
import './style.css'

const PAGES = [
  ['overview', 'Overview'],
  ['topics', 'Topics'],
  ['hooks', 'Hooks'],
  ['deliveries', 'Deliveries'],
  ['connections', 'Connections'],
  ['websub', 'WebSub'],
  ['types', 'Event types'],
  ['keys', 'Keys'],
] as const

/** Whether the server answers these credentials (none: open mode). 401 refuses; 403 is a narrower key. */
async function check(key: string | null): Promise<void> {
  try {
    await request('/v1/topics?limit=1', { key })
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return
    throw error
  }
}

function SignIn({ onSignedIn, reason }: { onSignedIn: () => void; reason: string | undefined }) {
  const [key, setKey] = useState('')
  const [problem, setProblem] = useState<string | undefined>(reason)
  const [busy, setBusy] = useState(false)
  const submit = async (event: Event) => {
    event.preventDefault()
    setBusy(true)
    try {
      await check(key.trim())
      storeKey(key.trim())
      onSignedIn()
    } catch (error) {
      setProblem(messageOf(error))
    } finally {
      setBusy(false)
    }
  }
  return (
    <main id="main" class="signin">
      <h1>Herald console</h1>
      <form onSubmit={submit}>
        <label for="key">API key or token</label>
        <input
          id="key"
          name="key"
          type="password"
          autocomplete="off"
          required
          value={key}
          onInput={(e) => setKey(e.currentTarget.value)}
        />
        <p class="muted">
          Kept in this tab's session storage only, sent as <code>Authorization: Bearer</code>. No cookie.
        </p>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        {problem && (
          <p class="problem" role="alert">
            {problem}
          </p>
        )}
      </form>
    </main>
  )
}

function Page() {
  const route = useRoute()
  const [first, second, third, fourth] = route.parts
  useEffect(() => {
    document.getElementById('main')?.focus({ preventScroll: true })
  }, [route.path])
  switch (first) {
    case undefined:
    case 'overview':
      return <Overview />
    case 'topics':
      return second === undefined ? (
        <Topics />
      ) : (
        <TopicPage key={route.parts.slice(1).join('/')} topic={route.parts.slice(1).join('/')} />
      )
    case 'hooks':
      if (second === undefined) return <Hooks />
      if (third === 'deliveries' && fourth !== undefined) return <DeliveryPage hook={second} id={fourth} />
      return <HookPage id={second} />
    case 'deliveries':
      return <Deliveries params={route.params} />
    case 'connections':
      return <Connections />
    case 'websub':
      return <WebSub />
    case 'types':
      return second === undefined ? <Types /> : <TypePage key={second} type={second} />
    case 'keys':
      return <Keys />
    default:
      return <p>There is no page {route.path}.</p>
  }
}

function App() {
  const [state, setState] = useState<'checking' | 'in' | 'out'>('checking')
  const [reason, setReason] = useState<string | undefined>(undefined)
  const [open, setOpen] = useState(false)
  const route = useRoute()
  useEffect(() => {
    check(storedKey()).then(
      () => setState('in'),
      (error) => {
        if (storedKey()) setReason(messageOf(error))
        storeKey(null)
        setState('out')
      },
    )
  }, [])
  useEffect(() => setOpen(false), [route.path])
  useEffect(() => {
    if (state === 'checking') return
    document.body.dataset['ready'] = state
    // When the first page (or the sign-in) is on screen: bench/console.ts reads it.
    if (performance.getEntriesByName('herald:ready').length === 0) performance.mark('herald:ready')
  }, [state])
  if (state === 'checking') return <p class="muted">Connecting…</p>
  if (state === 'out') return <SignIn reason={reason} onSignedIn={() => setState('in')} />
  const current = route.parts[0] ?? 'overview'
  return (
    <>
      <button type="button" class="skip" onClick={() => document.getElementById('main')?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <a class="brand" href="#/overview">
          Herald
        </a>
        <button
          type="button"
          class="menu"
          aria-expanded={open}
          aria-controls="nav"
          onClick={() => setOpen(!open)}
        >
          Menu
        </button>
        <nav id="nav" aria-label="Pages" class={open ? 'open' : ''}>
          <ul>
            {PAGES.map(([id, name]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={current === id ? 'page' : undefined}>
                  {name}
                </a>
              </li>
            ))}
          </ul>
          {storedKey() && (
            <button
              type="button"
              class="link"
              onClick={() => {
                storeKey(null)
                setState('out')
              }}
            >
              Sign out
            </button>
          )}
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <Page />
      </main>
    </>
  )
}

render(<App />, document.getElementById('app')!)
