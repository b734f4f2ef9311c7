import { LeaseError, SANLK } from '../ondisk';
import { Clock } from './clock';

/**
 * Cancellation of long lease waits (a delta takeover waits 140 s, a paxos takeover up to
 * host_dead). sanlock sleeps one second at a time and checks for lockspace removal or shutdown
 * between sleeps; we do the same with an AbortSignal and/or a deadline on the caller's clock.
 */
export interface Cancel {
  signal?: AbortSignal;
  /** Give up once clock.nowMs() reaches this value. */
  deadlineMs?: number;
}

/** Throw SANLK_ERROR (sanlock's general error, as on remove/shutdown) with `what` if the caller cancelled or its deadline passed. */
export function checkCancel(clock: Clock, cancel: Cancel | undefined, what: () => string): void {
  if (!cancel) return;
  if (cancel.signal?.aborted) throw new LeaseError(SANLK.ERROR, `${what()}: cancelled`);
  if (cancel.deadlineMs !== undefined && clock.nowMs() >= cancel.deadlineMs) {
    throw new LeaseError(SANLK.ERROR, `${what()}: gave up at the caller's deadline`);
  }
}

/** Sleep `seconds` in one-second steps, checking cancellation before each step. */
export async function sleepSeconds(
  clock: Clock, seconds: number, cancel: Cancel | undefined, what: () => string,
): Promise<void> {
  for (let i = 0; i < seconds; i++) {
    checkCancel(clock, cancel, what);
    await clock.sleep(1000);
  }
  checkCancel(clock, cancel, what);
}

/** A short sleep (ballot back-off, shared retry) that still honours cancellation. */
export async function sleepMs(clock: Clock, ms: number, cancel: Cancel | undefined, what: () => string): Promise<void> {
  checkCancel(clock, cancel, what);
  await clock.sleep(ms);
  checkCancel(clock, cancel, what);
}

/** sanlock must never write timestamp 0 (= free) for a held lease, even in the first second after boot. */
export function leaseTimestamp(clock: Clock): number {
  return Math.max(1, clock.monotime());
}

/**
 * Exponential back-off: the delay before retry number `retry` (0 for the first), `initial`
 * times `factor` (2) per retry, never more than `max` (any unit). The one back-off rule of the
 * agent: lockspace joins, libvirt connections.
 */
export function backoffDelay(retry: number, o: { initial: number; max: number; factor?: number }): number {
  return Math.min(o.max, o.initial * Math.pow(o.factor ?? 2, retry));
}
