import fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { allocIoBuffer, DirectFile } from '../../src/io/directio';
import { systemClock } from '../../src/lease/clock';
import { NOT_STARTED } from '../../src/lease/storage';
import { DEFAULT_GEOMETRY, freshDeltaLeader, sealLeaderInto } from '../../src/ondisk';
import { LEADER_CHECKSUM_LEN } from '../../src/ondisk/constants';
import { LEADER_CHECKSUM_OFFSET, LEADER_TIMESTAMP_OFFSET, leaderChecksum } from '../../src/ondisk/leader';

/**
 * A scheduled renewal's stamp (native/src/stamp.cc): the I/O thread, starting the request, puts
 * the time and sanlock's checksum into the sector. What it writes must be, byte for byte, what
 * sealing the record with that timestamp gives in JavaScript (src/ondisk), for any record.
 */
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-stamp-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const STAMP = { timestampAt: LEADER_TIMESTAMP_OFFSET, checksumAt: LEADER_CHECKSUM_OFFSET, checksumLength: LEADER_CHECKSUM_LEN };

describe('the stamp of a scheduled renewal', () => {
  it('writes the record sealed with the time it started, as sealLeaderInto would', async () => {
    const p = path.join(dir, 'stamp');
    fs.writeFileSync(p, Buffer.alloc(1024));
    const f = await DirectFile.open(p);
    try {
      await fc.assert(fc.asyncProperty(
        fc.record({ owner: fc.integer({ min: 1, max: 2000 }), gen: fc.integer({ min: 1, max: 2 ** 40 }), name: fc.string({ maxLength: 47 }), io: fc.integer({ min: 1, max: 255 }), bits: fc.uint8Array({ minLength: 8, maxLength: 8 }) }),
        async (x) => {
          const rec = { ...freshDeltaLeader({ spaceName: 'ST', geometry: DEFAULT_GEOMETRY, ioTimeout: x.io }), ownerId: x.owner, ownerGeneration: x.gen, timestamp: 7, resourceName: x.name };
          const sector = Buffer.alloc(512);
          sealLeaderInto(rec, sector, 0, 47);
          sector.set(x.bits, 256); // a bitmap: outside the checksummed record
          const current = Buffer.from(fs.readFileSync(p).subarray(0, 512));
          const before = systemClock.monotime();
          const r = await f.readCompareWriteAt(0, allocIoBuffer(1024), 0, current, [{ offset: 0, data: sector }], 1000, { startInMs: 1, latestStartInMs: 5000 }, STAMP);
          const after = systemClock.monotime();
          if (r === NOT_STARTED) throw new Error('not started');
          expect(r.written).toBe(true);
          expect(r.timestamp).toBeGreaterThanOrEqual(before);
          expect(r.timestamp).toBeLessThanOrEqual(after);
          const want = Buffer.from(sector);
          sealLeaderInto({ ...rec, timestamp: r.timestamp! }, want, 0, 47);
          const got = fs.readFileSync(p).subarray(0, 512);
          expect(got.equals(want)).toBe(true);
          expect(r.checksum).toBe(leaderChecksum(got, 0));
        }), { numRuns: 40 });
    } finally {
      await f.close();
    }
  });

  it('refuses a stamp outside the first write, or a checksum inside the bytes it covers', async () => {
    const p = path.join(dir, 'stamp-bad');
    fs.writeFileSync(p, Buffer.alloc(512));
    const f = await DirectFile.open(p);
    try {
      for (const bad of [{ ...STAMP, timestampAt: 508 }, { ...STAMP, checksumAt: 510 }, { ...STAMP, checksumAt: 100 }]) {
        const e = await f.readCompareWriteAt(0, allocIoBuffer(512), 0, Buffer.alloc(512), [{ offset: 0, data: Buffer.alloc(512, 1) }], 1000,
          { startInMs: 1, latestStartInMs: 1000 }, bad).then(() => undefined, (x: NodeJS.ErrnoException) => x);
        expect(e?.code).toBe('EINVAL');
      }
      expect(fs.readFileSync(p).equals(Buffer.alloc(512))).toBe(true);
    } finally {
      await f.close();
    }
  });
});
