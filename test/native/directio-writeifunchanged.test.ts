import * as fs from 'fs';
import * as path from 'path';

import { allocIoBuffer, DirectFile, DirectIoError, ioStats, resetIoStats } from '../../src/io/directio';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { loadNative } from '../../src/io/native';
import { NOT_STARTED, SCHEDULE_SLACK_MS } from '../../src/lease/storage';

// writeIfUnchanged: a release's leader read and its two writes as one request to the file's
// I/O thread (LeaseStorage.writeIfUnchanged).
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync('/tmp/lockagent-wiu-');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => resetIoStats());

const sector = (fill: number): Buffer => Buffer.alloc(512, fill);
const stall = (p: string, offset: number, ms: number): void =>
  (loadNative() as unknown as { _testInjectStall(p: string, o: number, ms: number, n: number): void })._testInjectStall(p, offset, ms, 1);

describe('DirectFile.writeIfUnchanged', () => {
  it('writes together when the bytes read are the expected ones, and nothing when they are not', async () => {
    const p = path.join(dir, 'area');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1), sector(1), sector(1)]));
    const f = await DirectFile.open(p);
    try {
      const done = await f.writeIfUnchanged(0, sector(1), [{ offset: 1024, data: sector(2) }, { offset: 0, data: sector(3) }, { offset: 1536, data: sector(4) }], 1000);
      expect(done).toBe(true);
      const after = fs.readFileSync(p);
      expect([after[0], after[512], after[1024], after[1536]]).toEqual([3, 1, 2, 4]);
      // the three went to the kernel in one io_submit (a file opened without O_DIRECT: one by one)
      expect(ioStats(p)).toMatchObject({ reads: 1, writes: 3, bytesRead: 512, bytesWritten: 1536, writesTogether: f.direct ? 3 : 0 });

      // sector 0 now holds 3s: the expectation of 1s fails and the bytes found come back
      const found = await f.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(9) }], 1000);
      expect(Buffer.isBuffer(found) && found.equals(sector(3))).toBe(true);
      expect(fs.readFileSync(p)[512]).toBe(1);
      // a difference in the last byte counts too
      const almost = sector(3);
      almost[511] = 0;
      expect(await f.writeIfUnchanged(0, almost, [{ offset: 512, data: sector(9) }], 1000)).not.toBe(true);
      expect(fs.readFileSync(p)[512]).toBe(1);
    } finally {
      await f.close();
    }
  });

  it('refuses overlapping writes (they land in any order) and writes nothing', async () => {
    const p = path.join(dir, 'overlap');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1), sector(1)]));
    const f = await DirectFile.open(p);
    try {
      for (const second of [{ offset: 512, data: sector(3) }, { offset: 0, data: Buffer.alloc(1024, 3) }]) {
        const e = await f.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(2) }, second], 1000).then(() => undefined, (x: DirectIoError) => x);
        expect(e?.code).toBe('EINVAL');
        expect(e?.message).toMatch(/overlap/);
      }
      expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([1, 1, 1]);
      // adjacent is not overlapping
      expect(await f.writeIfUnchanged(0, sector(1), [{ offset: 1024, data: sector(2) }, { offset: 512, data: sector(3) }], 1000)).toBe(true);
      expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([1, 3, 2]);
    } finally {
      await f.close();
    }
  });

  it('AIO contexts are shared by the I/O threads: taken per request, never more than 4 (fs.aio-max-nr is QEMU\'s too)', async () => {
    const threads = () => loadNative()._testIoThreads!();
    const paths = Array.from({ length: 8 }, (_, i) => path.join(dir, `ctx${i}`));
    // each handle keeps its own thread through the test: eight threads, each a release
    const files = await Promise.all(paths.map(async (p) => {
      fs.writeFileSync(p, Buffer.concat([sector(1), sector(1), sector(1)]));
      return DirectFile.open(p, { keepThreadMs: 10000 });
    }));
    try {
      const before = Math.max(1, threads().aioContexts);
      for (const f of files) {
        expect(await f.writeIfUnchanged(0, sector(1), [{ offset: 1024, data: sector(2) }, { offset: 0, data: sector(3) }], 2000)).toBe(true);
        // one after the other: the context the last thread gave back serves the next (no io_setup per thread)
        expect(threads().aioContexts).toBe(before);
      }
      for (const p of paths) expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([3, 1, 2]);
      expect(paths.reduce((n, p) => n + ioStats(p).writesTogether, 0)).toBe(16);
      expect(paths.reduce((n, p) => n + ioStats(p).writes, 0)).toBe(16);
      // all eight at once: at most 4 contexts; the requests that find none write one by one
      const again = files.map((f) => f.writeIfUnchanged(0, sector(3), [{ offset: 1024, data: sector(4) }, { offset: 0, data: sector(5) }], 2000));
      expect(await Promise.all(again)).toEqual(Array(8).fill(true));
      expect(threads().aioContexts).toBeLessThanOrEqual(4);
      expect(paths.reduce((n, p) => n + ioStats(p).writes, 0)).toBe(32);
    } finally {
      await Promise.all(files.map((f) => f.close()));
    }
  });

  it('checks alignment like read and write, and refuses on a read-only file', async () => {
    const p = path.join(dir, 'ro');
    fs.writeFileSync(p, sector(1));
    const f = await DirectFile.open(p);
    try {
      const bad = await f.writeIfUnchanged(0, sector(1), [{ offset: 100, data: sector(2) }], 1000).then(() => undefined, (e: DirectIoError) => e);
      expect(bad?.code).toBe('EINVAL');
      const short = await f.writeIfUnchanged(0, Buffer.alloc(100), [], 1000).then(() => undefined, (e: DirectIoError) => e);
      expect(short?.code).toBe('EINVAL');
    } finally {
      await f.close();
    }
    const ro = await DirectFile.open(p, { readOnly: true });
    try {
      const e = await ro.writeIfUnchanged(0, sector(1), [{ offset: 0, data: sector(2) }], 1000).then(() => undefined, (x: DirectIoError) => x);
      expect(e?.code).toBe('EBADF');
      expect(fs.readFileSync(p)[0]).toBe(1);
    } finally {
      await ro.close();
    }
  });

  it('times out as one request (-202 through FileLeaseStorage) and then writes nothing', async () => {
    const p = path.join(dir, 'slow');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1)]));
    const s = await FileLeaseStorage.open(p);
    try {
      stall(p, 0, 300);
      await expect(s.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(7) }], 50)).rejects.toMatchObject({ rv: -202 });
      await new Promise((r) => setTimeout(r, 450)); // the stalled read returns late: its writes are skipped
      expect(fs.readFileSync(p)[512]).toBe(1);
      expect(ioStats(p).lateCompletions).toBe(1);
      // the handle still works
      expect(await s.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(7) }], 1000)).toBe(true);
      expect(fs.readFileSync(p)[512]).toBe(7);
    } finally {
      await s.close();
    }
  });

  it('tells onSubmit of each request once it is in flight (the agent\'s housekeeping runs then), never of a refused one', async () => {
    const p = path.join(dir, 'submits');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1)]));
    let submits = 0;
    const s = await FileLeaseStorage.open(p, { onSubmit: () => submits++ });
    const ro = await FileLeaseStorage.open(p, { readOnly: true, onSubmit: () => submits++ });
    try {
      expect(submits).toBe(0); // opening is not a request
      const pending = [
        s.read(0, 512, 1000),
        s.readInto(0, Buffer.alloc(512), 1000),
        s.write(512, sector(2), 1000),
        s.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(3) }], 1000),
        s.readCompareWrite(0, Buffer.alloc(1024), 0, sector(1), [{ offset: 512, data: sector(4) }], 1000),
      ];
      expect(submits).toBe(5); // counted as each was handed over, before any completed
      await Promise.all(pending);
      await expect(ro.write(0, sector(9), 1000)).rejects.toThrow(/read-only/);
      expect(submits).toBe(5);
    } finally {
      await s.close();
      await ro.close();
    }
    await expect(s.read(0, 512, 1000)).rejects.toThrow(/closed/);
    expect(submits).toBe(5);
  });
});

