// What the fan-out peers share: reading a request body, and telling the benchmark their port.
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import type { AddressInfo } from 'node:net'

export async function readBody(request: IncomingMessage | Http2ServerRequest): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** One JSON line on stdout, the form bench/lib.ts startProcess waits for. */
export function reportListening(server: { address(): AddressInfo | string | null }): void {
  const address = server.address()
  process.stdout.write(
    `${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address?.port })}\n`,
  )
}
