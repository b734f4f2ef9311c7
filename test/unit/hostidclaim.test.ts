import { chooseHostId } from '../../src/agent/hostidclaim';
import { deltaAcquire } from '../../src/lease/delta';
import { MiB } from '../../src/ondisk';
import { MemStorage } from '../helpers/memstorage';
import { initLockspace } from '../sim/areas';
import { VirtualScheduler } from '../sim/virtualclock';

/** host_id = auto's choice (src/agent/hostidclaim.ts) over an in-memory lockspace. */
function setup() {
  const sched = new VirtualScheduler();
  const clock = sched.clock({ bootMs: 1_000_000 });
  const st = new MemStorage({ size: 2 * MiB, clock: sched.clock() });
  initLockspace(st, 0, 'LS', 1);
  const choose = (o: { hostName?: string; remembered?: number; rejected?: number[]; limit?: number } = {}) =>
    sched.run(chooseHostId({
      storage: st, offset: 0, spaceName: 'LS', hostName: o.hostName ?? 'me', ioTimeout: 1, clock,
      remembered: o.remembered, rejected: new Set(o.rejected ?? []), limit: o.limit, log: () => undefined, stopped: () => false,
    }));
  const take = (hostId: number, hostName: string) =>
    sched.run(deltaAcquire({ storage: st, offset: 0, spaceName: 'LS', hostId, hostName, ioTimeout: 1, clock }));
  return { choose, take };
}

describe('host_id = auto: which slot to try', () => {
  it('prefers the remembered id, then a slot with our name, then one of the lowest free slots', async () => {
    const { choose, take } = setup();
    await take(7, 'me');
    await take(1, 'other');
    expect(await choose({ remembered: 42 })).toEqual({ hostId: 42, kind: 'remembered' });
    expect(await choose()).toEqual({ hostId: 7, kind: 'named' });
    const free = await choose({ hostName: 'new' });
    expect(free.kind).toBe('free');
    expect([1, 7]).not.toContain(free.hostId);
    expect(free.hostId).toBeLessThanOrEqual(18); // among the 16 lowest free slots
  });

  it('never chooses a rejected id or one above the limit (max_hosts)', async () => {
    const { choose, take } = setup();
    await take(2, 'me');
    expect((await choose({ rejected: [2] })).kind).toBe('free');
    for (let i = 0; i < 20; i++) {
      const c = await choose({ hostName: 'new', limit: 3, rejected: [1] });
      expect(c).toEqual({ hostId: 3, kind: 'free' });
    }
    expect((await choose({ remembered: 5, limit: 3, hostName: 'new', rejected: [1] })).hostId).toBe(3);
  });
});
