import { readFileSync } from 'fs';
import { join } from 'path';
import {
  DBLOCK_FL_RELEASED, decodeDblock, decodeLeader, decodeModeBlock, LeaseError, LFL_SHORT_HOLD, MiB, SANLK,
} from '../../src/ondisk';
import fc from 'fast-check';
import { dblockBlank, dblockOffset, usedDblocks } from '../../src/lease/ballot';
import { MemStorage } from '../helpers/memstorage';
import { paxosLeaseAcquire, paxosLeaseRelease } from '../../src/lease/paxos';
import { acquireResource, readResourceOwners, releaseResource } from '../../src/lease/resource';
import { ResourceLocation } from '../../src/lease/token';
import { initLockspace, initResource } from '../sim/areas';
import { LockspaceMember } from '../sim/member';
import { VirtualScheduler } from '../sim/virtualclock';

const FIX = join(__dirname, '..', 'fixtures', 'sanlock-3.8.5');
const RES_OFF = MiB;

function world(io = 10, numHosts?: number) {
  const sched = new VirtualScheduler();
  const st = new MemStorage({ id: 'disk', size: 2 * MiB, clock: sched.clock() });
  initLockspace(st, 0, 'LS', io);
  initResource(st, RES_OFF, 'LS', 'RES1', undefined, numHosts);
  const res: ResourceLocation = { storage: st, offset: RES_OFF, spaceName: 'LS', resourceName: 'RES1' };
  const member = (hostId: number, name: string, bootS = 1000 * hostId) =>
    new LockspaceMember(sched.clock({ bootMs: bootS * 1000 }), st, { spaceName: 'LS', hostId, hostName: name, ioTimeout: io });
  const leader = () => decodeLeader(st.data, RES_OFF);
  const dblock = (h: number) => decodeDblock(st.data, RES_OFF + (2 + h - 1) * 512);
  const mode = (h: number) => decodeModeBlock(st.data, RES_OFF + (2 + h - 1) * 512);
  return { sched, st, res, member, leader, dblock, mode };
}

async function rejects(sched: VirtualScheduler, p: Promise<unknown>): Promise<LeaseError> {
  try {
    await sched.run(p);
  } catch (e) {
    return e as LeaseError;
  }
  throw new Error('expected a rejection');
}