// readCompareWrite: a renewal's area read and its sector write as one request
// (LeaseStorage.readCompareWrite); the area lands in the caller's buffer either way.
describe('DirectFile.readCompareWrite', () => {
  const area = (p: string): void => fs.writeFileSync(p, Buffer.concat([sector(1), sector(2), sector(3), sector(4)]));

  it.each([['a plain Buffer', (n: number) => Buffer.alloc(n, 0xee)], ['the addon\'s aligned memory (read in place)', (n: number) => allocIoBuffer(n).fill(0xee)]])(
    'into %s: writes when the expected bytes are found at compareAt, else writes nothing; the area is read either way',
    async (_what, alloc) => {
      const p = path.join(dir, `rcw-${_what.startsWith('a plain') ? 'plain' : 'block'}`);
      area(p);
      const f = await DirectFile.open(p);
      try {
        const target = alloc(2048);
        expect(await f.readCompareWrite(0, target, 1024, sector(3), [{ offset: 1024, data: sector(7) }], 1000)).toBe(true);
        expect([target[0], target[512], target[1024], target[1536]]).toEqual([1, 2, 3, 4]); // as read, before the write
        expect(fs.readFileSync(p)[1024]).toBe(7);
        expect(ioStats(p)).toMatchObject({ reads: 1, writes: 1, bytesRead: 2048, bytesWritten: 512 });

        // sector 2 holds 7s now: expecting 3s fails, nothing is written, the area is read again
        fs.writeFileSync(p, sector(5), { flag: 'r+' });
        target.fill(0xee);
        expect(await f.readCompareWrite(0, target, 1024, sector(3), [{ offset: 1024, data: sector(9) }], 1000)).toBe(false);
        expect([target[0], target[1024]]).toEqual([5, 7]);
        expect(fs.readFileSync(p)[1024]).toBe(7);
      } finally {
        await f.close();
      }
    });

  it('refuses expected bytes outside the target, and a read-only file', async () => {
    const p = path.join(dir, 'rcw-bad');
    area(p);
    const f = await DirectFile.open(p);
    const ro = await DirectFile.open(p, { readOnly: true });
    try {
      // 2**64 - 512 would wrap to 0 past the end in unsigned arithmetic: refused, nothing written
      for (const at of [1536 + 1, -512, 0.5, 2 ** 64 - 512, Infinity, NaN]) {
        const e = await f.readCompareWrite(0, Buffer.alloc(2048), at, sector(1), [{ offset: 0, data: sector(9) }], 1000).then(() => undefined, (x: DirectIoError) => x);
        expect(e?.code).toBe('EINVAL');
      }
      expect(fs.readFileSync(p)[0]).toBe(1);
      // the last sector of the target is inside it
      expect(await f.readCompareWrite(0, Buffer.alloc(2048), 1536, sector(4), [], 1000)).toBe(true);
      const e = await ro.readCompareWrite(0, Buffer.alloc(2048), 0, sector(1), [{ offset: 0, data: sector(2) }], 1000).then(() => undefined, (x: DirectIoError) => x);
      expect(e).toMatchObject({ code: 'EBADF', syscall: 'write' });
      expect(fs.readFileSync(p)[0]).toBe(1);
    } finally {
      await f.close();
      await ro.close();
    }
  });

  it('times out as one request: the area buffer from the addon is abandoned, nothing is written', async () => {
    const p = path.join(dir, 'rcw-slow');
    area(p);
    const f = await DirectFile.open(p);
    try {
      stall(p, 0, 400);
      const e = await f.readCompareWrite(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(8) }], 150).then(() => undefined, (x: DirectIoError) => x);
      // timed out in its read: named so (a renewal reports a read timeout, not a write's)
      expect(e).toMatchObject({ code: 'ETIMEDOUT', syscall: 'read' });
      await new Promise((r) => setTimeout(r, 500)); // the stalled read returns; its write must not follow
      expect(fs.readFileSync(p)[0]).toBe(1);
    } finally {
      await f.close();
    }
  });
});

