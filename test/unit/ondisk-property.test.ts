/**
 * Properties of the on-disk records (fast-check): encode/decode round trips, the checksum
 * catching every single-byte change in the bytes it covers (and only those), and decoders that
 * never throw anything but a typed error on arbitrary bytes.
 */
import fc from 'fast-check';
import {
  readRawDblock, readRawLeader, readRawModeBlock, readRawRequest, readRawRindexEntry, readRawRindexHeader,
} from '../../src/cli/sanlock-format';
import {
  bitmapHosts, Dblock, dblockChecksum, dblockValid, decodeDblock, decodeLeader, decodeModeBlock, decodeRequest,
  decodeRindexEntry, decodeRindexHeader, DELTA_DISK_MAGIC, DELTA_DISK_VERSION, encodeDblock, encodeLeader,
  encodeModeBlockInto, encodeRequestInto, geometryFromLeader, isRindexHeader, LeaderRecord, leaderChecksum, leaderKind,
  LeaseError, ModeBlock, PAXOS_DISK_MAGIC, PAXOS_DISK_VERSION, RequestRecord, sealDblockInto, sealLeader, verifyDblocks,
  verifyDeltaLeader, verifyPaxosLeader,
} from '../../src/ondisk';
import { readU64, writeU64 } from '../../src/ondisk/u64';

const RUNS = { numRuns: 300 };

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.maxSafeNat();
/** A name field: latin1 bytes 1..255 (no NUL), up to 48 of them. */
const name = fc.string({ unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 48 });

const leaderArb: fc.Arbitrary<LeaderRecord> = fc.record({
  magic: u32, version: u32, flags: u32, sectorSize: u32,
  numHosts: u64, maxHosts: u64, ownerId: u64, ownerGeneration: u64, lver: u64,
  spaceName: name, resourceName: name,
  timestamp: u64, unused1: u64, checksum: u32, unused2: u16, ioTimeout: u16,
  writeId: u64, writeGeneration: u64, writeTimestamp: u64,
});

const dblockArb: fc.Arbitrary<Dblock> = fc.record({
  mbal: u64, bal: u64, inp: u64, inp2: u64, inp3: u64, lver: u64, checksum: u32, flags: u32,
});

const modeBlockArb: fc.Arbitrary<ModeBlock> = fc.record({ flags: u32, generation: u64 });

const requestArb: fc.Arbitrary<RequestRecord> = fc.record({ magic: u32, version: u32, lver: u64, forceMode: u32 });

/** The only errors a decoder may throw. Node's Buffer errors come from another realm under jest. */
function isTypedError(e: unknown): boolean {
  if (e instanceof LeaseError || e instanceof RangeError) return true;
  return !!e && typeof e === 'object' && ['RangeError', 'LeaseError'].includes((e as Error).name);
}

describe('round trips: decode(encode(x)) = x', () => {
  it('leader record (200 bytes, every field)', () => {
    fc.assert(fc.property(leaderArb, (rec) => {
      const bytes = encodeLeader(rec);
      expect(bytes.length).toBe(200);
      expect(decodeLeader(bytes)).toEqual(rec);
      // and at an offset inside a larger buffer, as in a lockspace area
      const area = Buffer.alloc(1024, 0xee);
      bytes.copy(area, 512);
      expect(decodeLeader(area, 512)).toEqual(rec);
    }), RUNS);
  });

  it('dblock (56 bytes)', () => {
    fc.assert(fc.property(dblockArb, (d) => {
      expect(decodeDblock(encodeDblock(d))).toEqual(d);
    }), RUNS);
  });

  it('mode block at byte 128 of a sector, whatever garbage was in its padding', () => {
    fc.assert(fc.property(modeBlockArb, fc.uint8Array({ minLength: 512, maxLength: 512 }), (m, garbage) => {
      const sector = Buffer.from(garbage);
      encodeModeBlockInto(m, sector, 0);
      expect(decodeModeBlock(sector, 0)).toEqual(m);
      expect(sector.readUInt32LE(132)).toBe(0); // we never write padding garbage
      sector.writeUInt32LE(0xdeadbeef, 132); // a foreign writer's padding is ignored
      expect(decodeModeBlock(sector, 0)).toEqual(m);
    }), RUNS);
  });

  it('request record (24 bytes), garbage in bytes 20..23 ignored', () => {
    fc.assert(fc.property(requestArb, u32, (r, pad) => {
      const b = Buffer.alloc(24);
      encodeRequestInto(r, b, 0);
      expect(b.readUInt32LE(20)).toBe(0);
      expect(decodeRequest(b, 0)).toEqual(r);
      b.writeUInt32LE(pad, 20);
      expect(decodeRequest(b, 0)).toEqual(r);
    }), RUNS);
  });

  it('the CLI\'s exact (bigint) readers agree with the decoders', () => {
    fc.assert(fc.property(leaderArb, dblockArb, (rec, d) => {
      const raw = readRawLeader(encodeLeader(rec));
      expect(Number(raw.numHosts)).toBe(rec.numHosts);
      expect(Number(raw.writeTimestamp)).toBe(rec.writeTimestamp);
      expect(raw.spaceName).toBe(rec.spaceName);
      expect(raw.resourceName).toBe(rec.resourceName);
      const rd = readRawDblock(encodeDblock(d), 0);
      expect([rd.mbal, rd.bal, rd.inp, rd.inp2, rd.inp3, rd.lver].map(Number)).toEqual([d.mbal, d.bal, d.inp, d.inp2, d.inp3, d.lver]);
    }), RUNS);
  });
});

