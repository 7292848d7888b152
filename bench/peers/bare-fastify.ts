// The baseline for ingest: a Fastify route that parses the same JSON body and answers 201 with a
// small JSON object, storing nothing. What Herald adds on top of this is the cost of durability.
import Fastify from 'fastify'

const app = Fastify({ logger: false })
app.post('/v1/topics/:topic/events', async (_request, reply) => reply.code(201).send({ ok: true }))
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
process.stdout.write(
  `${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address?.port })}\n`,
)
process.on('SIGTERM', () => app.close().then(() => process.exit(0)))
