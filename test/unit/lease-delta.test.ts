import { decodeLeader, LeaseError, MiB, SANLK, bitmapHosts, setBitmapHost } from '../../src/ondisk';
import { deltaAcquire, deltaRelease, deltaRenew, isCorruptRenewal, setDeltaBitmap } from '../../src/lease/delta';
import { MemStorage } from '../helpers/memstorage';
import { initLockspace } from '../sim/areas';
import { VirtualScheduler } from '../sim/virtualclock';

const BOOT = 1_000_000; // host monotime 1000 s at virtual time 0

function setup(io = 10) {
  const sched = new VirtualScheduler();
  const clock = sched.clock({ bootMs: BOOT });
  const st = new MemStorage({ size: 2 * MiB, clock: sched.clock() });
  initLockspace(st, 0, 'LS', io);
  return { sched, clock, st };
}

const params = (st: MemStorage, clock: ReturnType<VirtualScheduler['clock']>, hostId: number, hostName: string, ioTimeout = 10) =>
  ({ storage: st, offset: 0, spaceName: 'LS', hostId, hostName, ioTimeout, clock });

async function rejects(sched: VirtualScheduler, p: Promise<unknown>): Promise<LeaseError> {
  try {
    await sched.run(p);
  } catch (e) {
    return e as LeaseError;
  }
  throw new Error('expected a rejection');
}

describe('delta acquire', () => {
  it('takes a free host_id in exactly 2·io and writes sanlock\'s record', async () => {
    const { sched, clock, st } = setup();
    const lease = await sched.run(deltaAcquire(params(st, clock, 3, 'hostA')));
    expect(sched.nowMs()).toBe(20_000);
    expect(lease.generation).toBe(1);
    expect(lease.lastSuccess).toBe(1000);
    const rec = decodeLeader(st.data, 2 * 512);
    expect(rec).toMatchObject({ ownerId: 3, ownerGeneration: 1, timestamp: 1000, resourceName: 'hostA', ioTimeout: 10, numHosts: 0, maxHosts: 1 });
    expect(lease.leader).toEqual(rec);
  });

  it('uses the previous owner\'s on-disk io_timeout for its delays (ls_o5_acq: 10 s)', async () => {
    const { sched, clock, st } = setup(5);
    const lease = await sched.run(deltaAcquire(params(st, clock, 7, 'hostC', 10)));
    expect(sched.nowMs()).toBe(10_000);
    expect(decodeLeader(st.data, 6 * 512).ioTimeout).toBe(10);
    expect(lease.ioTimeout).toBe(10);
  });

  it('reacquires at once under the same name (gen+1), and clears the bitmap', async () => {
    const { sched, clock, st } = setup();
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    st.patch(0, 512, (b) => setBitmapHost(b, 5, true, 0));
    const t0 = sched.nowMs();
    const again = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    expect(sched.nowMs() - t0).toBe(20_000);
    expect(again.generation).toBe(2);
    expect(bitmapHosts(st.data, 0)).toEqual([]);
  });

  it('truncates the host name to 47 bytes + NUL (ls_longname)', async () => {
    const { sched, clock, st } = setup();
    const long = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
    const lease = await sched.run(deltaAcquire(params(st, clock, 2, long, 1)));
    expect(lease.leader.resourceName).toBe('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK');
    expect(st.data[512 + 104 + 47]).toBe(0);
    expect(decodeLeader(st.data, 512).ioTimeout).toBe(1);
  });

  it('takes over a host_id held under another name only after host_dead + 2·io (ls_takeover)', async () => {
    const { sched, clock, st } = setup();
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const t0 = sched.nowMs();
    const b = await sched.run(deltaAcquire(params(st, clock, 1, 'hostB')));
    expect(sched.nowMs() - t0).toBe(160_000);
    expect(b.generation).toBe(2);
    expect(b.leader.resourceName).toBe('hostB');
  });

  it('derives takeover delays from io_timeout 1 of the previous owner (68 s + 2 s)', async () => {
    const { sched, clock, st } = setup(1);
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostA', 1)));
    const t0 = sched.nowMs();
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostB', 10)));
    expect(sched.nowMs() - t0).toBe(70_000);
  });

  it('fails with -262 after the wait when the owner renewed meanwhile (ls_busy)', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const t0 = sched.nowMs();
    const pb = deltaAcquire(params(st, clock, 1, 'hostB'));
    sched.after(30_000, () => void deltaRenew(a, clock));
    const e = await rejects(sched, pb);
    expect(e.rv).toBe(SANLK.HOSTID_BUSY);
    expect(e.message).toMatch(/host "hostA"/);
    expect(sched.nowMs() - t0).toBe(140_000);
    expect(decodeLeader(st.data, 0).resourceName).toBe('hostA');
  });

  it('fails with -262 when another host writes during the 2·io check', async () => {
    const { sched, clock, st } = setup();
    const pa = deltaAcquire(params(st, clock, 4, 'hostA'));
    const pb = deltaAcquire(params(st, clock, 4, 'hostB'));
    const [ra, rb] = await sched.run(Promise.allSettled([pa, pb]));
    // Both saw the sector free; the later writer wins, the earlier sees the difference.
    expect(ra.status).toBe('rejected');
    expect((ra as PromiseRejectedResult).reason.rv).toBe(SANLK.HOSTID_BUSY);
    expect(rb.status).toBe('fulfilled');
  });

  it('can be cancelled during the takeover wait', async () => {
    const { sched, clock, st } = setup();
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const ac = new AbortController();
    const p = deltaAcquire({ ...params(st, clock, 1, 'hostB'), cancel: { signal: ac.signal } });
    sched.after(5_000, () => ac.abort());
    const e = await rejects(sched, p);
    expect(e.rv).toBe(-201);
    expect(e.message).toMatch(/cancelled/);
  });

  it('refuses a host_id beyond max_hosts (-231) and an uncommitted lockspace (-223)', async () => {
    const { sched, clock, st } = setup();
    expect((await rejects(sched, deltaAcquire(params(st, clock, 2001, 'x')))).rv).toBe(SANLK.ADDLS_INVALID_HOSTID);
    st.patch(0, 512, (b) => b.writeUInt32LE(0, 0));
    expect((await rejects(sched, deltaAcquire(params(st, clock, 2, 'x')))).rv).toBe(SANLK.LEADER_MAGIC);
  });
});

