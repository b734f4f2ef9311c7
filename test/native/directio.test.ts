import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import {
  DirectFile,
  DirectIoError,
  ioStats,
  resetIoStats,
  setFallbackWarningHandler,
} from '../../src/io/directio';
import { loadNative, NativeFile } from '../../src/io/native';

// Real files under /tmp (not /dev/shm: tmpfs may refuse O_DIRECT).
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync('/tmp/lockagent-directio-');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => resetIoStats());

function makeFile(name: string, content: Buffer | number = 0): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, typeof content === 'number' ? Buffer.alloc(content) : content);
  return p;
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

async function rejectionOf(p: Promise<unknown>): Promise<DirectIoError> {
  try {
    await p;
  } catch (e) {
    return e as DirectIoError;
  }
  throw new Error('expected the promise to reject');
}

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const nativeOf = (f: DirectFile): NativeFile => (f as unknown as { native: NativeFile }).native;

describe('DirectFile basics', () => {
  it('round-trips 512-byte sectors with O_DIRECT', async () => {
    const p = makeFile('rt512', 4096);
    const f = await DirectFile.open(p);
    try {
      expect(f.direct).toBe(true);
      const a = pattern(512, 1);
      const b = pattern(1024, 2);
      await f.write(0, a, 1000);
      await f.write(512 * 7, b, 1000);
      expect(await f.read(0, 512, 1000)).toEqual(a);
      expect(await f.read(512 * 7, 1024, 1000)).toEqual(b);
      const onDisk = fs.readFileSync(p);
      expect(onDisk.subarray(0, 512)).toEqual(a);
      expect(onDisk.subarray(3584, 4608)).toEqual(b);
      expect(onDisk.length).toBe(4608); // the second write extended the file
    } finally {
      await f.close();
    }
  });

  it('round-trips 4096-byte multiples at large offsets', async () => {
    const p = makeFile('rt4k');
    const f = await DirectFile.open(p);
    try {
      const data = pattern(3 * 4096, 7);
      await f.write(1 << 20, data, 1000);
      const back = await f.read(1 << 20, 3 * 4096, 1000);
      expect(back).toEqual(data);
      expect(Buffer.isBuffer(back)).toBe(true);
      expect(fs.statSync(p).size).toBe((1 << 20) + 3 * 4096);
    } finally {
      await f.close();
    }
  });

  it('rejects misaligned offsets and lengths with a clear message and writes nothing', async () => {
    const before = pattern(2048, 3);
    const p = makeFile('misaligned', before);
    const f = await DirectFile.open(p);
    try {
      let e = await rejectionOf(f.write(100, pattern(512, 9), 1000));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toBe(`misaligned write on ${p}: offset 100 is not a multiple of 512`);
      e = await rejectionOf(f.write(0, pattern(700, 9), 1000));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toContain('length 700 at offset 0 is not a multiple of 512');
      e = await rejectionOf(f.read(513, 512, 1000));
      expect(e.message).toContain('offset 513');
      e = await rejectionOf(f.read(0, 100, 1000));
      expect(e.message).toContain('length 100');
      e = await rejectionOf(f.read(0, 512, 0));
      expect(e.message).toContain('timeoutMs');
      expect(fs.readFileSync(p)).toEqual(before);
      expect(ioStats(p)).toMatchObject({ reads: 0, writes: 0, errors: 0 });
    } finally {
      await f.close();
    }
  });

  it('reports a missing file as ENOENT naming the path', async () => {
    const p = path.join(dir, 'no', 'such-file');
    const e = await rejectionOf(DirectFile.open(p));
    expect(e.message).toBe(`cannot open ${p}: No such file or directory`);
    expect(e).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open', path: p });
    expect(e).toBeInstanceOf(Error);
    expect(e.stack).toContain("directio.test.ts"); // async stack points at the caller
    expect(ioStats(p).errors).toBe(1);
  });

  it('counts per path exactly', async () => {
    const a = makeFile('countA', 8192);
    const b = makeFile('countB', 8192);
    const fa = await DirectFile.open(a);
    const fb = await DirectFile.open(b, { readOnly: true });
    try {
      await fa.write(0, pattern(512, 1), 1000);
      await fa.write(4096, pattern(4096, 2), 1000);
      await fa.read(0, 512, 1000);
      await fa.read(512, 1024, 1000);
      await fa.read(0, 4096, 1000);
      await fb.read(0, 512, 1000);
      const zero = { errors: 0, timeouts: 0, lateCompletions: 0, writesTogether: 0 };
      expect(ioStats(a)).toEqual({ reads: 3, writes: 2, bytesRead: 5632, bytesWritten: 4608, ...zero });
      expect(ioStats(b)).toEqual({ reads: 1, writes: 0, bytesRead: 512, bytesWritten: 0, ...zero });
      expect(ioStats()).toEqual({ reads: 4, writes: 2, bytesRead: 6144, bytesWritten: 4608, ...zero });
      resetIoStats();
      expect(ioStats(a).reads).toBe(0);
      await fa.read(0, 512, 1000); // counters keep working for open handles after a reset
      expect(ioStats(a).reads).toBe(1);
    } finally {
      await fa.close();
      await fb.close();
    }
  });

  it('zero-fills reads beyond EOF of a regular file', async () => {
    const p = makeFile('short', Buffer.alloc(512, 0xaa));
    const odd = makeFile('odd', Buffer.alloc(700, 0x55));
    const f = await DirectFile.open(p, { readOnly: true });
    const g = await DirectFile.open(odd, { readOnly: true });
    try {
      const r = await f.read(0, 4096, 1000);
      expect(r.subarray(0, 512)).toEqual(Buffer.alloc(512, 0xaa));
      expect(r.subarray(512)).toEqual(Buffer.alloc(3584));
      expect(await f.read(1 << 20, 1024, 1000)).toEqual(Buffer.alloc(1024));
      const s = await g.read(0, 1024, 1000); // EOF in the middle of a sector
      expect(s.subarray(0, 700)).toEqual(Buffer.alloc(700, 0x55));
      expect(s.subarray(700)).toEqual(Buffer.alloc(324));
      expect(fs.statSync(p).size).toBe(512);
    } finally {
      await f.close();
      await g.close();
    }
  });

  it('reports device info for a regular file', async () => {
    const p = makeFile('info', 3 * 4096);
    const f = await DirectFile.open(p, { readOnly: true });
    expect(f.info).toEqual({ isBlockDevice: false, size: 12288, logicalSectorSize: 512 });
    expect(f.path).toBe(p);
    await f.close();
  });

  it('names the file the fd is (st_dev, st_ino of the fd), even after the path is re-created', async () => {
    const p = makeFile('fileid', 4096);
    const f = await DirectFile.open(p, { readOnly: true });
    const st = fs.statSync(p, { bigint: true });
    expect(f.fileId).toEqual({ dev: st.dev, ino: st.ino });
    fs.renameSync(p, `${p}.old`);
    fs.writeFileSync(p, Buffer.alloc(4096));
    expect(f.fileId!.ino).not.toBe(fs.statSync(p, { bigint: true }).ino);
    await f.close();
  });

  it('rejects writes on read-only opens and any I/O after close', async () => {
    const p = makeFile('ro', 4096);
    const f = await DirectFile.open(p, { readOnly: true });
    const e = await rejectionOf(f.write(0, pattern(512, 1), 1000));
    expect(e).toMatchObject({ code: 'EBADF', path: p });
    expect(e.message).toContain('opened read-only');
    await f.close();
    await f.close(); // idempotent
    const c = await rejectionOf(f.read(0, 512, 1000));
    expect(c.code).toBe('EBADF');
    expect(c.message).toBe(`cannot read 512 bytes at offset 0 from ${p}: the file is closed`);
  });

  it('falls back to O_DSYNC when O_DIRECT is refused and warns once per path', async () => {
    const native = loadNative();
    const warned: string[] = [];
    setFallbackWarningHandler((p) => warned.push(p));
    const p = makeFile('fallback', 4096);
    const q = makeFile('fallback2', 4096);
    native._testForceDirectEinval(true);
    try {
      const f1 = await DirectFile.open(p);
      const f2 = await DirectFile.open(p, { readOnly: true });
      const f3 = await DirectFile.open(q);
      expect([f1.direct, f2.direct, f3.direct]).toEqual([false, false, false]);
      expect(warned).toEqual([p, q]);
      await f1.write(512, pattern(512, 5), 1000);
      expect(await f2.read(512, 512, 1000)).toEqual(pattern(512, 5));
      await Promise.all([f1.close(), f2.close(), f3.close()]);
    } finally {
      native._testForceDirectEinval(false);
    }
  });
});

