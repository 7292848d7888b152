import type { DeliveryOutcome, HookRecord } from '../store/store.ts'

/**
 * How a settlement's outcomes move each hook's failure clock (`failing_since`), and when a hook that
 * keeps failing is disabled. Every store backend applies these the same way: policy here, SQL there.
 */

/** What a settlement's outcomes say about their hooks' health. */
export interface OutcomeHealth {
  /**
   * Per outcome (by index), whether its failure counts against its hook: not when a later outcome of
   * the same hook in this settlement succeeded, as the hook's failure clock follows its latest outcome
   * (failures before a later success do not start a failing streak).
   */
  countsAsFailure: boolean[]
  /** Hooks whose latest outcome in this settlement is a success: their failing streak ends. */
  recovered: string[]
}

export function outcomeHealth(
  outcomes: ReadonlyArray<Pick<DeliveryOutcome, 'hookId' | 'result'>>,
): OutcomeHealth {
  const lastSuccess = new Map<string, number>()
  const lastOutcome = new Map<string, number>()
  outcomes.forEach((outcome, index) => {
    if (outcome.result === 'delivered') lastSuccess.set(outcome.hookId, index)
    lastOutcome.set(outcome.hookId, index)
  })
  return {
    countsAsFailure: outcomes.map(
      (outcome, index) => outcome.result !== 'delivered' && (lastSuccess.get(outcome.hookId) ?? -1) < index,
    ),
    recovered: [...lastSuccess]
      .filter(([hookId, index]) => lastOutcome.get(hookId) === index)
      .map(([id]) => id),
  }
}

/**
 * Why a failing hook is to be disabled now, or undefined when it is not: a webhook failing
 * continuously (since `failing_since`) for `disableAfterMs` or more. A WebSub subscription is never
 * disabled: it stays active, and is retried to, until its lease ends (WebSub §7).
 */
export function disableReason(
  hook: Pick<HookRecord, 'kind' | 'state' | 'failing_since'>,
  now: number,
  disableAfterMs: number,
): string | undefined {
  if (hook.kind !== 'webhook' || hook.state === 'disabled' || hook.failing_since === null) return undefined
  if (now - hook.failing_since < disableAfterMs) return undefined
  return `failing continuously since ${new Date(hook.failing_since).toISOString()}`
}
