/**
 * Work that follows a reply and need not delay the next request: the log line of an acquire or
 * a release, the record of a release, closing a released file.
 *
 * Run right after the reply (setImmediate), it sat in front of a client's next request: a
 * client releasing its leases one by one sends the next release as soon as it has the reply,
 * and the event loop was then busy with the last one's log line (~0.15 ms in winston), SQLite
 * commit (~0.15 ms) and close. So it waits until the event loop would only wait anyway: a
 * storage request has just been handed to its I/O thread (`duringIo`, which the agent's lease
 * files call on every submit: OpenLeaseStorageOptions.onSubmit), or `idleMs` after the first of
 * it was queued when none came. A slice of at most
 * `sliceMs` runs at a time; the rest waits for the next chance. Order is kept.
 *
 * Measured: docs/benchmarks.md, thirteenth round (a release after a hold 2.0× sanlock's against
 * 2.4× in an A/B, within the noise of later runs).
 */
export interface HousekeepingOptions {
  /** Runs what waits this long after the first of it was queued, when no storage request came. */
  idleMs?: number;
  /** One run stops after this much time, the rest waiting for the next chance. */
  sliceMs?: number;
  /** A task that threw: reported, the others run. */
  onError?: (e: unknown) => void;
}

export const HOUSEKEEPING_IDLE_MS = 2;
export const HOUSEKEEPING_SLICE_MS = 0.3;

export class Housekeeping {
  private readonly tasks: Array<() => void> = [];
  private idleTimer: NodeJS.Timeout | undefined;
  private immediate = false;
  private readonly idleMs: number;
  private readonly sliceMs: number;

  constructor(private readonly o: HousekeepingOptions = {}) {
    this.idleMs = o.idleMs ?? HOUSEKEEPING_IDLE_MS;
    this.sliceMs = o.sliceMs ?? HOUSEKEEPING_SLICE_MS;
  }

  /** Queues `fn` for the next quiet moment. */
  later(fn: () => void): void {
    this.tasks.push(fn);
    this.armIdle();
  }

  /** A storage request was just submitted: what waits runs while it is in flight. */
  duringIo(): void {
    if (!this.tasks.length || this.immediate) return;
    this.immediate = true;
    setImmediate(() => {
      this.immediate = false;
      this.run(this.sliceMs);
    });
  }

  /** Runs everything now (at shutdown: the records and closes must not be lost). */
  flush(): void {
    this.run(Infinity);
  }

  get pending(): number {
    return this.tasks.length;
  }

  private armIdle(): void {
    if (this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      this.run(this.sliceMs);
    }, this.idleMs);
    this.idleTimer.unref();
  }

  private run(budgetMs: number): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
    const t0 = performance.now();
    while (this.tasks.length) {
      const fn = this.tasks.shift() as () => void;
      try {
        fn();
      } catch (e) {
        this.o.onError?.(e);
      }
      if (this.tasks.length && performance.now() - t0 >= budgetMs) {
        this.armIdle();
        return;
      }
    }
  }
}
