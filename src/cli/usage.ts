/** A command line the command cannot run: main prints the message, then the command's help. */
export class UsageError extends Error {
  readonly help: string
  constructor(message: string, help: string) {
    super(message)
    this.name = 'UsageError'
    this.help = help
  }
}
