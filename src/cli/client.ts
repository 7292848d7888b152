import { apiKeyProblem, ConfigError } from '../config/config.ts'

/** What the client commands share: where the server is and how to authenticate to it. */
export interface ClientOptions {
  url: string
  apiKey: string | undefined
}

export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
} as const

export const CLIENT_HELP = `  --url <url>          Herald's base URL (HERALD_URL, default http://127.0.0.1:8080)
  --api-key <key>      API key (HERALD_API_KEY)`

export function clientOptions(values: {
  url?: string | undefined
  'api-key'?: string | undefined
}): ClientOptions {
  const url = (values.url ?? process.env['HERALD_URL'] ?? 'http://127.0.0.1:8080').replace(/\/$/, '')
  const fromFlag = values['api-key'] !== undefined
  const apiKey = fromFlag ? values['api-key'] : process.env['HERALD_API_KEY'] || undefined
  // Checked here rather than left to fetch, which refuses such a header with a TypeError.
  const problem = apiKey === undefined ? undefined : apiKeyProblem(apiKey)
  if (problem !== undefined) {
    throw new ConfigError(
      `the API key (${fromFlag ? '--api-key' : 'HERALD_API_KEY'}) cannot be sent: ${problem}`,
    )
  }
  return { url, apiKey }
}

export function headers(options: ClientOptions, extra: Record<string, string> = {}): Record<string, string> {
  return options.apiKey ? { ...extra, authorization: `Bearer ${options.apiKey}` } : extra
}

/** Turns a problem+json answer into a one-line error message. */
export async function failure(response: Response): Promise<Error> {
  const text = await response.text()
  try {
    const problem = JSON.parse(text) as { title?: string; detail?: string }
    return new Error(`${response.status} ${problem.title ?? ''}: ${problem.detail ?? text}`)
  } catch {
    return new Error(`${response.status}: ${text}`)
  }
}

export function topicPath(topic: string): string {
  return `/v1/topics/${topic}`
}
