import { ConfigError } from '../config/config.ts'
import { HOOKS_HELP, hooks } from './hooks.ts'
import { LISTEN_HELP, listen } from './listen.ts'
import { PUBLISH_HELP, publish, UsageError } from './publish.ts'
import { SERVE_HELP, serve } from './serve.ts'
import { TAIL_HELP, tail } from './tail.ts'

const HELP = `Herald: one event gateway for webhooks, WebSub, SSE, WebSockets and polling.

Usage: herald <command> [options]

Commands:
  serve      Run the server (herald serve --help lists every option)
  publish    Publish an event to a topic
  tail       Follow a topic and print its events
  hooks      Manage webhooks: create, list, update, delete, deliveries, retry, replay
  listen     Receive webhooks locally, verify their signatures and print them

Run "herald <command> --help" for a command's options.
`

const COMMANDS: Record<string, { run: (args: string[]) => Promise<void>; help: string }> = {
  serve: { run: serve, help: SERVE_HELP },
  publish: { run: publish, help: PUBLISH_HELP },
  tail: { run: tail, help: TAIL_HELP },
  hooks: { run: hooks, help: HOOKS_HELP },
  listen: { run: listen, help: LISTEN_HELP },
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP)
    return name === undefined ? 1 : 0
  }
  const command = COMMANDS[name]
  if (!command) {
    process.stderr.write(`herald: unknown command "${name}"\n\n${HELP}`)
    return 1
  }
  try {
    await command.run(args)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`herald ${name}: ${error.message}\n\n${error.help}`)
    } else if (
      error instanceof ConfigError ||
      (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
    ) {
      process.stderr.write(`herald ${name}: ${(error as Error).message}\n`)
    } else {
      process.stderr.write(`herald ${name}: ${(error as Error).message ?? error}\n`)
    }
    return 1
  }
}

const code = await main(process.argv.slice(2))
// `serve` keeps running after main returns; the other commands end here.
if (code !== 0) process.exit(code)
