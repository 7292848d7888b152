import type pg from 'pg'
import type {
  AttemptRecord,
  ClaimedRun,
  ClaimRequest,
  DeliveryRecord,
  DeliveryState,
  ExtendRequest,
  HookChanges,
  HookKind,
  HookRecord,
  ReplayRequest,
  Settlement,
  SettleResult,
  VerificationRecord,
  VerificationState,
} from '../store.ts'

// WORK IN PROGRESS: being written (the PostgreSQL mirror of src/store/sqlite/deliveries.ts).
const todo = (): never => {
  throw new Error('not written yet')
}

export class PostgresDeliveries {
  readonly pool: pg.Pool
  readonly firstDelayMs: number
  constructor(pool: pg.Pool, firstDelayMs: number) {
    this.pool = pool
    this.firstDelayMs = firstDelayMs
  }
  async createHook(_hook: HookRecord): Promise<HookRecord> {
    return todo()
  }
  async hook(_id: string): Promise<HookRecord | undefined> {
    return todo()
  }
  async hooks(_o: {
    after?: string
    limit: number
    kind?: HookKind
    topicUrl?: string
  }): Promise<HookRecord[]> {
    return todo()
  }
  async upsertWebsubSubscription(_s: HookRecord): Promise<HookRecord> {
    return todo()
  }
  async websubSubscription(_t: string, _c: string): Promise<HookRecord | undefined> {
    return todo()
  }
  async recordVerification(_v: Omit<VerificationRecord, 'id'>): Promise<number> {
    return todo()
  }
  async completeVerification(
    _i: number,
    _s: VerificationState,
    _e: string | null,
    _n: number,
  ): Promise<void> {
    return todo()
  }
  async verifications(_o: { topicUrl?: string; limit: number }): Promise<VerificationRecord[]> {
    return todo()
  }
  async updateHook(_i: string, _c: HookChanges, _n: number): Promise<HookRecord | undefined> {
    return todo()
  }
  async deleteHook(_i: string): Promise<boolean> {
    return todo()
  }
  async claim(_r: ClaimRequest): Promise<ClaimedRun[]> {
    return todo()
  }
  async extend(_r: ExtendRequest): Promise<ClaimedRun | undefined> {
    return todo()
  }
  async settle(_s: Settlement): Promise<SettleResult> {
    return todo()
  }
  async nextDueAt(): Promise<number | null> {
    return todo()
  }
  async delivery(_h: string, _i: number): Promise<DeliveryRecord | undefined> {
    return todo()
  }
  async attempts(
    _h: string,
    _o: { deliveryId?: number; eventId?: string; before?: number; limit: number },
  ): Promise<AttemptRecord[]> {
    return todo()
  }
  async retry(_h: string, _i: number, _n: number): Promise<DeliveryRecord | undefined> {
    return todo()
  }
  async replay(_h: string, _r: ReplayRequest): Promise<{ queued: number }> {
    return todo()
  }
  async counts(): Promise<Record<DeliveryState, number>> {
    return { pending: 0, delivered: 0, failed: 0 }
  }
  /** Settled deliveries last touched before `before`, ended WebSub subscriptions, old verifications. */
  async prune(_before: number, _now: number): Promise<number> {
    return 0
  }
}
