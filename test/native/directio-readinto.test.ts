import * as fs from 'fs';
import * as path from 'path';

import { allocIoBuffer, DirectFile, DirectIoError, ioStats, resetIoStats } from '../../src/io/directio';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { loadNative } from '../../src/io/native';

// readInto: the lease engine's reusable area buffers (no new Buffer per 1-8 MiB read).
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync('/tmp/lockagent-readinto-');
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => resetIoStats());

const stall = (p: string, offset: number, ms: number): void =>
  (loadNative() as unknown as { _testInjectStall(p: string, o: number, ms: number, n: number): void })._testInjectStall(p, offset, ms, 1);

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('DirectFile.readInto', () => {
  it('fills the caller\'s buffer, reusable across reads and sizes, and counts like read()', async () => {
    const p = path.join(dir, 'area');
    const data = pattern(2 << 20, 7);
    fs.writeFileSync(p, data);
    const f = await DirectFile.open(p);
    try {
      const big = Buffer.alloc(1 << 20);
      for (const off of [0, 1 << 20, 0]) {
        await f.readInto(off, big, 1000);
        expect(big.equals(data.subarray(off, off + big.length))).toBe(true);
      }
      const small = Buffer.alloc(1536);
      await f.readInto(512, small, 1000);
      expect(small.equals(data.subarray(512, 512 + 1536))).toBe(true);
      // a subarray target (non-zero byteOffset) works too
      const view = Buffer.alloc(4096).subarray(1024, 2048);
      await f.readInto(3 * 512, view, 1000);
      expect(view.equals(data.subarray(1536, 2560))).toBe(true);
      expect(ioStats(p)).toMatchObject({ reads: 5, bytesRead: 3 * (1 << 20) + 1536 + 1024 });
    } finally {
      await f.close();
    }
  });

  it('zero-fills past EOF and leaves the buffer untouched on a rejected read', async () => {
    const p = path.join(dir, 'short');
    fs.writeFileSync(p, pattern(1024, 3));
    const f = await DirectFile.open(p);
    try {
      const b = Buffer.alloc(2048, 0xaa);
      await f.readInto(0, b, 1000);
      expect(b.subarray(0, 1024).equals(pattern(1024, 3))).toBe(true);
      expect(b.subarray(1024).every((x) => x === 0)).toBe(true);

      const untouched = Buffer.alloc(512, 0x55);
      const e = await f.readInto(100, untouched, 1000).then(() => undefined, (x: DirectIoError) => x);
      expect(e?.code).toBe('EINVAL');
      (loadNative() as unknown as { _testInjectStall(p: string, o: number, ms: number, n: number): void })._testInjectStall(p, 0, 300, 1);
      const t = await f.readInto(0, untouched, 50).then(() => undefined, (x: DirectIoError) => x);
      expect(t?.code).toBe('ETIMEDOUT');
      await new Promise((r) => setTimeout(r, 400)); // the stalled read completes late
      expect(untouched.every((x) => x === 0x55)).toBe(true);
    } finally {
      await f.close();
    }
  });

  it('reads into an allocIoBuffer() buffer in place: a late completion after a timeout lands in it', async () => {
    const p = path.join(dir, 'inplace');
    const data = pattern(1 << 20, 5);
    fs.writeFileSync(p, data);
    const f = await DirectFile.open(p);
    try {
      const b = allocIoBuffer(1 << 20);
      expect(b.length).toBe(1 << 20);
      await f.readInto(0, b, 1000);
      expect(b.equals(data)).toBe(true);
      // its start (a shorter read) is read in place too; a part further in is copied into
      const head = b.subarray(0, 4096);
      b.fill(0);
      await f.readInto(4096, head, 1000);
      expect(head.equals(data.subarray(4096, 8192))).toBe(true);
      const mid = b.subarray(8192, 8192 + 512);
      await f.readInto(0, mid, 1000);
      expect(mid.equals(data.subarray(0, 512))).toBe(true);

      // In place: the read that timed out still fills the buffer when it completes (which is
      // why the engine abandons a buffer whose read failed).
      b.fill(0);
      stall(p, 0, 300);
      const t = await f.readInto(0, b, 50).then(() => undefined, (x: DirectIoError) => x);
      expect(t?.code).toBe('ETIMEDOUT');
      expect(b.every((x) => x === 0)).toBe(true);
      await new Promise((r) => setTimeout(r, 450));
      expect(b.equals(data)).toBe(true);
      expect(ioStats(p).lateCompletions).toBe(1);
    } finally {
      await f.close();
    }
  });

  it('is what FileLeaseStorage.readInto uses, with timeouts as -202', async () => {
    const p = path.join(dir, 'lease');
    fs.writeFileSync(p, pattern(1 << 20, 9));
    const s = await FileLeaseStorage.open(p);
    try {
      const b = Buffer.alloc(1 << 20);
      await s.readInto(0, b, 1000);
      expect(b.equals(pattern(1 << 20, 9))).toBe(true);
      (loadNative() as unknown as { _testInjectStall(p: string, o: number, ms: number, n: number): void })._testInjectStall(p, 0, 300, 1);
      await expect(s.readInto(0, b, 50)).rejects.toMatchObject({ rv: -202 });
      await new Promise((r) => setTimeout(r, 400));
    } finally {
      await s.close();
    }
  });
});
