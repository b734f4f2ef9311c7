import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { DirectFile, ioStats, resetIoStats } from '../../src/io/directio';
import { loadNative } from '../../src/io/native';

// The AIO context pool's failure path (io_engine.cc's AioPool): io_setup fails, a release's
// writes go one after the other, and the pool calls io_setup again only after its retry time.
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockagent-aiopool-')); // a real file system: O_DIRECT, so AIO
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => resetIoStats());

const sector = (fill: number): Buffer => Buffer.alloc(512, fill);
const sectors = (p: string): number[] => [...fs.readFileSync(p)].filter((_, i) => i % 512 === 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('AioPool when io_setup fails', () => {
  const native = loadNative();
  const contexts = () => native._testIoThreads!().aioContexts;
  afterEach(() => native._testFailAioSetup!(0, 0, 0));

  it('writes one after the other, makes no context, and calls io_setup again only after the retry time', async () => {
    const retryMs = 2000; // the production minute, shortened
    const p = path.join(dir, 'lease');
    fs.writeFileSync(p, Buffer.concat([sector(1), sector(1), sector(1), sector(1)]));
    const f = await DirectFile.open(p, { keepThreadMs: 10000 });
    try {
      expect(f.direct).toBe(true); // without O_DIRECT no request takes a context: nothing below would be tested
      // The pool is the process's, and a jest worker runs other files before this one: a free
      // context left by them would serve the request without io_setup, so they go.
      native._testDropFreeAioContexts!();
      expect(contexts()).toBe(0); // and none is in flight

      // EAGAIN: io_setup's answer when QEMU's disks have taken fs.aio-max-nr
      native._testFailAioSetup!(1, os.constants.errno.EAGAIN, retryMs);
      const t0 = performance.now();
      expect(await f.writeIfUnchanged(0, sector(1), [{ offset: 1024, data: sector(2) }, { offset: 0, data: sector(3) }, { offset: 1536, data: sector(4) }], 2000)).toBe(true);
      const failedBy = performance.now();
      expect(native._testFailAioSetup!(0, 0, retryMs)).toBe(0); // io_setup was called, and failed
      expect(sectors(p)).toEqual([3, 1, 2, 4]);
      expect(ioStats(p)).toMatchObject({ writes: 3, bytesWritten: 1536, writesTogether: 0 });
      expect(contexts()).toBe(0);

      // io_setup would succeed now, but the retry time has not come: one after the other again
      expect(await f.writeIfUnchanged(0, sector(3), [{ offset: 1024, data: sector(5) }, { offset: 0, data: sector(6) }], 2000)).toBe(true);
      expect(performance.now() - t0).toBeLessThan(retryMs); // else the request may have come after it
      expect(sectors(p)).toEqual([6, 1, 5, 4]);
      expect(ioStats(p)).toMatchObject({ writes: 5, writesTogether: 0 });
      expect(contexts()).toBe(0);

      // past the retry time: the next request makes a context, and its writes go together
      await sleep(failedBy + retryMs + 100 - performance.now());
      expect(await f.writeIfUnchanged(0, sector(6), [{ offset: 512, data: sector(7) }, { offset: 0, data: sector(8) }], 2000)).toBe(true);
      expect(sectors(p)).toEqual([8, 7, 5, 4]);
      expect(ioStats(p)).toMatchObject({ writes: 7, writesTogether: 2 });
      expect(contexts()).toBe(1);
    } finally {
      await f.close();
    }
  });
});
