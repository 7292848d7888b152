import type { Logger } from 'pino'
import { SYSTEM_TOPIC } from '../delivery/dispatcher.ts'
import type { TopicLog } from '../log/topic-log.ts'
import { actorOf, type Principal } from './principal.ts'

/**
 * Records an administrative action (keys, hooks, topic settings, WebSub subscriptions) as an event on
 * herald.system: the audit trail is then stored, replayable and deliverable like any topic. `data`
 * never holds a secret. Each event names its actor (`root`, `key:<id>`, `token:<sub>`, `anonymous`).
 */
export type Audit = (
  principal: Principal,
  type: string,
  subject: string,
  data: Record<string, unknown>,
) => Promise<void>

export function createAudit(log: TopicLog, logger: Pick<Logger, 'error'>): Audit {
  return async (principal, type, subject, data) => {
    try {
      await log.publish(SYSTEM_TOPIC, [
        { type, source: '/herald/audit', subject, data: { actor: actorOf(principal), ...data } },
      ])
    } catch (error) {
      // The action itself is done and answered: a trail that could not be written is logged loudly.
      logger.error({ err: error, type, subject }, 'writing the audit event failed')
    }
  }
}