describe('checksums', () => {
  /** A leader that verifies: delta or paxos magic and version, names as given. */
  const validLeader = fc.tuple(leaderArb, fc.boolean()).map(([rec, delta]) => ({
    ...rec,
    magic: delta ? DELTA_DISK_MAGIC : PAXOS_DISK_MAGIC,
    version: delta ? DELTA_DISK_VERSION : PAXOS_DISK_VERSION,
    numHosts: rec.numHosts,
  }));
  const verify = (b: Buffer, rec: LeaderRecord) => (rec.magic === DELTA_DISK_MAGIC
    ? verifyDeltaLeader(b, 0, rec.spaceName).rv
    : verifyPaxosLeader(b, 0, rec.spaceName, rec.resourceName, 0).rv);

  it('flipping any byte in [0,168) of a sealed leader fails the checksum (and verification)', () => {
    fc.assert(fc.property(validLeader, fc.integer({ min: 0, max: 167 }), fc.integer({ min: 1, max: 255 }), (rec, i, x) => {
      const { rec: sealed, bytes } = sealLeader(rec);
      expect(leaderChecksum(bytes)).toBe(sealed.checksum);
      expect(verify(bytes, sealed)).toBe(0);
      bytes[i] ^= x;
      expect(leaderChecksum(bytes)).not.toBe(bytes.readUInt32LE(168));
      expect(verify(bytes, sealed)).not.toBe(0);
    }), RUNS);
  });

  it('bytes 172..199 (io_timeout, write_*) are not covered: changing them still verifies', () => {
    fc.assert(fc.property(validLeader, fc.integer({ min: 172, max: 199 }), fc.integer({ min: 1, max: 255 }), (rec, i, x) => {
      const { rec: sealed, bytes } = sealLeader(rec);
      bytes[i] ^= x;
      expect(verify(bytes, sealed)).toBe(0);
    }), RUNS);
  });

  it('flipping any byte in [0,48) of a sealed dblock fails its checksum; flags (52..55) are not covered', () => {
    fc.assert(fc.property(dblockArb, fc.integer({ min: 0, max: 47 }), fc.integer({ min: 1, max: 255 }), u32, (d, i, x, flags) => {
      const b = Buffer.alloc(56);
      const sealed = sealDblockInto(d, b, 0);
      expect(dblockChecksum(b, 0)).toBe(sealed.checksum);
      expect(dblockValid(b, 0)).toBe(true);
      b.writeUInt32LE(flags, 52);
      expect(dblockValid(b, 0)).toBe(true);
      b[i] ^= x;
      expect(dblockChecksum(b, 0)).not.toBe(sealed.checksum);
      // an all-zero dblock counts as unused (valid) only if its stored checksum is also zero
      if (sealed.checksum !== 0) expect(dblockValid(b, 0)).toBe(false);
    }), RUNS);
  });
});