describe('deadlines and hung I/O', () => {
  it('times out a hung open (FIFO) without blocking I/O on other paths or the event loop', async () => {
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const p = makeFile('busy', 64 * 1024);
    const f = await DirectFile.open(p, { readOnly: true });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    try {
      const t0 = performance.now();
      // O_RDONLY open of a FIFO blocks until a writer appears.
      const hung = rejectionOf(DirectFile.open(fifo, { readOnly: true, timeoutMs: 300 }));
      const readsDone: number[] = [];
      const reads = Array.from({ length: 50 }, (_, i) =>
        f.read((i % 128) * 512, 512, 1000).then((buf) => {
          readsDone.push(performance.now() - t0);
          return buf;
        }),
      );
      const results = await Promise.all(reads);
      const e = await hung;
      const elapsed = performance.now() - t0;

      expect(results).toHaveLength(50);
      expect(Math.max(...readsDone)).toBeLessThan(300); // not queued behind the FIFO
      expect(e.code).toBe('ETIMEDOUT');
      expect(e.sanlockRv).toBe(-202);
      expect(e.message).toBe(`I/O timeout: open of ${fifo} did not complete within 300 ms`);
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(1000);
      expect(ticks).toBeGreaterThanOrEqual(10); // the event loop kept running
      expect(ioStats(p).reads).toBe(50);
      expect(ioStats(fifo).timeouts).toBe(1);
    } finally {
      clearInterval(timer);
      await f.close();
    }
    // Unblock the stuck open by becoming a writer; the late fd is closed natively.
    const w = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    try {
      await waitFor(() => ioStats(fifo).lateCompletions === 1, 5000);
    } finally {
      fs.closeSync(w);
    }
  });

  it('rejects at the deadline and runs later requests on a replacement thread', async () => {
    const native = loadNative();
    const p = makeFile('stall', 1 << 21);
    // an idle thread stays long enough to be counted below
    const f = await DirectFile.open(p, { keepThreadMs: 10000 });
    try {
      native._testInjectStall(p, 1 << 20, 1500, 1);
      const t0 = performance.now();
      const stuck = rejectionOf(f.read(1 << 20, 512, 200));
      // Queued behind the stuck read; must not wait for it to return.
      const queued = f.read(0, 512, 1000).then(() => performance.now() - t0);
      const e = await stuck;
      const tStuck = performance.now() - t0;
      expect(e.message).toBe(`I/O timeout: read of 512 bytes at offset 1048576 on ${p} did not complete within 200 ms`);
      expect(e).toMatchObject({ code: 'ETIMEDOUT', errno: 110, sanlockRv: -202, syscall: 'read', path: p });
      expect(tStuck).toBeGreaterThanOrEqual(195);
      expect(tStuck).toBeLessThan(400);
      expect(await queued).toBeLessThan(600);
      expect(nativeOf(f).threadCount()).toBe(2);

      const t1 = performance.now();
      await f.write(4096, pattern(512, 1), 1000);
      expect(performance.now() - t1).toBeLessThan(200);

      // The stuck syscall returns at ~1.5 s: dropped, counted, thread retired.
      await waitFor(() => ioStats(p).lateCompletions === 1, 3000);
      await waitFor(() => nativeOf(f).threadCount() === 1, 1000);
      expect(ioStats(p)).toMatchObject({ timeouts: 1, lateCompletions: 1, reads: 1, writes: 1, errors: 0 });
    } finally {
      await f.close();
    }
  });

  it('the deadline watchdog wakes for deadlines that pass, not for requests that completed', async () => {
    const native = loadNative();
    const p = makeFile('watchdog', 1 << 20);
    const f = await DirectFile.open(p);
    try {
      await new Promise((r) => setTimeout(r, 300)); // the open's deadline has no business left either
      const before = native._testWatchdogWakeups!();
      for (let i = 0; i < 40; i++) await f.read(0, 512, 150);
      await new Promise((r) => setTimeout(r, 400)); // past every one of those deadlines
      expect(native._testWatchdogWakeups!() - before).toBeLessThanOrEqual(2);

      // and a deadline that passes still fires (only the watchdog rejects it), on time
      native._testInjectStall(p, 4096, 600, 1);
      const t0 = performance.now();
      const late = await rejectionOf(f.read(4096, 512, 150));
      expect(late.code).toBe('ETIMEDOUT');
      expect(performance.now() - t0).toBeLessThan(400);
    } finally {
      await f.close();
    }
  });

  it('an idle I/O thread leaves after keepThreadMs (default 50 ms); the next request starts one', async () => {
    const p = makeFile('idle', 1 << 16);
    const short = await DirectFile.open(p, { keepThreadMs: 400 });
    const long = await DirectFile.open(p, { keepThreadMs: 3000 });
    const dflt = await DirectFile.open(p);
    try {
      await Promise.all([short.read(0, 512, 1000), long.read(0, 512, 1000), dflt.read(0, 512, 1000)]);
      expect(nativeOf(short).threadCount()).toBe(1);
      expect(nativeOf(long).threadCount()).toBe(1);
      await waitFor(() => nativeOf(dflt).threadCount() === 0, 2000); // the default is the shortest
      await waitFor(() => nativeOf(short).threadCount() === 0, 2000);
      expect(nativeOf(long).threadCount()).toBe(1); // well within its 3 s
      await short.read(512, 512, 1000);
      expect(nativeOf(short).threadCount()).toBe(1);
      await expect(DirectFile.open(p, { keepThreadMs: -1 })).rejects.toMatchObject({ code: 'EINVAL' });
    } finally {
      await short.close();
      await long.close();
      await dflt.close();
    }
  });

  it('a leaving handle thread is parked and taken by the next handle that needs one; at most 4 wait', async () => {
    const native = loadNative();
    const threads = () => native._testIoThreads!();
    const p = makeFile('park', 1 << 16);
    const first = await DirectFile.open(p, { keepThreadMs: 1000 }); // its thread stays through the checks below
    try {
      await first.read(0, 512, 1000);
      await waitFor(() => nativeOf(first).threadCount() === 0 && threads().parked >= 1, 3000);
      // A held lease's release: the request goes to the parked thread, no thread is created.
      const before = threads();
      await first.read(512, 512, 1000);
      expect(threads().created).toBe(before.created);
      expect(threads().parked).toBe(before.parked - 1);
      // And a new handle's open (an acquire's) too.
      await waitFor(() => threads().parked >= 1, 2000);
      const created = threads().created;
      const second = await DirectFile.open(p);
      await second.read(0, 512, 1000);
      expect(threads().created).toBe(created);
      await second.close();
    } finally {
      await first.close();
    }
    // Eight handles busy at once need eight threads; once they leave, at most four stay parked.
    const many = await Promise.all(Array.from({ length: 8 }, () => DirectFile.open(p)));
    try {
      native._testInjectStall(p, 4096, 150, 8);
      await Promise.all(many.map((f) => f.read(4096, 512, 1000)));
      await waitFor(() => many.every((f) => nativeOf(f).threadCount() === 0) && threads().parked === 4, 2000);
      await new Promise((r) => setTimeout(r, 100));
      expect(threads().parked).toBe(4);
    } finally {
      await Promise.all(many.map((f) => f.close()));
    }
  });

  it('caps threads per handle at 4 and then fails fast', async () => {
    const native = loadNative();
    const p = makeFile('cap', 1 << 16);
    const f = await DirectFile.open(p, { keepThreadMs: 10000 });
    try {
      for (let i = 0; i < 4; i++) {
        native._testInjectStall(p, i * 512, 1200, 1);
        const e = await rejectionOf(f.read(i * 512, 512, 100));
        expect(e.code).toBe('ETIMEDOUT');
      }
      expect(nativeOf(f).threadCount()).toBe(4);
      const t0 = performance.now();
      const e = await rejectionOf(f.read(8192, 512, 1000));
      expect(performance.now() - t0).toBeLessThan(100);
      expect(e).toMatchObject({ code: 'ETIMEDOUT', sanlockRv: -202 });
      expect(e.message).toContain('was not started: all 4 I/O threads for this path are stuck');
      expect(ioStats(p).timeouts).toBe(5);

      await waitFor(() => ioStats(p).lateCompletions === 4, 3000);
      await f.read(8192, 512, 1000);
      await waitFor(() => nativeOf(f).threadCount() === 1, 1000);
    } finally {
      await f.close();
    }
  });
});

// Attaches a loop device, so only when asked to (root needed):
//   LOCKAGENT_TEST_LOOPDEV=1 npx jest test/native/directio.test.ts
const loopIt = process.env.LOCKAGENT_TEST_LOOPDEV === '1' ? it : it.skip;
loopIt('reports block device geometry (loop device with 4096-byte sectors)', async () => {
  const img = makeFile('loop.img', 8 << 20);
  const dev = execFileSync('losetup', ['--find', '--show', '--sector-size', '4096', img]).toString().trim();
  try {
    const f = await DirectFile.open(dev);
    try {
      expect(f.info).toEqual({ isBlockDevice: true, size: 8 << 20, logicalSectorSize: 4096 });
      const e = await rejectionOf(f.read(512, 512, 1000));
      expect(e.message).toContain(`offset 512 is not a multiple of 4096 (the logical sector size of ${dev})`);
      await f.write(4096, pattern(8192, 4), 1000);
      expect(await f.read(4096, 8192, 1000)).toEqual(pattern(8192, 4));
      const end = await rejectionOf(f.read(8 << 20, 4096, 1000));
      expect(end.code).toBe('ENXIO');
    } finally {
      await f.close();
    }
  } finally {
    execFileSync('losetup', ['-d', dev]);
  }
});