describe('paxos acquire: ballots and numbering', () => {
  it('numbers ballots 1, 2001, 4002 (k·max_hosts + host_id) and increments lver', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    const opts1 = { clock: h1.clock, liveness: h1.liveness };

    let t = await w.sched.run(acquireResource(w.res, h1.host, opts1));
    expect(w.dblock(1)).toMatchObject({ mbal: 1, bal: 1, inp: 1, inp2: 1, lver: 1, flags: 0 });
    expect(w.leader()).toMatchObject({ lver: 1, ownerId: 1, ownerGeneration: 1, writeId: 1, writeGeneration: 1 });
    expect(w.leader().timestamp).toBe(w.dblock(1).inp3);
    await w.sched.run(releaseResource(t, { clock: h1.clock }));
    expect(w.dblock(1).flags).toBe(DBLOCK_FL_RELEASED);
    expect(w.leader()).toMatchObject({ lver: 1, timestamp: 0, ownerId: 1 });

    t = await w.sched.run(acquireResource(w.res, h1.host, opts1));
    expect(w.dblock(1)).toMatchObject({ mbal: 2001, bal: 2001, lver: 2 });
    await w.sched.run(releaseResource(t, { clock: h1.clock }));

    const t2 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(w.dblock(2)).toMatchObject({ mbal: 4002, bal: 4002, inp: 2, inp2: 1, lver: 3 });
    expect(t2.lver).toBe(3);
    expect(w.leader()).toMatchObject({ lver: 3, ownerId: 2 });
  });

  it('a free acquire costs one area read, two dblock writes, two dblock reads, one leader write', async () => {
    const w = world(10, 8);
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const r0 = w.st.stats.reads;
    const w0 = w.st.stats.writes;
    const t0 = w.sched.nowMs();
    await w.sched.run(paxosLeaseAcquire(w.res, h1.host, { clock: h1.clock }));
    expect(w.st.stats.reads - r0).toBe(3);
    expect(w.st.stats.writes - w0).toBe(3);
    expect(w.sched.nowMs()).toBe(t0); // zero-latency storage: no waiting at all
  });

  it('from its own release hint, an acquire costs one I/O less (no first area read) and ends as the full path would', async () => {
    const w = world(10, 8);
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const opts = { clock: h1.clock, liveness: h1.liveness };
    const t1 = await w.sched.run(acquireResource(w.res, h1.host, opts));
    const hint = await w.sched.run(releaseResource(t1, { clock: h1.clock }));
    expect(hint).toBeDefined();
    const r0 = w.st.stats.reads;
    const w0 = w.st.stats.writes;
    const t2 = await w.sched.run(acquireResource(w.res, h1.host, { ...opts, hint }));
    expect(w.st.stats.reads - r0).toBe(2);
    expect(w.st.stats.writes - w0).toBe(3);
    expect(t2.lver).toBe(2);
    expect(w.dblock(1)).toMatchObject({ mbal: 2001, bal: 2001, inp: 1, lver: 2, flags: 0 });
    expect(w.leader()).toMatchObject({ lver: 2, ownerId: 1, ownerGeneration: 1 });
    // the lease is really held: another host is refused while we hold it
    const h2 = w.member(2, 'hostB');
    await w.sched.run(h2.join());
    const e = await rejects(w.sched, acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness, ownerNoWait: true }));
    expect([SANLK.ACQUIRE_IDLIVE, SANLK.ACQUIRE_OWNED_RETRY]).toContain(e.rv);
  });

  it('a stale hint (another host took and gave back the lease since) falls back to the full path', async () => {
    const w = world(10, 8);
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    const opts1 = { clock: h1.clock, liveness: h1.liveness };
    const hint = await w.sched.run(acquireResource(w.res, h1.host, opts1).then((t) => releaseResource(t, { clock: h1.clock })));
    const t2 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    await w.sched.run(releaseResource(t2, { clock: h2.clock }));
    expect(w.leader()).toMatchObject({ lver: 2, ownerId: 2, timestamp: 0 });
    const t3 = await w.sched.run(acquireResource(w.res, h1.host, { ...opts1, hint }));
    expect(t3.lver).toBe(3);
    expect(w.leader()).toMatchObject({ lver: 3, ownerId: 1 });
    expect(w.dblock(1)).toMatchObject({ lver: 3, inp: 1 });
  });

  it('a hint for an area initialized again since leaves no future-lver dblock behind for other hosts', async () => {
    const w = world(10, 8);
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    const opts1 = { clock: h1.clock, liveness: h1.liveness };
    let hint;
    for (let i = 0; i < 3; i++) hint = await w.sched.run(acquireResource(w.res, h1.host, opts1).then((t) => releaseResource(t, { clock: h1.clock })));
    expect(w.leader().lver).toBe(3);
    initResource(w.st, RES_OFF, 'LS', 'RES1', undefined, 8); // re-initialized: lver 0, blank dblocks
    // host 2 holds it when host 1 tries with its (stale) hint: host 1 is refused ...
    const t2 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    const e = await rejects(w.sched, acquireResource(w.res, h1.host, { ...opts1, hint, ownerNoWait: true }));
    expect([SANLK.ACQUIRE_IDLIVE, SANLK.ACQUIRE_OWNED_RETRY]).toContain(e.rv);
    // ... and its dblock is blank again, not at lver 4, so host 2 can release and re-acquire
    expect(w.dblock(1)).toMatchObject({ mbal: 0, lver: 0, checksum: 0 });
    await w.sched.run(releaseResource(t2, { clock: h2.clock }));
    const t3 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(t3.lver).toBe(2);
  });

  it('uses max_hosts, not num_hosts, to step ballots (-n 8 lease: still 1, 2001)', async () => {
    const w = world(10, 8);
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(releaseResource(t, { clock: h1.clock }));
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(w.dblock(1).mbal).toBe(2001);
  });

  it('-228 when our host_id exceeds num_hosts; -240 on a requested lver mismatch', async () => {
    const w = world(10, 8);
    const h9 = w.member(9, 'hostI');
    await w.sched.run(h9.join());
    expect((await rejects(w.sched, acquireResource(w.res, h9.host, { clock: h9.clock }))).rv).toBe(SANLK.LEADER_NUMHOSTS);
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const e = await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock, lver: 5 }));
    expect(e.rv).toBe(SANLK.ACQUIRE_LVER);
    expect(e.message).toMatch(/version 0, not the requested 5/);
  });
});

