/**
 * Lease areas with fewer host slots than max_hosts (config max_hosts, `direct init -n`): an
 * acquire reads only the leader, the request and num_hosts dblocks, and still sees every dblock
 * the leader says is in use when the area has more slots than it expected.
 */
import { LeaseError, MiB, SANLK } from '../../src/ondisk';
import { acquireResource, releaseResource } from '../../src/lease/resource';
import { ResourceLocation } from '../../src/lease/token';
import { MemStorage } from '../helpers/memstorage';
import { initLockspace, initResource } from '../sim/areas';
import { LockspaceMember } from '../sim/member';
import { VirtualScheduler } from '../sim/virtualclock';

const RES_OFF = MiB;
const KiB = 1024;

function world(numHosts: number, expect?: number) {
  const sched = new VirtualScheduler();
  const st = new MemStorage({ id: 'disk', size: 2 * MiB, clock: sched.clock() });
  initLockspace(st, 0, 'LS', 10);
  initResource(st, RES_OFF, 'LS', 'RES1', undefined, numHosts);
  const res: ResourceLocation = { storage: st, offset: RES_OFF, spaceName: 'LS', resourceName: 'RES1', numHosts: expect };
  const member = (hostId: number) => new LockspaceMember(sched.clock({ bootMs: 1000 * hostId * 1000 }), st, { spaceName: 'LS', hostId, hostName: `h${hostId}`, ioTimeout: 10 });
  return { sched, st, res, member };
}

describe('acquire on an area with num_hosts below max_hosts', () => {
  it('reads 128 KiB per read of a 250-slot 512/1M area when it expects 250 slots (sanlock: 1 MiB first, then 128 KiB)', async () => {
    const w = world(250, 250);
    const h1 = w.member(1);
    await w.sched.run(h1.join());
    const before = w.st.stats.readBytes;
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
    // first read, phase 1 read, phase 2 read: 256 sectors each (252 rounded up to a power of two)
    expect(w.st.stats.readBytes - before).toBe(3 * 128 * KiB);
    await w.sched.run(releaseResource(t, { clock: h1.clock }));
  });

  it('without an expectation reads the whole area first, as sanlock', async () => {
    const w = world(250);
    const h1 = w.member(1);
    await w.sched.run(h1.join());
    const before = w.st.stats.readBytes;
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
    expect(w.st.stats.readBytes - before).toBe(MiB + 2 * 128 * KiB);
  });

  it('expecting 250 slots on a 2000-slot area reads again and checks every dblock in use (-214 for slot 1500)', async () => {
    const w = world(2000, 250);
    // a corrupt dblock far beyond the expected range: sanlock refuses the lease for it
    w.st.data.fill(0x5a, RES_OFF + (2 + 1499) * 512, RES_OFF + (2 + 1499) * 512 + 56);
    const h1 = w.member(1);
    await w.sched.run(h1.join());
    let err: unknown;
    try {
      await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(LeaseError);
    expect((err as LeaseError).rv).toBe(SANLK.DBLOCK_CHECKSUM);
  });

  it('refuses a host_id above num_hosts with -228, naming the slots', async () => {
    const w = world(250, 250);
    const h = w.member(251);
    await w.sched.run(h.join());
    let err: unknown;
    try {
      await w.sched.run(acquireResource(w.res, h.host, { clock: h.clock, liveness: h.liveness }));
    } catch (e) {
      err = e;
    }
    expect((err as LeaseError).rv).toBe(SANLK.LEADER_NUMHOSTS);
    expect((err as LeaseError).message).toMatch(/250 host slots, our host_id is 251/);
  });
});
