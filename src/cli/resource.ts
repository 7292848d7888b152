import { type ClientOptions, failure, headers, request } from './client.ts'
import { UsageError } from './publish.ts'

// What the commands that manage a resource of the API share (`herald keys`, `herald types`): their
// `<subcommand> [<argument>]` shape, and how they print answers and lists.

/**
 * `herald <command> <subcommand> [<argument>]`: the subcommand is one of `subcommands`, and the
 * argument (`what` it is, as the error names it) is given exactly when `takesArgument` says so.
 */
export function subcommandOf(
  command: string,
  positionals: string[],
  subcommands: readonly string[],
  takesArgument: (subcommand: string) => boolean,
  what: string,
  usage: string,
): { subcommand: string; argument: string | undefined } {
  const [subcommand, argument, ...rest] = positionals
  if (subcommand === undefined || !subcommands.includes(subcommand)) {
    throw new UsageError(`${command} takes one of ${subcommands.join(', ')}.`, usage)
  }
  const takes = takesArgument(subcommand)
  if (rest.length > 0 || (takes ? argument === undefined : argument !== undefined)) {
    throw new UsageError(
      takes ? `${command} ${subcommand} takes one ${what}.` : `${command} ${subcommand} takes no arguments.`,
      usage,
    )
  }
  return { subcommand, argument }
}

/** Prints a JSON answer on one line if its status is one of `ok`; else its problem is the error. */
export async function printAnswer(response: Response, ok: readonly number[]): Promise<void> {
  if (!ok.includes(response.status)) throw await failure(response)
  process.stdout.write(`${JSON.stringify(await response.json())}\n`)
}

/** Prints every entry of a paged list (`{"<field>": […], "next"}`), a JSON line each, page by page. */
export async function printPages(client: ClientOptions, path: string, field: string): Promise<void> {
  let after = ''
  for (;;) {
    const response = await request(client, `${path}?limit=1000&after=${encodeURIComponent(after)}`, {
      headers: headers(client),
    })
    if (!response.ok) throw await failure(response)
    const page = (await response.json()) as Record<string, unknown[]> & { next: string | null }
    for (const entry of page[field]!) process.stdout.write(`${JSON.stringify(entry)}\n`)
    if (page.next === null) return
    after = page.next
  }
}