describe('paxos acquire: owners', () => {
  it('-241 in direct mode (no lockspace) when another host holds it (res_acq_h2)', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    const before = Buffer.from(w.st.data);
    const e = await rejects(w.sched, acquireResource(w.res, h2.host, { clock: h2.clock }));
    expect(e.rv).toBe(SANLK.ACQUIRE_LOCKSPACE);
    expect(e.message).toMatch(/held by host 1, generation 1/);
    expect(w.st.data.equals(before)).toBe(true);
  });

  it('-243 naming the holder when the owner renews', async () => {
    const w = world();
    const h1 = w.member(1, 'bc3blade7');
    const h3 = w.member(3, 'hostC');
    await w.sched.run(Promise.all([h1.join(), h3.join()]));
    h1.startRenewals();
    h3.startRenewals();
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
    await w.sched.run(w.sched.sleep(45_000)); // h3's monitor has seen h1 renew
    const e = await rejects(w.sched, acquireResource(w.res, h3.host, { clock: h3.clock, liveness: h3.liveness }));
    expect(e.rv).toBe(SANLK.ACQUIRE_IDLIVE);
    expect(e.message).toMatch(/^resource LS:RES1 is held by host 1 \(node bc3blade7\), generation 1, last renewal \d+ s ago$/);
    expect(w.sched.nowMs()).toBeLessThan(45_000 + 25_000); // at worst one renewal interval
  });

  it('-247 with owner no-wait; a deadline cancels a takeover wait', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h2.startRenewals();
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    // h1 never renews: it looks dead-ish, but not for host_dead yet.
    await w.sched.run(w.sched.sleep(30_000));
    const e = await rejects(w.sched, acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness, ownerNoWait: true }));
    expect(e.rv).toBe(SANLK.ACQUIRE_OWNED_RETRY);
    expect(e.message).toMatch(/held by host 1 \(node hostA\)/);
    const e2 = await rejects(w.sched, acquireResource(w.res, h2.host, {
      clock: h2.clock, liveness: h2.liveness, cancel: { deadlineMs: h2.clock.nowMs() + 10_000 },
    }));
    expect(e2.rv).toBe(-201);
    expect(e2.message).toMatch(/waiting for host 1 \(node hostA\).*to renew or be dead/);
  });

  it('takes over from a dead owner only after its host_dead (140 s at io 10)', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h1.startRenewals();
    h2.startRenewals();
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(w.sched.sleep(60_000));
    await w.sched.run(h1.stopRenewals()); // h1 dies: no more renewals
    const lastRenewalMs = (h1.lease!.lastSuccess * 1000) - 1000 * 1000; // h1 boots at 1000 s
    // Like a client: retry while the owner still looks alive (-243). Right after the owner's
    // last renewal our monitor has just seen it change, so the first tries fail at once.
    const results: number[] = [];
    const acquireWithRetry = async () => {
      for (;;) {
        try {
          return await acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness });
        } catch (e) {
          results.push((e as LeaseError).rv);
          if ((e as LeaseError).rv !== SANLK.ACQUIRE_IDLIVE) throw e;
          await h2.clock.sleep(5_000);
        }
      }
    };
    const t = await w.sched.run(acquireWithRetry());
    const took = w.sched.nowMs();
    expect(results[0]).toBe(SANLK.ACQUIRE_IDLIVE);
    // h2 saw the last change some time after it was written; it must wait > 140 s from then.
    expect(took - lastRenewalMs).toBeGreaterThan(140_000);
    expect(took - lastRenewalMs).toBeLessThan(140_000 + 25_000);
    expect(t.lver).toBe(2);
    expect(w.leader()).toMatchObject({ ownerId: 2, lver: 2 });
  });

  it('takes at once when the owner released its host_id, or it was re-acquired (gen moved on)', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h2.startRenewals();
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(w.sched.sleep(25_000));
    await w.sched.run(h1.join()); // fast reacquire: generation 2
    let t0 = w.sched.nowMs();
    const t = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(w.sched.nowMs() - t0).toBeLessThan(2_000);
    await w.sched.run(releaseResource(t, { clock: h2.clock }));
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(deltaReleaseOf(h1));
    t0 = w.sched.nowMs();
    await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(w.sched.nowMs() - t0).toBeLessThan(2_000);
  });

  it('reclaims a lease of our own older generation at once', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(h1.join()); // restart, same name: generation 2
    const t0 = w.sched.nowMs();
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(w.sched.nowMs()).toBe(t0);
    expect(t.leader).toMatchObject({ ownerId: 1, ownerGeneration: 2, lver: 2 });
  });

  it('sees the owner released when another host committed it and its dblock says RELEASED', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    const h2 = w.member(2, 'hostB');
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h1.startRenewals();
    h2.startRenewals();
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    // Host 2 committed host 1's value (same ballot): write_id 2, owner 1.
    const { sealLeaderInto } = await import('../../src/ondisk');
    const l0 = w.leader();
    w.st.patch(RES_OFF, 512, (b) => sealLeaderInto({ ...l0, writeId: 2 }, b, 0));
    t.leader = w.leader();
    await w.sched.run(releaseResource(t, { clock: h1.clock }));
    expect(w.leader().timestamp).not.toBe(0); // not ours to clear: write_id is 2
    await w.sched.run(w.sched.sleep(45_000));
    const t2 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(t2.leader).toMatchObject({ ownerId: 2, lver: 2 });
  });
});

