import type pg from 'pg'

/**
 * Transactions on the pipelined pool (database.ts): statements issued one after another without
 * awaiting each other go in one round trip and run in that order, each seeing what the ones before it
 * wrote. A failed statement aborts the transaction: the ones after it fail too, and COMMIT then
 * answers ROLLBACK without an error (see `expectCommit`).
 */

/** A transaction that lost a deadlock (40P01) or a serialization check (40001) is run again. */
const TRANSACTION_TRIES = 3

/**
 * Awaits statements issued together and returns their results in order. The first failure is thrown
 * once every statement has answered, so that none of them is left with an unhandled rejection.
 * `undefined` stands for a statement that was not needed (its result is undefined).
 */
export async function together<T extends readonly unknown[] | []>(
  queries: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(queries)
  for (const result of results) if (result.status === 'rejected') throw result.reason
  return results.map((result) => (result as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>
  }
}

/** COMMIT of a transaction in which a statement failed answers ROLLBACK, without an error. */
export function expectCommit(result: pg.QueryResult): void {
  if (result.command !== 'COMMIT') throw new Error(`The transaction was rolled back (${result.command}).`)
}

/**
 * Runs `work` on one pooled connection, which it gets for itself: `work` begins its transaction
 * (BEGIN sent with its first statements) and commits it. On failure the connection is destroyed,
 * which ends the transaction with it; a deadlock or a serialization failure (nothing of the
 * transaction was kept) runs `work` again on another connection.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect()
    try {
      const result = await work(client)
      client.release()
      return result
    } catch (error) {
      client.release(error instanceof Error ? error : new Error(String(error)))
      const code = (error as { code?: unknown } | undefined)?.code
      if ((code === '40P01' || code === '40001') && attempt < TRANSACTION_TRIES) continue
      throw error
    }
  }
}
