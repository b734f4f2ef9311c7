/**
 * KillPolicy against the kill deadline, on a hand-driven clock: the SIGKILL goes out at
 * min(SIGTERM + grace, deadline), judged by the clock (not by counted sleeps). The real-process
 * case is test/agent/kill-deadline.test.ts.
 */
import { Clock } from '../../src/lease/clock';
import { FailedOwner, killDeadline, killMarginSeconds, KillPolicy } from '../../src/agent/failure';

function setup(opts: { stallMs?: number; reusedAfterMs?: number } = {}) {
  let t = 1_000_000;
  const t0 = t;
  const sent: Array<{ sig: string; at: number }> = [];
  let dead = false;
  const clock: Clock = {
    monotime: () => Math.floor(t / 1000),
    nowMs: () => t,
    // A stall (the agent stopped) makes the first sleep come back late.
    sleep: async (ms) => { t += ms + (opts.stallMs ?? 0); opts.stallMs = 0; },
    random: Math.random,
  };
  const logs: string[] = [];
  const policy = new KillPolicy({
    graceSeconds: 40, clock, log: (_l, m) => logs.push(m),
    kill: (_pid, sig) => {
      if (dead) throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' });
      sent.push({ sig, at: t });
      if (sig === 'SIGKILL') dead = true;
    },
    identify: (pid) => (dead ? undefined : { pid, startTime: opts.reusedAfterMs !== undefined && t - t0 >= opts.reusedAfterMs ? 999 : 77 }),
  });
  const owner = (extra: Partial<FailedOwner> = {}): FailedOwner => ({ uuid: 'u', name: 'victim', pid: 4242, reason: 'lockspace lost', ...extra });
  return { policy, sent, logs, owner, now: () => t };
}

describe('KillPolicy and the kill deadline', () => {
  it('margin: max(8 s, 2·io); deadline = lastSuccess + host_dead − margin', () => {
    expect(killMarginSeconds(1)).toBe(8);
    expect(killMarginSeconds(10)).toBe(20);
    expect(killDeadline(100, 1)).toEqual({ hostDeadAtMs: 168_000, killDeadlineMs: 160_000 });
  });

  it('without a deadline: SIGTERM, SIGKILL after the grace period', async () => {
    const s = setup();
    const t0 = s.now();
    await s.policy.onLeaseFailure(s.owner());
    expect(s.sent.map((x) => x.sig)).toEqual(['SIGTERM', 'SIGKILL']);
    expect(s.sent[1].at - t0).toBe(40_000);
  });

  it('a deadline before the grace period ends cuts it short', async () => {
    const s = setup();
    const t0 = s.now();
    await s.policy.onLeaseFailure(s.owner({ killDeadlineMs: t0 + 12_500, hostDeadAtMs: t0 + 20_500 }));
    expect(s.sent.map((x) => x.sig)).toEqual(['SIGTERM', 'SIGKILL']);
    expect(s.sent[1].at).toBe(t0 + 12_500);
    expect(s.logs.join('\n')).toMatch(/SIGKILL now: other hosts may take its leases in 8 s \(host_dead\), kill_grace_seconds 40 cut short/);
  });

  it('past the deadline already: SIGKILL at once, no SIGTERM', async () => {
    const s = setup();
    const t0 = s.now();
    await s.policy.onLeaseFailure(s.owner({ killDeadlineMs: t0 - 1000, hostDeadAtMs: t0 + 7000 }));
    expect(s.sent).toEqual([{ sig: 'SIGKILL', at: t0 }]);
    expect(s.logs[0]).toMatch(/SIGKILL now: other hosts may take its leases in 7 s/);
  });

  it('never signals a pid that now names another process', async () => {
    const s = setup();
    await s.policy.onLeaseFailure(s.owner({ process: { pid: 4242, startTime: 12 } }));
    expect(s.sent).toEqual([]);
    expect(s.logs[0]).toMatch(/pid 4242 now belongs to another process .*not signalled/);
  });

  it('stops signalling when the pid is reused during the grace period', async () => {
    const s = setup({ reusedAfterMs: 5000 });
    await s.policy.onLeaseFailure(s.owner({ process: { pid: 4242, startTime: 77 } }));
    expect(s.sent.map((x) => x.sig)).toEqual(['SIGTERM']);
    expect(s.logs.join('\n')).toMatch(/now belongs to another process; the owner is gone, nothing more is signalled/);
  });

  it('the agent stalled during the grace period: SIGKILL as soon as it runs again', async () => {
    const s = setup({ stallMs: 30_000 });
    const t0 = s.now();
    await s.policy.onLeaseFailure(s.owner({ killDeadlineMs: t0 + 20_000, hostDeadAtMs: t0 + 28_000 }));
    expect(s.sent.map((x) => x.sig)).toEqual(['SIGTERM', 'SIGKILL']);
    // woke at t0 + 31 s, past the deadline: no further waiting
    expect(s.sent[1].at).toBe(t0 + 31_000);
  });
});