async function deltaReleaseOf(m: LockspaceMember): Promise<void> {
  const { deltaRelease } = await import('../../src/lease/delta');
  await deltaRelease(m.lease!);
}

describe('paxos release', () => {
  it('-250 when the lver moved on, -251 when another owner holds it', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const t = await w.sched.run(paxosLeaseAcquire(w.res, h1.host, { clock: h1.clock }));
    const { sealLeaderInto } = await import('../../src/ondisk');
    const l = w.leader();
    w.st.patch(RES_OFF, 512, (b) => sealLeaderInto({ ...l, lver: 9 }, b, 0));
    expect((await rejects(w.sched, paxosLeaseRelease(w.res, h1.host, 512, t.leader, { clock: h1.clock }))).rv).toBe(SANLK.RELEASE_LVER);
    w.st.patch(RES_OFF, 512, (b) => sealLeaderInto({ ...l, ownerId: 3 }, b, 0));
    expect((await rejects(w.sched, paxosLeaseRelease(w.res, h1.host, 512, t.leader, { clock: h1.clock }))).rv).toBe(SANLK.RELEASE_OWNER);
    w.st.patch(RES_OFF, 512, (b) => sealLeaderInto({ ...l, timestamp: 0 }, b, 0));
    expect((await rejects(w.sched, paxosLeaseRelease(w.res, h1.host, 512, t.leader, { clock: h1.clock }))).rv).toBe(SANLK.RELEASE_OWNER);
  });
});