describe('delta renew and release', () => {
  it('renews the timestamp only, returning the whole area; keeps our bitmap bits', async () => {
    const { sched, clock, st } = setup();
    const lease = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const before = decodeLeader(st.data, 0);
    await sched.run(sched.sleep(21_000)); // acquired at 0 (ts 1000), now at 41 s
    setDeltaBitmap(lease, 9, true);
    const r = await sched.run(deltaRenew(lease, clock));
    expect(r.area.length).toBe(MiB);
    const after = decodeLeader(st.data, 0);
    expect(after.timestamp).toBe(before.timestamp + 41);
    expect({ ...after, timestamp: 0, checksum: 0 }).toEqual({ ...before, timestamp: 0, checksum: 0 });
    expect(bitmapHosts(st.data, 0)).toEqual([9]);
    expect(lease.lastSuccess).toBe(after.timestamp);
  });

  it('reads the area into a buffer the storage provides (allocBuffer), kept from one renewal to the next, dropped after a failed read', async () => {
    const { sched, clock, st } = setup();
    const made: Buffer[] = [];
    const storage = Object.assign(Object.create(st) as MemStorage, {
      allocBuffer: (n: number) => {
        const b = Buffer.alloc(n);
        made.push(b);
        return b;
      },
    });
    const lease = await sched.run(deltaAcquire({ ...params(st, clock, 1, 'hostA'), storage }));
    const r1 = await sched.run(deltaRenew(lease, clock));
    const r2 = await sched.run(deltaRenew(lease, clock));
    expect(made).toHaveLength(1);
    expect(r1.area).toBe(made[0]);
    expect(r2.area).toBe(made[0]);
    st.failNext('read', { type: 'error' });
    await rejects(sched, deltaRenew(lease, clock));
    const r3 = await sched.run(deltaRenew(lease, clock));
    expect(made).toHaveLength(2); // the first may still be written by the failed read: not reused
    expect(r3.area).toBe(made[1]);
  });

  it('-260 when another host took our host_id; -261 when our sector changed', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const snap = Buffer.from(st.data.subarray(0, 512));
    await sched.run(deltaAcquire(params(st, clock, 1, 'hostA2'))); // waits, then takes it
    const e = await rejects(sched, deltaRenew(a, clock));
    expect(e.rv).toBe(SANLK.RENEW_OWNER);
    expect(isCorruptRenewal(e.rv)).toBe(true);

    st.load(0, snap);
    const b = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA'))); // fast reacquire
    // Same owner, other bytes: e.g. a foreign writer changed io_timeout (not covered by compare of owner).
    const rec = decodeLeader(st.data, 0);
    const { sealLeaderInto } = await import('../../src/ondisk');
    st.patch(0, 512, (b) => sealLeaderInto({ ...rec, timestamp: rec.timestamp + 1 }, b, 0, 47));
    const e2 = await rejects(sched, deltaRenew(b, clock));
    expect(e2.rv).toBe(SANLK.RENEW_DIFF);
  });

  it('after a failed renewal the next one skips the -261 check (the write may not have landed)', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    st.failNext('write', { type: 'error' });
    const e = await rejects(sched, deltaRenew(a, clock));
    expect(e.rv).toBe(SANLK.LEADER_WRITE);
    expect(a.lastResult).toBe(SANLK.LEADER_WRITE);
    await sched.run(deltaRenew(a, clock));
    expect(a.lastResult).toBe(0);
  });

  it('after a successful renewal, the next sends its read and write as one request, writing only over what we wrote', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    const rcw = jest.spyOn(st, 'readCompareWrite');
    const readInto = jest.spyOn(st, 'readInto');
    await sched.run(sched.sleep(20_000));
    const r = await sched.run(deltaRenew(a, clock));
    expect(rcw).toHaveBeenCalledTimes(1);
    expect(readInto).not.toHaveBeenCalled();
    expect(decodeLeader(st.data, 0)).toMatchObject({ timestamp: r.leader.timestamp, ownerGeneration: a.generation });
    expect(r.area.subarray(0, 512).equals(a.lastSector!)).toBe(false); // the area as read, before the write
    expect(st.data.subarray(0, 512).equals(a.lastSector!)).toBe(true);

    // A foreign write to our sector: the request writes nothing and the renewal fails with -261.
    const foreign = decodeLeader(st.data, 0);
    const { sealLeaderInto } = await import('../../src/ondisk');
    st.patch(0, 512, (b) => sealLeaderInto({ ...foreign, timestamp: foreign.timestamp + 1 }, b, 0, 47));
    const patched = Buffer.from(st.data.subarray(0, 512));
    const e = await rejects(sched, deltaRenew(a, clock));
    expect(e.rv).toBe(SANLK.RENEW_DIFF);
    expect(rcw).toHaveBeenCalledTimes(2);
    expect(st.data.subarray(0, 512).equals(patched)).toBe(true);
    // After a failure the next renewal reads and writes separately (no insisting on our bytes).
    await expect(sched.run(deltaRenew(a, clock))).resolves.toBeDefined();
    expect(rcw).toHaveBeenCalledTimes(2);
    expect(readInto).toHaveBeenCalledTimes(1);
  });

  it('a renewal that changes only the timestamp writes the bytes a whole encoding gives (bitmap and host event too)', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 3, 'a-host-name-long-enough-to-be-cut-at-47-bytes-on-disk')));
    const { HOSTID_BITMAP_OFFSET, HOSTID_BITMAP_SIZE, sealLeaderInto } = await import('../../src/ondisk');
    const at = 2 * 512;
    const expectWhole = () => {
      // what the whole record encoded into a fresh sector gives, with the bitmap we hold
      const want = Buffer.alloc(512);
      const sealed = sealLeaderInto({ ...a.leader, checksum: 0 }, want, 0, 47);
      a.bitmap.copy(want, HOSTID_BITMAP_OFFSET, 0, HOSTID_BITMAP_SIZE);
      expect(st.data.subarray(at, at + 512).equals(want)).toBe(true);
      expect(sealed.checksum).toBe(a.leader.checksum);
      expect(decodeLeader(st.data, at)).toMatchObject({ timestamp: a.leader.timestamp, ownerGeneration: a.generation });
    };
    for (let i = 0; i < 3; i++) {
      await sched.run(sched.sleep(2_000));
      await sched.run(deltaRenew(a, clock));
      expectWhole();
    }
    setDeltaBitmap(a, 7, true);
    await sched.run(sched.sleep(2_000));
    await sched.run(deltaRenew(a, clock));
    expectWhole();
    expect(bitmapHosts(st.data, at)).toEqual([7]);
    a.event = { generation: 5, event: 6, data: 7 };
    await sched.run(sched.sleep(2_000));
    await sched.run(deltaRenew(a, clock));
    expectWhole();
    expect(decodeLeader(st.data, at)).toMatchObject({ writeId: 5, writeGeneration: 6, writeTimestamp: 7 });
  });

  it('maps a read slower than io_timeout to -202 and drops the reused buffer', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostA')));
    await sched.run(deltaRenew(a, clock));
    const buf = a.iobuf;
    expect(buf).toBeDefined();
    st.failNext('read', { type: 'slow', latencyMs: 15_000 });
    const t0 = sched.nowMs();
    const e = await rejects(sched, deltaRenew(a, clock));
    expect(e.rv).toBe(SANLK.AIO_TIMEOUT);
    expect(sched.nowMs() - t0).toBe(10_000);
    expect(a.iobuf).toBeUndefined();
  });

  it('release writes timestamp 0 and keeps owner, generation and name (ls_released)', async () => {
    const { sched, clock, st } = setup();
    const a = await sched.run(deltaAcquire(params(st, clock, 1, 'hostB')));
    st.patch(0, 512, (b) => setBitmapHost(b, 3, true, 0));
    await sched.run(deltaRelease(a));
    const rec = decodeLeader(st.data, 0);
    expect(rec).toMatchObject({ timestamp: 0, ownerId: 1, ownerGeneration: 1, resourceName: 'hostB', ioTimeout: 10 });
    expect(bitmapHosts(st.data, 0)).toEqual([]);
    // A later acquire by another name does not wait: the slot is free.
    const t0 = sched.nowMs();
    const b = await sched.run(deltaAcquire(params(st, clock, 1, 'hostC')));
    expect(sched.nowMs() - t0).toBe(20_000);
    expect(b.generation).toBe(2);
  });
});
