import { LeaseError, SANLK } from '../../src/ondisk';
import { ioError } from '../../src/lease/diskio';
import { MemStorage } from '../helpers/memstorage';
import {
  deltaAcquireHeldDelay, deltaShortDelay, hostDeadSeconds, renewalFailSeconds, timeoutsFor,
} from '../../src/lease/timeouts';
import { VirtualScheduler } from '../sim/virtualclock';

describe('timeouts derived from io_timeout (sanlock 3.8.5 timeouts.c)', () => {
  it.each([
    [1, { idRenewal: 2, idRenewalWarn: 6, idRenewalFail: 8, hostDead: 68, deltaShortDelay: 2, setBitmap: 6 }],
    [10, { idRenewal: 20, idRenewalWarn: 60, idRenewalFail: 80, hostDead: 140, deltaShortDelay: 20, setBitmap: 60 }],
  ])('io_timeout %d', (io, want) => {
    expect(timeoutsFor(io)).toMatchObject(want);
    expect(deltaAcquireHeldDelay(io, 10)).toBe(want.hostDead);
    expect(renewalFailSeconds(io)).toBe(want.idRenewalFail);
  });

  it('delays about another host use its io_timeout, ours only when it wrote none', () => {
    expect(hostDeadSeconds(5, 10)).toBe(100);
    expect(hostDeadSeconds(0, 1)).toBe(68);
    expect(deltaShortDelay(5, 10)).toBe(10);
    expect(deltaShortDelay(0, 1)).toBe(2);
    expect(deltaAcquireHeldDelay(0, 10)).toBe(140);
  });
});

describe('I/O failures map to sanlock codes', () => {
  it('timeouts are -202 except inside a ballot; other failures get the context code', () => {
    const timeout = new LeaseError(SANLK.AIO_TIMEOUT, 'slow');
    const eio = Object.assign(new Error('bad'), { code: 'EIO' });
    expect(ioError(timeout, SANLK.LEADER_READ, 'x').rv).toBe(SANLK.AIO_TIMEOUT);
    expect(ioError(eio, SANLK.LEADER_WRITE, 'x').rv).toBe(SANLK.LEADER_WRITE);
    expect(ioError(timeout, SANLK.DBLOCK_READ, 'x', true).rv).toBe(SANLK.DBLOCK_READ);
    expect(ioError(Object.assign(new Error('t'), { code: 'ETIMEDOUT' }), SANLK.DBLOCK_WRITE, 'x').rv).toBe(SANLK.AIO_TIMEOUT);
  });
});

describe('in-memory storage faults', () => {
  const setup = () => {
    const sched = new VirtualScheduler();
    const st = new MemStorage({ size: 8192, clock: sched.clock() });
    return { sched, st };
  };

  it('a write slower than the timeout fails with -202 at the timeout and lands later', async () => {
    const { sched, st } = setup();
    st.failNext('write', { type: 'slow', latencyMs: 3000 });
    const p = st.write(512, Buffer.alloc(512, 7), 1000);
    await expect(sched.run(p)).rejects.toMatchObject({ rv: SANLK.AIO_TIMEOUT });
    expect(sched.nowMs()).toBe(1000);
    expect(st.data[512]).toBe(0);
    await sched.runUntil(3000);
    expect(st.data[512]).toBe(7);
    expect(st.stats.lateCompletions).toBe(1);
  });

  it('a late read still fills the abandoned buffer', async () => {
    const { sched, st } = setup();
    st.load(0, Buffer.alloc(512, 9));
    const buf = Buffer.alloc(512);
    st.failNext('read', { type: 'slow', latencyMs: 2000 });
    await expect(sched.run(st.readInto(0, buf, 500))).rejects.toMatchObject({ rv: SANLK.AIO_TIMEOUT });
    expect(buf[0]).toBe(0);
    await sched.runUntil(2000);
    expect(buf[0]).toBe(9);
  });

  it('torn writes land only a prefix; errors land nothing; hangs never complete', async () => {
    const { sched, st } = setup();
    st.failNext('write', { type: 'torn', sectors: 1, bytes: 100 });
    await expect(sched.run(st.write(0, Buffer.alloc(1024, 5), 1000))).rejects.toMatchObject({ code: 'EIO' });
    expect(st.data.subarray(0, 612).every((b) => b === 5)).toBe(true);
    expect(st.data.subarray(612, 1024).every((b) => b === 0)).toBe(true);
    st.failNext('write', { type: 'error' });
    await expect(sched.run(st.write(2048, Buffer.alloc(512, 1), 1000))).rejects.toMatchObject({ code: 'EIO' });
    expect(st.data[2048]).toBe(0);
    st.failNext('write', { type: 'hang' });
    await expect(sched.run(st.write(4096, Buffer.alloc(512, 1), 1000))).rejects.toMatchObject({ rv: SANLK.AIO_TIMEOUT });
    await sched.runUntil(100_000);
    expect(st.data[4096]).toBe(0);
  });

  it('one writer\'s writes to a sector land in order, even behind a slow one', async () => {
    const { sched, st } = setup();
    const v = st.view('a');
    st.failNext('write', { type: 'slow', latencyMs: 5000 });
    const p1 = v.write(0, Buffer.alloc(512, 1), 1000).catch(() => undefined);
    const p2 = v.write(0, Buffer.alloc(512, 2), 10_000);
    await sched.run(Promise.all([p1, p2]));
    expect(st.data[0]).toBe(2);
  });

  it('a crashed writer\'s in-flight writes land or vanish as decided', async () => {
    const { sched, st } = setup();
    const v = st.view('h1');
    st.failNext('write', { type: 'slow', latencyMs: 5000 });
    void v.write(0, Buffer.alloc(512, 1), 10_000).catch(() => undefined);
    st.failNext('write', { type: 'slow', latencyMs: 5000 });
    void v.write(512, Buffer.alloc(512, 1), 10_000).catch(() => undefined);
    await sched.runUntil(10);
    let first = true;
    expect(st.settlePending('h1', () => { const r = first; first = false; return r; })).toBe(2);
    expect(st.data[0]).toBe(1);
    await sched.runUntil(10_000);
    expect(st.data[512]).toBe(0);
  });

  it('rejects I/O that is not whole sectors', () => {
    const { st } = setup();
    expect(() => st.write(100, Buffer.alloc(512), 1000)).toThrow(RangeError);
    expect(() => st.read(0, 100, 1000)).toThrow(RangeError);
  });
});