describe('exclusive release in one request (writeIfUnchanged)', () => {
  it('writes nothing before writesAfter settles: one request (a storage that holds its writes, one that cannot), step by step, shared', async () => {
    for (const kind of ['holds', 'cannot', 'steps', 'shared'] as const) {
      const w = world(10, 8);
      const st = w.st;
      // 'cannot': a storage whose writeIfUnchanged ignores writesAfter (and does not say it holds writes)
      const storage = kind === 'cannot'
        ? { id: st.id, read: st.read.bind(st), readInto: st.readInto.bind(st), write: st.write.bind(st),
          writeIfUnchanged: (o: number, e: Buffer, ws: ReadonlyArray<{ offset: number; data: Buffer }>, t: number) => st.writeIfUnchanged(o, e, ws, t) }
        : kind === 'steps' ? { id: st.id, read: st.read.bind(st), readInto: st.readInto.bind(st), write: st.write.bind(st) } : st;
      const res = { ...w.res, storage };
      const h1 = w.member(1, 'hostA');
      await w.sched.run(h1.join());
      const t = await w.sched.run(acquireResource(res, h1.host, { clock: h1.clock, liveness: h1.liveness, ...(kind === 'shared' ? { mode: 'SH' as const } : {}) }));
      const w0 = st.stats.writes;
      let open!: () => void;
      const journal = new Promise<void>((r) => { open = r; });
      let before = -1;
      w.sched.after(5000, () => { before = st.stats.writes - w0; open(); });
      await w.sched.run(releaseResource(t, { clock: h1.clock, writesAfter: journal }));
      expect({ kind, before, after: st.stats.writes - w0 > 0 }).toEqual({ kind, before: 0, after: true });
      if (kind !== 'shared') expect(w.leader().timestamp).toBe(0);
    }
  });

  it('when the leader is the one we committed: one read and two writes in one request, the same bytes as step by step', async () => {
    const run = async (oneRequest: boolean) => {
      const w = world(10, 8);
      const calls: number[] = [];
      const st = w.st;
      const storage = oneRequest
        ? { id: st.id, read: st.read.bind(st), readInto: st.readInto.bind(st), write: st.write.bind(st),
          writeIfUnchanged: (o: number, e: Buffer, ws: ReadonlyArray<{ offset: number; data: Buffer }>, t: number) => { calls.push(ws.length); return st.writeIfUnchanged(o, e, ws, t); } }
        : { id: st.id, read: st.read.bind(st), readInto: st.readInto.bind(st), write: st.write.bind(st) };
      const res = { ...w.res, storage };
      const h1 = w.member(1, 'hostA');
      await w.sched.run(h1.join());
      const t = await w.sched.run(acquireResource(res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
      const r0 = st.stats.reads;
      const w0 = st.stats.writes;
      const hint = await w.sched.run(releaseResource(t, { clock: h1.clock }));
      return { calls, reads: st.stats.reads - r0, writes: st.stats.writes - w0, area: Buffer.from(st.data.subarray(RES_OFF, RES_OFF + 4 * 512)), hint, w };
    };
    const one = await run(true);
    const steps = await run(false);
    expect(one.calls).toEqual([2]);
    expect(steps.calls).toEqual([]);
    expect({ reads: one.reads, writes: one.writes }).toEqual({ reads: 1, writes: 2 });
    expect({ reads: steps.reads, writes: steps.writes }).toEqual({ reads: 1, writes: 2 });
    expect(one.area.equals(steps.area)).toBe(true);
    expect(one.w.leader()).toMatchObject({ timestamp: 0, ownerId: 1, writeId: 1 });
    expect(one.w.dblock(1).flags).toBe(DBLOCK_FL_RELEASED);
    expect(one.hint).toEqual(steps.hint);
  });

  it('when the leader changed since: writes nothing in that request and releases step by step (-250, -251 as before)', async () => {
    const { sealLeaderInto } = await import('../../src/ondisk');
    for (const [change, rv] of [[{ lver: 9 }, SANLK.RELEASE_LVER], [{ ownerId: 3 }, SANLK.RELEASE_OWNER], [{ timestamp: 0 }, SANLK.RELEASE_OWNER]] as const) {
      const w = world();
      const h1 = w.member(1, 'hostA');
      await w.sched.run(h1.join());
      const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
      const l = w.leader();
      w.st.patch(RES_OFF, 512, (b) => sealLeaderInto({ ...l, ...change }, b, 0));
      const changed = Buffer.from(w.st.data.subarray(RES_OFF, RES_OFF + 512));
      expect((await rejects(w.sched, releaseResource(t, { clock: h1.clock }))).rv).toBe(rv);
      expect(w.st.data.subarray(RES_OFF, RES_OFF + 512).equals(changed)).toBe(true);
    }
  });

  it('its writes go out together: when one of them fails, the other may have landed, and the release says what is true', async () => {
    for (const failing of ['dblock', 'leader'] as const) {
      const w = world();
      const h1 = w.member(1, 'hostA');
      await w.sched.run(h1.join());
      const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
      const at = failing === 'dblock' ? RES_OFF + dblockOffset(512, 1) : RES_OFF;
      w.st.failNext('write', { type: 'error' }, (r) => r.offset === at);
      // dblock failed, leader landed: the lease is free (sanlock's release needs only the
      // leader write); the step-by-step way finds our own freed leader and writes the dblock
      // again. Leader failed: the step-by-step way frees it.
      await w.sched.run(releaseResource(t, { clock: h1.clock }));
      expect({ failing, ts: w.leader().timestamp, writeId: w.leader().writeId, lver: w.leader().lver })
        .toEqual({ failing, ts: 0, writeId: 1, lver: t.lver });
      expect(w.dblock(1).flags).toBe(DBLOCK_FL_RELEASED);
    }
  });

  it('a timeout of that request is the release failing with -202 (the lease stays ours)', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness }));
    w.st.failNext('read', { type: 'hang' });
    expect((await rejects(w.sched, releaseResource(t, { clock: h1.clock }))).rv).toBe(SANLK.AIO_TIMEOUT);
    expect(w.leader()).toMatchObject({ ownerId: 1, lver: t.lver });
    expect(w.leader().timestamp).not.toBe(0);
  });
});

