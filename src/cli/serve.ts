import { parseArgs } from 'node:util'
import { startHerald } from '../app.ts'
import { loadConfig, OPTIONS, type OptionFlag } from '../config/config.ts'

export const SERVE_HELP = `Usage: herald serve [options]

Runs the Herald server. Every option can also be set by its environment variable;
a flag wins over the variable, which wins over the default.

Options:
${OPTIONS.map((option) => {
  const flag = option.flag ? `--${option.flag} <value>` : '(environment only)'
  const fallback = option.default === undefined ? '' : ` [default: ${option.default}]`
  return `  ${flag.padEnd(34)} ${option.env}\n      ${option.help}${fallback}`
}).join('\n')}
  -h, --help                         Show this help.

Signals: SIGTERM or SIGINT (Ctrl-C) drains (held requests are answered, in-flight ones finish)
and exits 0. A second signal more than a second later exits at once, without draining; the same
signal repeated within a second (a Ctrl-C that a wrapper forwards too) is the same request.
With --tls-cert, SIGHUP reads the certificate and key files again: new connections get the new
certificate, open ones keep theirs; files that cannot be used are logged and the old ones kept.
`

/**
 * A repeat of the same signal this soon is the same request, not a second one: a terminal's Ctrl-C
 * reaches every process of the foreground group, and the wrappers in it (bin/herald.js under an
 * older Node, npm) forward it once more. A deliberate second Ctrl-C comes later, and exits at once.
 */
const REPEAT_WINDOW_MS = 1000

/** `herald serve`'s flags: one per option that has a flag, and --help. */
export function serveOptions(): Record<string, { type: 'string' | 'boolean'; short?: string }> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  }
  for (const option of OPTIONS) if (option.flag) options[option.flag] = { type: 'string' }
  return options
}

export async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: serveOptions(), allowPositionals: false })
  if (values['help']) {
    process.stdout.write(SERVE_HELP)
    return
  }
  const flags: Partial<Record<OptionFlag, string>> = {}
  for (const option of OPTIONS) {
    const value = option.flag && values[option.flag]
    if (typeof value === 'string') flags[option.flag as OptionFlag] = value
  }
  const config = loadConfig(flags)
  const herald = await startHerald(config)
  let first: { signal: string; at: number } | undefined
  const stop = (signal: string) => {
    const now = performance.now()
    if (first !== undefined) {
      if (signal === first.signal && now - first.at < REPEAT_WINDOW_MS) {
        herald.logger.info({ signal }, 'the same signal again at once: one request, still draining')
        return
      }
      herald.logger.warn({ signal }, 'second signal: exiting without draining')
      process.exit(1)
    }
    first = { signal, at: now }
    herald.logger.info({ signal }, 'draining')
    herald.close().then(
      () => process.exit(0),
      (error) => {
        herald.logger.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  // Only with TLS: without it SIGHUP keeps its default (the process ends), as before.
  const reload = herald.reloadTls
  if (reload !== undefined) {
    process.on('SIGHUP', () => {
      herald.logger.info({ signal: 'SIGHUP' }, 'reloading the TLS certificate')
      reload()
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}
