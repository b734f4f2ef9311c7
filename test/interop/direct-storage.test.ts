/**
 * FileLeaseStorage (src/io/file-storage.ts) over the O_DIRECT addon: what it reports, how it
 * fails, and that sanlock reads what it writes.
 */
import * as fs from 'fs';
import * as path from 'path';
import { FileLeaseStorage, openLeaseStorage } from '../../src/io/file-storage';
import { loadNative } from '../../src/io/native';
import { LeaseError } from '../../src/ondisk/results';
import { buildLockspaceArea, geometryFor } from '../../src/ondisk';
import { makeTempDir, removeTempDir, sanlock, sparseFile } from '../helpers/cli';
import { describeInterop } from '../helpers/interop';

const MiB = 1048576;

describe('FileLeaseStorage', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir('lockagent-storage');
  });
  afterAll(() => removeTempDir(dir));

  it('opens an existing file, reports its size and 512-byte alignment, reads and writes whole sectors', async () => {
    const f = sparseFile(path.join(dir, 'a.img'), MiB);
    const s = await openLeaseStorage(f);
    try {
      expect(s.id).toBe(f);
      expect(s.info).toMatchObject({ isBlockDevice: false, size: MiB });
      expect(s.alignment).toBe(512);
      expect(s.direct).toBe(true); // /tmp is ext4 here: real O_DIRECT
      const sector = Buffer.alloc(512, 0xab);
      await s.write(4096, sector, 5000);
      expect((await s.read(4096, 512, 5000)).equals(sector)).toBe(true);
      // past EOF reads as zeros (sanlock would see a short read; the CLI checks bounds itself)
      expect((await s.read(MiB, 512, 5000)).equals(Buffer.alloc(512))).toBe(true);
    } finally {
      await s.close();
    }
    expect(fs.readFileSync(f).subarray(4096, 4608).equals(Buffer.alloc(512, 0xab))).toBe(true);
  });

  it('a missing path rejects with ENOENT and creates nothing', async () => {
    const f = path.join(dir, 'missing.img');
    await expect(openLeaseStorage(f)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fs.existsSync(f)).toBe(false);
  });

  it('read-only storage refuses writes; misaligned I/O is EINVAL; a closed storage refuses I/O', async () => {
    const f = sparseFile(path.join(dir, 'ro.img'), MiB);
    const s = await openLeaseStorage(f, { readOnly: true });
    await expect(s.write(0, Buffer.alloc(512), 1000)).rejects.toThrow(/opened read-only/);
    await expect(s.read(100, 512, 1000)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(s.read(0, 100, 1000)).rejects.toMatchObject({ code: 'EINVAL' });
    await s.close();
    await s.close(); // idempotent
    await expect(s.read(0, 512, 1000)).rejects.toThrow(/closed/);
  });

  it('an I/O that outlives its timeout rejects with LeaseError -202 (SANLK_AIO_TIMEOUT)', async () => {
    const native = loadNative();
    const f = sparseFile(path.join(dir, 'slow.img'), MiB);
    const s: FileLeaseStorage = await openLeaseStorage(f);
    try {
      native._testInjectStall(f, 8192, 400, 1);
      const err = await s.read(8192, 512, 50).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(LeaseError);
      expect((err as LeaseError).rv).toBe(-202);
      expect((err as Error).message).toMatch(/did not complete within 50 ms/);
    } finally {
      await new Promise((r) => setTimeout(r, 500));
      await s.close();
    }
  });
});

describeInterop('FileLeaseStorage writes that sanlock reads', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir('lockagent-storage-sl');
  });
  afterAll(() => removeTempDir(dir));

  it('a lockspace written through FileLeaseStorage (area, then commit sector) is valid for sanlock', async () => {
    const f = sparseFile(path.join(dir, 'ls.img'), 0);
    const { area, commitSector } = buildLockspaceArea({ spaceName: 'STOR', geometry: geometryFor(4096, 2 * MiB) });
    const s = await openLeaseStorage(f);
    await s.write(2 * MiB, area, 60000);
    await s.write(2 * MiB, commitSector, 60000);
    await s.close();
    expect(fs.statSync(f).size).toBe(4 * MiB);
    const r = await sanlock(['direct', 'read_leader', '-s', `STOR:500:${f}:2M`]);
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['read_leader done 0', 'magic 0x12212010']);
  });
});