describe('shared leases', () => {
  it('shared holders coexist; exclusive gets -EAGAIN while they live, then succeeds', async () => {
    const w = world();
    const [h1, h2, h3] = [w.member(1, 'hostA'), w.member(2, 'hostB'), w.member(3, 'hostC')];
    await w.sched.run(Promise.all([h1.join(), h2.join(), h3.join()]));
    for (const h of [h1, h2, h3]) h.startRenewals();
    const s1 = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness, mode: 'SH' }));
    expect(w.leader().timestamp).toBe(0); // leader given back
    expect(w.leader().flags & LFL_SHORT_HOLD).toBe(0);
    expect(w.mode(1)).toEqual({ flags: 1, generation: 1 });
    expect(w.dblock(1).flags).toBe(DBLOCK_FL_RELEASED);
    const s2 = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness, mode: 'SH' }));
    const owners = await w.sched.run(readResourceOwners(w.res, 10));
    expect(owners.owners).toEqual([{ hostId: 1, generation: 1, mode: 'SH' }, { hostId: 2, generation: 1, mode: 'SH' }]);

    await w.sched.run(w.sched.sleep(45_000));
    const e = await rejects(w.sched, acquireResource(w.res, h3.host, { clock: h3.clock, liveness: h3.liveness }));
    expect(e.rv).toBe(SANLK.EAGAIN);
    expect(e.message).toMatch(/held shared by live hosts 1, 2/);
    expect(w.leader().timestamp).toBe(0); // the exclusive winner gave it back

    await w.sched.run(releaseResource(s1, { clock: h1.clock }));
    await w.sched.run(releaseResource(s2, { clock: h2.clock }));
    expect(w.mode(1).flags).toBe(0);
    const x = await w.sched.run(acquireResource(w.res, h3.host, { clock: h3.clock, liveness: h3.liveness }));
    expect(x.mode).toBe('EX');
    // While exclusive: a shared acquire sees a live owner.
    const e2 = await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness, mode: 'SH' }));
    expect(e2.rv).toBe(SANLK.ACQUIRE_IDLIVE);
  });

  it('clears a dead shared holder\'s sector (only after host_dead) and then grants exclusive', async () => {
    const w = world();
    const [h1, h2] = [w.member(1, 'hostA'), w.member(2, 'hostB')];
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h1.startRenewals();
    h2.startRenewals();
    await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock, liveness: h1.liveness, mode: 'SH' }));
    await w.sched.run(w.sched.sleep(30_000));
    await w.sched.run(h1.stopRenewals()); // h1 dies holding it shared
    const deadAt = w.sched.nowMs();
    const e = await rejects(w.sched, acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(e.rv).toBe(SANLK.EAGAIN);
    await w.sched.run(w.sched.sleep(170_000));
    const x = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(w.sched.nowMs() - deadAt).toBeGreaterThan(140_000);
    expect(x.mode).toBe('EX');
    expect(w.st.data.subarray(RES_OFF + 2 * 512, RES_OFF + 3 * 512).every((b) => b === 0)).toBe(true);
  });
});