describe('writeIfUnchanged with writesAfter (the release\'s journal commit beside its read)', () => {
  const later = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => { open = r; });
    return { p, open };
  };
  /** Two sectors of 1s in a new file, opened for direct I/O. */
  const twoSectors = async (name: string) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1)]));
    return { p, f: await DirectFile.open(p) };
  };

  it('reads at once, holds the writes until writesAfter settles, then writes them', async () => {
    const { p, f } = await twoSectors('gated');
    try {
      const gate = later();
      let settled = false;
      const done = f.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(2) }, { offset: 0, data: sector(3) }], 2000, gate.p)
        .then((r) => { settled = true; return r; });
      await new Promise((r) => setTimeout(r, 400)); // time enough for the I/O thread's read
      expect(settled).toBe(false);
      expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([1, 1]);
      // The read was done before the gate opened: bytes changed now are not what it compared.
      const fd = fs.openSync(p, 'r+');
      fs.writeSync(fd, sector(9), 0, 512, 0);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      gate.open();
      expect(await done).toBe(true);
      expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([3, 2]);
      expect(ioStats(p)).toMatchObject({ reads: 1, writes: 2 });
      // a rejected writesAfter opens the gate too: what it stood for is the caller's to judge
      expect(await f.writeIfUnchanged(0, sector(3), [{ offset: 512, data: sector(4) }], 2000, Promise.reject(new Error('x')))).toBe(true);
      expect(fs.readFileSync(p)[512]).toBe(4);
    } finally {
      await f.close();
    }
  });

  it('a compare that fails does not wait; a gate never opened times the request out and nothing is written', async () => {
    const { p, f } = await twoSectors('gated-2');
    try {
      const never = new Promise<void>(() => undefined);
      const found = await f.writeIfUnchanged(0, sector(7), [{ offset: 512, data: sector(2) }], 2000, never);
      expect(Buffer.isBuffer(found) && found.equals(sector(1))).toBe(true);
      const e = await f.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(2) }], 200, never).then(() => undefined, (x: DirectIoError) => x);
      // named as the caller's wait, not as a storage timeout
      expect(e).toMatchObject({ code: 'ETIMEDOUT', message: expect.stringMatching(/its writes waited for the caller \(its write gate\).*nothing written/) });
      await new Promise((r) => setTimeout(r, 300));
      expect(fs.readFileSync(p)[512]).toBe(1);
      expect(ioStats(p).writes).toBe(0);
    } finally {
      await f.close();
    }
  });

  it('a file closed while its writes wait for the gate writes nothing when the gate opens', async () => {
    const { p, f } = await twoSectors('gated-4');
    const gate = later();
    const done = f.writeIfUnchanged(0, sector(1), [{ offset: 512, data: sector(2) }], 3000, gate.p).then(() => 'written', (x: DirectIoError) => x.code);
    await new Promise((r) => setTimeout(r, 300)); // read and compared: waiting for the gate
    await f.close();
    gate.open();
    expect(await done).toBe('ECANCELED');
    await new Promise((r) => setTimeout(r, 100));
    expect(fs.readFileSync(p)[512]).toBe(1);
  });

  it('the addon refuses a gate that is not a WriteGate', async () => {
    const p = path.join(dir, 'gated-3');
    fs.writeFileSync(p, sector(1));
    const native = loadNative();
    const opened = await native.open(p, false, 1000);
    const file = opened.file as unknown as { writeIfUnchanged(o: number, e: Uint8Array, w: Array<[number, Uint8Array]>, t: number, g: unknown): Promise<unknown>; close(t: number): Promise<void> };
    try {
      expect(() => file.writeIfUnchanged(0, sector(1), [[0, sector(2)]], 1000, { open() {} })).toThrow(/gate must be a WriteGate/);
      expect(fs.readFileSync(p)[0]).toBe(1);
    } finally {
      await file.close(1000);
    }
  });
});

