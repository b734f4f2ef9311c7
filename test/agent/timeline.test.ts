import { Clock, systemClock } from '../../src/lease/clock';
import { LeaseStorage } from '../../src/lease/storage';
import { Lockspace } from '../../src/agent/lockspace';
import { memoryLogger } from '../../src/log/logger';
import { buildLockspaceArea, decodeLeader, DEFAULT_GEOMETRY, sealLeaderInto } from '../../src/ondisk';

/**
 * The lease-loss timeline of one lockspace (io_timeout 1, real time): while renewals succeed the
 * timeline check never runs (an idle agent is not woken for it); when a renewal hangs — its I/O
 * never completes — the warning still comes at 6·io and the loss at 8·io, on the check's own timer.
 */
jest.setTimeout(40000);

/** A lockspace device in memory whose I/O can be made to hang for good. */
class HangableStorage implements LeaseStorage {
  readonly id = 'mem:timeline';
  hung = false;
  writes = 0;
  constructor(private readonly data: Buffer) {}
  private io<T>(f: () => T): Promise<T> {
    return this.hung ? new Promise<T>(() => undefined) : new Promise<T>((r) => setImmediate(() => r(f())));
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.io(() => Buffer.from(this.data.subarray(offset, offset + length)));
  }
  write(offset: number, data: Buffer): Promise<void> {
    this.writes++;
    return this.io(() => { data.copy(this.data, offset); });
  }
}

describe('lease-loss timeline', () => {
  it('runs no check while renewals succeed; warns at 6·io and fails at 8·io when a renewal hangs', async () => {
    const { area, commitSector } = buildLockspaceArea({ spaceName: 'TL', geometry: DEFAULT_GEOMETRY, ioTimeout: 1 });
    commitSector.copy(area, 0);
    const storage = new HangableStorage(area);
    const log = memoryLogger();
    let lostAt: number | undefined;
    let lostReason = '';
    const ls = new Lockspace({ name: 'TL', hostId: 1, path: 'mem', offset: 0, ioTimeout: 1, hostName: 'tl-host' }, systemClock, log,
      { onLost: (_l, reason) => { lostAt = systemClock.monotime(); lostReason = reason; } }, async () => storage);
    const checks = jest.spyOn(ls as unknown as { checkTimeline: () => void }, 'checkTimeline');
    ls.start();
    try {
      await ls.waitJoined(20000);
      // Several renewal intervals (2·io) of successful renewals: the check is never due.
      const renewedBefore = ls.renewals.list().length;
      await new Promise((r) => setTimeout(r, 7000));
      expect(ls.renewals.list().length).toBeGreaterThan(renewedBefore + 1);
      expect(checks).not.toHaveBeenCalled();

      storage.hung = true;
      const last = ls.lease!.lastSuccess;
      const until = Date.now() + 15000;
      while (lostAt === undefined && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(lostAt).toBeDefined();
      // Judged from the last successful renewal, not from the hung one (which never returns).
      expect(lostAt! - last).toBeGreaterThanOrEqual(8);
      expect(lostReason).toMatch(/renewals failed for 8 s/);
      expect(log.lines.some((l) => /warning lockspace TL: no successful renewal for [67] s/.test(l))).toBe(true);
      expect(ls.state).toBe('lost');
    } finally {
      await ls.stop(false);
    }
  });

  it('a renewal that comes due after the lease expired (the agent was stopped) does not write: the lockspace is lost', async () => {
    const { area, commitSector } = buildLockspaceArea({ spaceName: 'TL', geometry: DEFAULT_GEOMETRY, ioTimeout: 1 });
    commitSector.copy(area, 0);
    const storage = new HangableStorage(area);
    // The monotonic clock jumps 36 s, as it does for a process stopped (SIGSTOP) for 36 s.
    let jumpS = 0;
    const clock: Clock = {
      ...systemClock,
      monotime: () => systemClock.monotime() + jumpS,
      nowMs: () => systemClock.nowMs() + jumpS * 1000,
    };
    let lost = '';
    const ls = new Lockspace({ name: 'TL', hostId: 1, path: 'mem', offset: 0, ioTimeout: 1, hostName: 'tl-host' }, clock, memoryLogger(),
      { onLost: (_l, reason) => { lost = reason; } }, async () => storage);
    ls.start();
    try {
      await ls.waitJoined(20000);
      const renewed = ls.renewals.list().length;
      while (ls.renewals.list().length < renewed + 1) await new Promise((r) => setTimeout(r, 100));
      const writes = storage.writes;
      jumpS = 36;
      // The next renewal comes due within 2·io; the lockspace is lost instead, and nothing is written.
      const until = Date.now() + 6000;
      while (!lost && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 2500));
      expect(lost).toMatch(/renewals failed for 3\d s/);
      expect(storage.writes).toBe(writes);
      expect(ls.state).toBe('lost');
    } finally {
      await ls.stop(false);
    }
  });

  it('warns once per host that renews with another io_timeout, not for hosts with ours', async () => {
    const { area, commitSector } = buildLockspaceArea({ spaceName: 'TL', geometry: DEFAULT_GEOMETRY, ioTimeout: 1 });
    commitSector.copy(area, 0);
    // Hosts 2 (io_timeout 5) and 3 (ours, 1) renew every 500 ms: they move at every look.
    const renew = (hostId: number, io: number, ts: number) => {
      const at = (hostId - 1) * 512;
      sealLeaderInto({ ...decodeLeader(area, at), ownerId: hostId, ownerGeneration: 1, timestamp: ts, ioTimeout: io, resourceName: `other${hostId}` }, area, at, 47);
    };
    let ts = 100;
    const tick = () => { ts++; renew(2, 5, ts); renew(3, 1, ts); };
    tick();
    const others = setInterval(tick, 500);
    const log = memoryLogger();
    const ls = new Lockspace({ name: 'TL', hostId: 1, path: 'mem', offset: 0, ioTimeout: 1, hostName: 'tl-host' }, systemClock, log,
      { onLost: () => undefined }, async () => new HangableStorage(area));
    ls.start();
    try {
      await ls.waitJoined(20000);
      const until = Date.now() + 15000;
      while (ls.renewals.list().length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(ls.renewals.list().length).toBeGreaterThanOrEqual(3);
      const warned = log.lines.filter((l) => /uses io_timeout/.test(l));
      expect(warned).toHaveLength(1);
      expect(warned[0]).toMatch(/warning lockspace TL: host 2 \(other2\) uses io_timeout 5 s, this host 1 s/);
    } finally {
      clearInterval(others);
      await ls.stop(false);
    }
  });
});