describe('where lockagent is stricter than sanlock 3.8.5', () => {
  const failCommit = (w: ReturnType<typeof world>) =>
    w.st.failNext('write', { type: 'error' }, (r) => r.offset === RES_OFF);

  it('a failed commit keeps our vote (RELEASED) so another host commits our value, not its own', async () => {
    const w = world();
    const [h1, h2] = [w.member(1, 'hostA'), w.member(2, 'hostB')];
    await w.sched.run(Promise.all([h1.join(), h2.join()]));
    h1.startRenewals();
    h2.startRenewals();
    failCommit(w);
    const e = await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(e.rv).toBe(SANLK.LEADER_WRITE);
    expect(w.dblock(1)).toMatchObject({ mbal: 1, bal: 1, inp: 1, lver: 1, flags: DBLOCK_FL_RELEASED });
    expect(w.leader().lver).toBe(0);
    // Host 2's ballot for lver 1 must decide host 1's value: lver 1 was chosen.
    const e2 = await rejects(w.sched, acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(e2.rv).toBe(SANLK.ACQUIRE_OTHER);
    expect(w.leader()).toMatchObject({ lver: 1, ownerId: 1, writeId: 2 });
    // Host 1 released (RELEASED dblock): host 2 may take lver 2 at once.
    const t = await w.sched.run(acquireResource(w.res, h2.host, { clock: h2.clock, liveness: h2.liveness }));
    expect(t.leader).toMatchObject({ lver: 2, ownerId: 2 });
  });

  it('re-running a ballot for the same lver keeps our earlier vote', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    failCommit(w);
    await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock }));
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(w.dblock(1)).toMatchObject({ mbal: 2001, bal: 2001, inp: 1, lver: 1 });
    expect(t.leader).toMatchObject({ lver: 1, ownerId: 1 });
  });

  it('committing an older generation of ourselves is -245, the next try takes it as ours', async () => {
    const w = world();
    const h1 = w.member(1, 'hostA');
    await w.sched.run(h1.join());
    failCommit(w);
    await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock }));
    await w.sched.run(h1.join()); // restart: generation 2; our generation-1 vote for lver 1 is on disk
    const e = await rejects(w.sched, acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(e.rv).toBe(SANLK.ACQUIRE_OTHER);
    expect(w.leader()).toMatchObject({ lver: 1, ownerId: 1, ownerGeneration: 1 });
    const t = await w.sched.run(acquireResource(w.res, h1.host, { clock: h1.clock }));
    expect(t.leader).toMatchObject({ lver: 2, ownerId: 1, ownerGeneration: 2 });
  });
});

