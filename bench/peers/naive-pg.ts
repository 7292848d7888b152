// The naive PostgreSQL peer for ingest (bench/ingest-postgres.ts): what a service written the plain
// way does with the same request. A Fastify route, a pg Pool, and per request one transaction on its
// own connection, each statement awaited in turn: BEGIN; take the topic's next seq by advancing a
// counter row (`… head_seq = head_seq + n RETURNING`, which locks the row until COMMIT); INSERT the
// event rows `… RETURNING`; COMMIT. Same durability as Herald (synchronous_commit at the server's
// default, on: every 201 waited for its WAL flush). Gapless per topic, like Herald's seq.
// With NAIVE_SEQ=sequence, the simplest form instead: one autocommitted `INSERT … RETURNING` per
// request, seq from a sequence (not per topic, and with gaps on rollback: what Herald must not do),
// no counter row, so no lock shared between requests.
//   env: BENCH_DATABASE_URL, NAIVE_SCHEMA (created here; the benchmark drops it), NAIVE_POOL (16),
//        NAIVE_SEQ (counter | sequence)
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import pg from 'pg'

const url = process.env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test'
const schema = process.env['NAIVE_SCHEMA'] ?? 'bench_naive'
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error(`NAIVE_SCHEMA: not a plain name: ${schema}`)
const pool = new pg.Pool({
  connectionString: url,
  max: Number(process.env['NAIVE_POOL'] ?? 16),
  options: `-c search_path=${schema}`,
})

const setup = await pool.connect()
try {
  await setup.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
  await setup.query(`CREATE TABLE IF NOT EXISTS topics (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL UNIQUE, head_seq bigint NOT NULL)`)
  await setup.query(`CREATE TABLE IF NOT EXISTS events (
    topic_id bigint NOT NULL REFERENCES topics (id), seq bigint NOT NULL, id text NOT NULL,
    stored_at bigint NOT NULL, body text NOT NULL, PRIMARY KEY (topic_id, seq))`)
  await setup.query('CREATE SEQUENCE IF NOT EXISTS events_seq')
  await setup.query("INSERT INTO topics (name, head_seq) VALUES ('bench', 0) ON CONFLICT (name) DO NOTHING")
} finally {
  setup.release()
}

type Input = Record<string, unknown>

const SEQUENCE = process.env['NAIVE_SEQ'] === 'sequence'
const topicIds = new Map<string, string>()

const app = Fastify({ logger: false })
app.post<{ Params: { topic: string }; Body: Input | Input[] }>(
  '/v1/topics/:topic/events',
  async (request, reply) => {
    const inputs = Array.isArray(request.body) ? request.body : [request.body]
    const topic = request.params.topic
    if (SEQUENCE) {
      // One statement, autocommitted: the row's seq is drawn from the sequence inside the INSERT.
      let topicId = topicIds.get(topic)
      if (topicId === undefined) {
        const found = await pool.query<{ id: string }>(
          'INSERT INTO topics (name, head_seq) VALUES ($1, 0) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id',
          [topic],
        )
        topicId = found.rows[0]!.id
        topicIds.set(topic, topicId)
      }
      const now = Date.now()
      const values: unknown[] = []
      const events = inputs.map((input) => ({ ...input, id: randomUUID(), topic }))
      const rows = events.map((event, i) => {
        // The stored body has no seq (it is the row's column); the answer adds it.
        values.push(topicId, event.id, now, JSON.stringify(event))
        const p = i * 4
        return `($${p + 1}, nextval('events_seq'), $${p + 2}, $${p + 3}, $${p + 4})`
      })
      const inserted = await pool.query<{ seq: string }>(
        `INSERT INTO events (topic_id, seq, id, stored_at, body) VALUES ${rows.join(', ')} RETURNING seq`,
        values,
      )
      const bodies = inserted.rows.map((row, i) => JSON.stringify({ ...events[i], seq: Number(row.seq) }))
      reply.code(201).header('content-type', 'application/json')
      return Array.isArray(request.body) ? `[${bodies.join(',')}]` : bodies[0]
    }
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const head = await client.query<{ id: string; head_seq: string }>(
        `INSERT INTO topics (name, head_seq) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET head_seq = topics.head_seq + EXCLUDED.head_seq
         RETURNING id, head_seq`,
        [topic, inputs.length],
      )
      const topicId = head.rows[0]!.id
      const first = Number(head.rows[0]!.head_seq) - inputs.length + 1
      const now = Date.now()
      const values: unknown[] = []
      const rows = inputs.map((input, i) => {
        const event = { ...input, id: randomUUID(), topic, seq: first + i }
        values.push(topicId, event.seq, event.id, now, JSON.stringify(event))
        const p = i * 5
        return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5})`
      })
      const inserted = await client.query<{ body: string }>(
        `INSERT INTO events (topic_id, seq, id, stored_at, body) VALUES ${rows.join(', ')} RETURNING body`,
        values,
      )
      await client.query('COMMIT')
      const bodies = inserted.rows.map((row) => row.body)
      reply.code(201).header('content-type', 'application/json')
      return Array.isArray(request.body) ? `[${bodies.join(',')}]` : bodies[0]
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {})
      throw error
    } finally {
      client.release()
    }
  },
)
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
process.stdout.write(
  `${JSON.stringify({ msg: 'listening', port: typeof address === 'object' && address?.port })}\n`,
)
process.on('SIGTERM', () =>
  app
    .close()
    .then(() => pool.end())
    .then(() => process.exit(0)),
)