describe('arbitrary bytes never crash the decoders', () => {
  const bytes = fc.uint8Array({ maxLength: 1300 }).map((a) => Buffer.from(a));
  const offset = fc.integer({ min: -64, max: 1400 });

  const entryPoints: [string, (b: Buffer, off: number, n: number) => unknown][] = [
    ['decodeLeader', (b, off) => decodeLeader(b, off)],
    ['decodeDblock', (b, off) => decodeDblock(b, off)],
    ['decodeModeBlock', (b, off) => decodeModeBlock(b, off)],
    ['decodeRequest', (b, off) => decodeRequest(b, off)],
    ['decodeRindexHeader', (b, off) => decodeRindexHeader(b, off)],
    ['decodeRindexEntry', (b, off) => decodeRindexEntry(b, off)],
    ['isRindexHeader', (b, off) => isRindexHeader(b, off)],
    ['leaderChecksum', (b, off) => leaderChecksum(b, off)],
    ['dblockChecksum', (b, off) => dblockChecksum(b, off)],
    ['dblockValid', (b, off) => dblockValid(b, off)],
    ['bitmapHosts', (b, off) => bitmapHosts(b, off)],
    ['verifyDeltaLeader', (b, off) => verifyDeltaLeader(b, off, 'LS')],
    ['verifyPaxosLeader', (b, off, n) => verifyPaxosLeader(b, off, 'LS', 'RES', n)],
    ['verifyDblocks', (b, _off, n) => verifyDblocks(b, n, n % 2 ? 512 : 4096)],
    ['geometryFromLeader', (_b, off, n) => geometryFromLeader(n, off >>> 0)],
    ['leaderKind', (_b, off) => leaderKind(off >>> 0)],
    ['readRawLeader', (b, off) => readRawLeader(b, off)],
    ['readRawDblock', (b, off) => readRawDblock(b, off)],
    ['readRawModeBlock', (b, off) => readRawModeBlock(b, off)],
    ['readRawRequest', (b, off) => readRawRequest(b, off)],
    ['readRawRindexHeader', (b, off) => readRawRindexHeader(b, off)],
    ['readRawRindexEntry', (b, off) => readRawRindexEntry(b, off)],
  ];

  it.each(entryPoints)('%s returns or throws only LeaseError/RangeError', (_name, fn) => {
    fc.assert(fc.property(bytes, offset, fc.integer({ min: 0, max: 5000 }), (b, off, n) => {
      try {
        fn(b, off, n);
      } catch (e) {
        if (!isTypedError(e)) throw new Error(`untyped ${(e as Error)?.name}: ${(e as Error)?.message}`);
      }
    }), { numRuns: 400 });
  });

  it('in-range offsets decode without throwing at all', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 200, maxLength: 1024 }), (a) => {
      const b = Buffer.from(a);
      const off = b.length - 200;
      decodeLeader(b, off);
      verifyDeltaLeader(b, off, 'x');
      verifyPaxosLeader(b, off, 'x', 'y', 1);
      decodeDblock(b, b.length - 56);
      decodeModeBlock(b, b.length - 144);
      decodeRequest(b, b.length - 24);
    }), RUNS);
  });
});

describe('u64 fields as numbers (ondisk/u64)', () => {
  it('read as Number(readBigUInt64LE) does, for any 8 bytes (rounded alike above 2^53)', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (v) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(v);
      expect(readU64(b, 0)).toBe(Number(v));
    }), { numRuns: 2000 });
  });

  it('write the bytes writeBigUInt64LE(BigInt(v)) writes, and refuse what it refuses', () => {
    fc.assert(fc.property(fc.oneof(fc.maxSafeNat(), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map(Number), fc.double(), fc.integer({ min: -5, max: 5 })), (v) => {
      const want = Buffer.alloc(8);
      const got = Buffer.alloc(8);
      let ok = true;
      try {
        want.writeBigUInt64LE(BigInt(v));
      } catch {
        ok = false;
      }
      if (ok) {
        writeU64(got, 0, v);
        expect(got).toEqual(want);
      } else {
        expect(() => writeU64(got, 0, v)).toThrow(RangeError);
      }
    }), { numRuns: 2000 });
  });
});
