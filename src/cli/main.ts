import { ConfigError } from '../config/config.ts'
import { CLUSTER_HELP, CLUSTER_OPTIONS, cluster } from './cluster.ts'
import { HOOKS_HELP, hooks, hooksOptions } from './hooks.ts'
import { KEYS_HELP, KEYS_OPTIONS, keys } from './keys.ts'
import { LISTEN_HELP, LISTEN_OPTIONS, listen } from './listen.ts'
import { PUBLISH_HELP, PUBLISH_OPTIONS, publish, UsageError } from './publish.ts'
import { SERVE_HELP, serve, serveOptions } from './serve.ts'
import { didYouMean } from './suggest.ts'
import { TAIL_HELP, TAIL_OPTIONS, tail } from './tail.ts'
import { TOKEN_HELP, TOKEN_OPTIONS, token } from './token.ts'
import { TYPES_HELP, TYPES_OPTIONS, types } from './types.ts'

const HELP = `Herald: one event gateway for webhooks, WebSub, SSE, WebSockets and polling.

Usage: herald <command> [options]

Commands:
  serve      Run the server (herald serve --help lists every option)
  publish    Publish an event to a topic
  tail       Follow a topic and print its events
  hooks      Manage webhooks: create, list, update, delete, deliveries, retry, replay
  listen     Receive webhooks locally, verify their signatures and print them
  cluster    Show the nodes serving the store, and which one leads
  keys       Manage scoped API keys: create, list, show, revoke
  types      Manage the event-type catalog: put, list, show
  token      Mint a signed token (JWT) with HERALD_JWT_SECRET, for --token or a browser

Run "herald <command> --help" for a command's options.
`

type Options = Record<string, { type: string; short?: string }>

interface Command {
  run: (args: string[]) => Promise<void>
  help: string
  /** The options the command takes, given its arguments (hooks: they depend on its subcommand). */
  options: (args: string[]) => Options
  /** Words that name the command in `herald <words> --help`. */
  name: (args: string[]) => string
}

const COMMANDS: Record<string, Command> = {
  serve: { run: serve, help: SERVE_HELP, options: serveOptions, name: () => 'serve' },
  publish: { run: publish, help: PUBLISH_HELP, options: () => PUBLISH_OPTIONS, name: () => 'publish' },
  tail: { run: tail, help: TAIL_HELP, options: () => TAIL_OPTIONS, name: () => 'tail' },
  hooks: {
    run: hooks,
    help: HOOKS_HELP,
    options: (args) => hooksOptions(args[0]),
    name: (args) => (args[0] !== undefined && !args[0].startsWith('-') ? `hooks ${args[0]}` : 'hooks'),
  },
  listen: { run: listen, help: LISTEN_HELP, options: () => LISTEN_OPTIONS, name: () => 'listen' },
  cluster: { run: cluster, help: CLUSTER_HELP, options: () => CLUSTER_OPTIONS, name: () => 'cluster' },
  keys: { run: keys, help: KEYS_HELP, options: () => KEYS_OPTIONS, name: () => 'keys' },
  types: { run: types, help: TYPES_HELP, options: () => TYPES_OPTIONS, name: () => 'types' },
  token: { run: token, help: TOKEN_HELP, options: () => TOKEN_OPTIONS, name: () => 'token' },
}

/**
 * parseArgs' message for an unknown option, with the nearest valid one: caught here for every
 * command rather than in each. The option is the first quoted part of Node's message.
 */
function unknownOption(error: Error, command: Command, args: string[]): string {
  const start = error.message.indexOf("'")
  const end = error.message.indexOf("'", start + 1)
  const option = start >= 0 && end > start ? error.message.slice(start + 1, end) : undefined
  if (option === undefined) return error.message
  // Long options only: a one-letter option is too short to be near anything in particular.
  const long = Object.keys(command.options(args)).filter((name) => name.length > 1)
  const suggestion = option.startsWith('--') ? didYouMean(option.slice(2), long, (name) => `--${name}`) : ''
  return `unknown option ${option}.${suggestion} Run "herald ${command.name(args)} --help" for its options.`
}

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP)
    return name === undefined ? 1 : 0
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (!command) {
    const suggestion = didYouMean(name, Object.keys(COMMANDS))
    process.stderr.write(
      `herald: unknown command "${name}".${suggestion}\n${suggestion ? 'Run "herald --help" for the commands.\n' : `\n${HELP}`}`,
    )
    return 1
  }
  try {
    await command.run(args)
    return 0
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`herald ${name}: ${error.message}\n\n${error.help}`)
    } else if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`herald ${name}: ${unknownOption(error as Error, command, args)}\n`)
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