// On a filer each I/O is a round trip: the writes of one request are in flight together, so a
// release waits for two round trips (its read, then its writes), not three. latencyfs (the NFS
// benchmark's FUSE passthrough, native/bench) counts the write requests it serves at once.
const canFuse = fs.existsSync('/dev/fuse') && process.getuid?.() === 0;
(canFuse || process.env.CI ? describe : describe.skip)('writeIfUnchanged on a filer (latencyfs, 150 ms per I/O)', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lfs = require('../../scripts/bench/lib/latencyfs') as {
    mount(work: string, backing: string, mnt: string, o: { delayUs: number }): Promise<{ stats(): Record<string, number>; reset(): void; stop(): Promise<void> }>;
  };
  let work: string;
  let mnt: string;
  let fsys: Awaited<ReturnType<typeof lfs.mount>>;
  beforeAll(async () => {
    work = fs.mkdtempSync('/var/tmp/lockagent-wiu-fuse-');
    mnt = path.join(work, 'mnt');
    fsys = await lfs.mount(work, path.join(work, 'backing'), mnt, { delayUs: 150000 });
  }, 60000);
  afterAll(async () => {
    await fsys?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('the release\'s two writes reach the server together; each lands', async () => {
    const p = path.join(mnt, 'lease');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1), sector(1)]));
    const f = await DirectFile.open(p);
    try {
      expect(f.direct).toBe(true);
      fsys.reset();
      expect(await f.writeIfUnchanged(0, sector(1), [{ offset: 1024, data: sector(2) }, { offset: 0, data: sector(3) }], 5000)).toBe(true);
      expect(fsys.stats()).toMatchObject({ reads: 1, writes: 2, writes_together_max: 2 });
      expect([...fs.readFileSync(p)].filter((_, i) => i % 512 === 0)).toEqual([3, 1, 2]);
      // a renewal's single write, for contrast: one at a time
      fsys.reset();
      expect(await f.readCompareWrite(0, Buffer.alloc(1536), 0, sector(3), [{ offset: 512, data: sector(4) }], 5000)).toBe(true);
      expect(fsys.stats()).toMatchObject({ reads: 1, writes: 1, writes_together_max: 1 });
    } finally {
      await f.close();
    }
  }, 30000);
});

