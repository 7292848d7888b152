import { parseArgs } from 'node:util'
import { CLIENT_HELP, CLIENT_OPTIONS, clientOptions, failure, headers, request } from './client.ts'
import { UsageError } from './publish.ts'

export const CLUSTER_HELP = `Usage: herald cluster [options]

Shows the nodes serving a running Herald's store (GET /v1/cluster, an admin request): each
node's id, when it started and last sent its heartbeat, and which one leads (runs retention,
expiry and the recovery of expired delivery leases). Prints the answer as one line of JSON,
or with --table as a table for people to read.

Options:
  --table              Print a table instead of JSON
${CLIENT_HELP}
  -h, --help           Show this help.
`

export const CLUSTER_OPTIONS = {
  ...CLIENT_OPTIONS,
  table: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

interface ClusterAnswer {
  store: string
  bus: string
  nodes: Array<{ id: string; started_at: string; heartbeat_at: string; leader: boolean }>
}

export async function cluster(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: CLUSTER_OPTIONS })
  if (values.help) {
    process.stdout.write(CLUSTER_HELP)
    return
  }
  if (positionals.length > 0) {
    throw new UsageError('cluster takes no arguments.', 'Run "herald cluster --help" for its options.\n')
  }
  const client = clientOptions(values, 'Run "herald cluster --help" for its options.\n')
  const response = await request(client, '/v1/cluster', { headers: headers(client) })
  if (!response.ok) throw await failure(response)
  const answer = (await response.json()) as ClusterAnswer
  process.stdout.write(values.table ? table(answer) : `${JSON.stringify(answer)}\n`)
}

function table(answer: ClusterAnswer): string {
  const rows = [
    ['NODE', 'LEADER', 'STARTED', 'HEARTBEAT'],
    ...answer.nodes.map((node) => [node.id, node.leader ? 'yes' : '', node.started_at, node.heartbeat_at]),
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
  const lines = rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  )
  return `store ${answer.store}, bus ${answer.bus}\n${lines.join('\n')}\n`
}