describe('against the real sanlock files', () => {
  it('re-acquire of res_acq.img by host 1 gen 2 reproduces res_acq_g2.img', async () => {
    const sched = new VirtualScheduler();
    const st = new MemStorage({ size: MiB, clock: sched.clock() });
    st.load(0, readFileSync(join(FIX, 'res_acq.img')));
    const clock = sched.clock({ bootMs: 409_000 });
    const res: ResourceLocation = { storage: st, offset: 0, spaceName: 'LS', resourceName: 'RES1' };
    await sched.run(paxosLeaseAcquire(res, { hostId: 1, generation: 2, ioTimeout: 10 }, { clock }));
    const want = readFileSync(join(FIX, 'res_acq_g2.img'));
    const lg = decodeLeader(st.data, 0);
    const lw = decodeLeader(want, 0);
    expect({ ...lg, checksum: 0 }).toEqual({ ...lw, checksum: 0 });
    expect(lg.checksum).toBe(0x5b6e6c73);
    expect(decodeDblock(st.data, 1024)).toEqual(decodeDblock(want, 1024));
    // Everything else (request record, other dblocks, padding) is byte-identical too.
    expect(st.data.equals(want)).toBe(true);
  });

  it('host 2 in direct mode gets -241 and writes nothing (res_acq_h2.img)', async () => {
    const sched = new VirtualScheduler();
    const st = new MemStorage({ size: MiB, clock: sched.clock() });
    st.load(0, readFileSync(join(FIX, 'res_acq.img')));
    const res: ResourceLocation = { storage: st, offset: 0, spaceName: 'LS', resourceName: 'RES1' };
    const e = await rejects(sched, paxosLeaseAcquire(res, { hostId: 2, generation: 1, ioTimeout: 10 }, { clock: sched.clock() }));
    expect(e.rv).toBe(SANLK.ACQUIRE_LOCKSPACE);
    expect(st.data.equals(readFileSync(join(FIX, 'res_acq_h2.img')))).toBe(true);
  });

  it('-214 on a corrupt dblock (err_db.img), file unchanged', async () => {
    const sched = new VirtualScheduler();
    const st = new MemStorage({ size: MiB, clock: sched.clock() });
    const img = readFileSync(join(FIX, 'err_db.img'));
    st.load(0, img);
    const res: ResourceLocation = { storage: st, offset: 0, spaceName: 'LS', resourceName: 'RES1' };
    const e = await rejects(sched, paxosLeaseAcquire(res, { hostId: 1, generation: 1, ioTimeout: 10 }, { clock: sched.clock() }));
    expect(e.rv).toBe(SANLK.DBLOCK_CHECKSUM);
    expect(st.data.equals(img)).toBe(true);
  });
});

describe('dblock scan', () => {
  it('usedDblocks finds exactly the non-blank (and, when asked, SHARED) dblocks, on aligned and unaligned buffers', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ q: fc.integer({ min: 0, max: 63 }), byte: fc.integer({ min: 0, max: 55 }), shared: fc.boolean() }), { maxLength: 12 }),
      fc.integer({ min: 0, max: 3 }),
      (marks, shift) => {
        const ss = 512;
        const n = 64;
        const backing = Buffer.alloc((n + 2) * ss + 4);
        const area = backing.subarray(shift, shift + (n + 2) * ss);
        const used = new Set<number>();
        const usedShared = new Set<number>();
        for (const m of marks) {
          const off = dblockOffset(ss, m.q + 1);
          if (m.shared) { area[off + 128] |= 1; usedShared.add(m.q); } else { area[off + m.byte] = 0x5a; used.add(m.q); }
        }
        const sorted = (xs: Iterable<number>) => [...xs].sort((a, b) => a - b);
        expect(usedDblocks(area, ss, n)).toEqual(sorted(used));
        expect(usedDblocks(area, ss, n, true)).toEqual(sorted(new Set([...used, ...usedShared])));
        for (let q = 0; q < n; q++) expect(dblockBlank(area, dblockOffset(ss, q + 1))).toBe(!used.has(q));
      }));
  });
});