// readCompareWriteAt: a lockspace's next renewal handed to the file's I/O thread ahead of its
// time (LeaseStorage.readCompareWriteAt), started by that thread at its time.
describe('DirectFile.readCompareWriteAt (a scheduled request)', () => {
  const area = (name: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(2), sector(3), sector(4)]));
    return p;
  };
  const ms = () => Number(process.hrtime.bigint() / 1000000n);
  const window = (startInMs: number, latestStartInMs = startInMs + 5000) => ({ startInMs, latestStartInMs });

  it('may start SCHEDULE_SLACK_MS early: the storage contract states the addon\'s own slack', () => {
    expect(loadNative().scheduleSlackMs).toBe(SCHEDULE_SLACK_MS);
  });

  it('starts at its time, not before, while requests submitted meanwhile go ahead of it', async () => {
    const p = area('at-time');
    const f = await DirectFile.open(p);
    try {
      const t0 = ms();
      const target = allocIoBuffer(2048);
      let doneAt = 0;
      const r = f.readCompareWriteAt(0, target, 1024, sector(3), [{ offset: 1024, data: sector(7) }], 1000, window(400))
        .then((v) => { doneAt = ms(); return v; });
      // A read submitted after it completes at once, and finds nothing written yet.
      const first = await f.read(1024, 512, 1000);
      expect(ms() - t0).toBeLessThan(300);
      expect(first[0]).toBe(3);
      await new Promise((res) => setTimeout(res, 250));
      expect(fs.readFileSync(p)[1024]).toBe(3);
      const done = await r;
      expect(done).toMatchObject({ written: true });
      expect(done !== NOT_STARTED && done.ms).toBeLessThan(300); // from its start, not from the call
      expect(doneAt - t0).toBeGreaterThanOrEqual(400 - SCHEDULE_SLACK_MS);
      expect(fs.readFileSync(p)[1024]).toBe(7);
      expect([target[0], target[1024]]).toEqual([1, 3]); // as read at its start
    } finally {
      await f.close();
    }
  });

  it('cancelScheduled stops it before its start: NOT_STARTED, nothing read or written; one at a time per file', async () => {
    const p = area('cancel');
    const f = await DirectFile.open(p);
    try {
      resetIoStats();
      const r = f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(9) }], 1000, window(300));
      const second = await f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(8) }], 1000, window(10))
        .then(() => undefined, (e: DirectIoError) => e);
      expect(second?.code).toBe('EBUSY');
      expect(f.cancelScheduled()).toBe(true);
      expect(await r).toBe(NOT_STARTED);
      expect(f.cancelScheduled()).toBe(false);
      await new Promise((res) => setTimeout(res, 400));
      expect(fs.readFileSync(p)[0]).toBe(1);
      expect(ioStats(p)).toMatchObject({ reads: 0, writes: 0 });
      // the file takes the next one
      expect(await f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(6) }], 1000, window(20))).toMatchObject({ written: true });
      expect(fs.readFileSync(p)[0]).toBe(6);
      // and compares as readCompareWrite does: 1s expected, 6s found, nothing written
      expect(await f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(5) }], 1000, window(20))).toMatchObject({ written: false });
      expect(fs.readFileSync(p)[0]).toBe(6);
    } finally {
      await f.close();
    }
  });

  it('is not started when its thread reaches it after its latest start (busy, or the process was stopped): NOT_STARTED, nothing written', async () => {
    const p = area('late');
    const f = await DirectFile.open(p);
    try {
      // The file's one thread is busy in a read for 600 ms; the scheduled request may start from
      // 100 ms, at the latest at 300 ms.
      stall(p, 1536, 600);
      const busy = f.read(1536, 512, 5000);
      const r = f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(9) }], 5000, window(100, 300));
      expect((await busy)[0]).toBe(4);
      expect(await r).toBe(NOT_STARTED);
      expect(fs.readFileSync(p)[0]).toBe(1);
    } finally {
      await f.close();
    }
  });

  it('close cancels it: NOT_STARTED, nothing written', async () => {
    const p = area('close');
    const f = await DirectFile.open(p);
    const r = f.readCompareWriteAt(0, allocIoBuffer(2048), 0, sector(1), [{ offset: 0, data: sector(9) }], 1000, window(300));
    await f.close();
    expect(await r).toBe(NOT_STARTED);
    await new Promise((res) => setTimeout(res, 400));
    expect(fs.readFileSync(p)[0]).toBe(1);
  });

  it('a series (nextInMs): each starts at its time; its thread stays, past its idle time, for the next', async () => {
    const p = area('series');
    const f = await DirectFile.open(p, { keepThreadMs: 50 });
    const threadsOf = () => (f as unknown as { native: { threadCount(): number } }).native.threadCount();
    try {
      let expected = sector(1);
      let start = ms() + 150;
      for (let i = 0; i < 3; i++) {
        const next = sector(10 + i);
        // 200 ms apart, four times the file's idle time; submitted 100 ms after the last one ended
        expect(await f.readCompareWriteAt(0, allocIoBuffer(2048), 0, expected, [{ offset: 0, data: next }], 1000,
          { startInMs: start - ms(), latestStartInMs: 5000, nextInMs: 200 })).toMatchObject({ written: true });
        expect(ms()).toBeGreaterThanOrEqual(start - SCHEDULE_SLACK_MS);
        expected = next;
        start += 200;
        await new Promise((res) => setTimeout(res, 100));
        expect(threadsOf()).toBe(1); // waiting for the next one, not gone after 50 ms idle
      }
      expect(fs.readFileSync(p)[0]).toBe(12);
      // the series has ended: the thread leaves after its idle time once the announced start has passed
      await new Promise((res) => setTimeout(res, 300));
      expect(threadsOf()).toBe(0);
    } finally {
      await f.close();
    }
  });
});
