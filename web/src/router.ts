import { useEffect, useState } from 'preact/hooks'

/** The page a URL hash names: `#/topics/orders` is `{ parts: ['topics', 'orders'], params }`. */
export interface Route {
  path: string
  parts: string[]
  params: URLSearchParams
}

export function parseHash(hash: string): Route {
  const text = hash.replace(/^#/, '') || '/'
  const [path = '/', search = ''] = text.split('?', 2)
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent)
  return { path, parts, params: new URLSearchParams(search) }
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash))
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash))
    addEventListener('hashchange', onChange)
    return () => removeEventListener('hashchange', onChange)
  }, [])
  return route
}

export function navigate(hash: string): void {
  location.hash = hash
}
