// What the fan-out peers share: reading a request body, and telling the benchmark their port.
import type { IncomingMessage, Server } from 'node:http'

export async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** One JSON line on stdout, the form bench/lib.ts startProcess waits for. */
export function reportListening(server: Server): void {
  const address = server.address()
  process.stdout.write(
    `${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address?.port })}\n`,
  )
}
