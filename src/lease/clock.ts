/**
 * Time as the lease algorithms see it. sanlock writes CLOCK_MONOTONIC whole seconds on disk and
 * judges other hosts only by whether their timestamps change, so a virtual clock can replace it
 * completely in the simulation.
 */
export interface Clock {
  /** Whole seconds of this host's monotonic clock (what goes on disk). */
  monotime(): number;
  /** Milliseconds of the same clock, for deadlines and scheduling. */
  nowMs(): number;
  sleep(ms: number): Promise<void>;
  /** Uniform [0,1): random back-off after an aborted ballot. */
  random(): number;
}

/** The real clock: process.hrtime is CLOCK_MONOTONIC on Linux, the same value sanlock writes. */
export const systemClock: Clock = {
  monotime: () => Number(process.hrtime.bigint() / 1000000000n),
  nowMs: () => Number(process.hrtime.bigint() / 1000000n),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
};
