import { readFileSync } from 'fs';
import { join } from 'path';
import {
  buildLockspaceArea, buildResourceArea, crc32cStandard, decodeDblock, decodeLeader, decodeModeBlock,
  geometryFor, leaderChecksum, MiB, sanlockChecksum, verifyDblocks, verifyDeltaLeader, verifyPaxosLeader,
  bitmapHosts, dblockChecksum,
} from '../../src/ondisk';

const FIX = join(__dirname, '..', 'fixtures', 'sanlock-3.8.5');
const img = (n: string) => readFileSync(join(FIX, n));

describe('sanlock CRC-32C variant', () => {
  it('matches the documented test vectors', () => {
    const s = Buffer.from('123456789');
    expect(sanlockChecksum(s, 0, s.length)).toBe(0xe8c7bb34);
    expect(crc32cStandard(s)).toBe(0xe3069283);
    expect(sanlockChecksum(Buffer.alloc(168), 0, 168)).toBe(0x7e11fbd1);
    expect(sanlockChecksum(Buffer.alloc(48), 0, 48)).toBe(0xcb5ad842);
  });
});

describe('init is byte-identical to sanlock direct init', () => {
  const lockspace = (space: string, sector: number, align: number, ioTimeout?: number) => {
    const { area, commitSector } = buildLockspaceArea({ spaceName: space, geometry: geometryFor(sector, align), ioTimeout });
    commitSector.copy(area, 0);
    return area;
  };
  it('lockspace 512/1M (ls.img)', () => {
    expect(lockspace('LS', 512, MiB).equals(img('ls.img'))).toBe(true);
  });
  it.each([1, 2, 4, 8])('lockspace 4096/%dM (ls4k_*.img)', (a) => {
    const area = lockspace('LS4K', 4096, a * MiB);
    const file = img(`ls4k_${a}M.img`);
    expect(area.equals(file.subarray(0, a * MiB))).toBe(true);
    expect(file.subarray(a * MiB).every((b) => b === 0)).toBe(true);
  });
  it('lockspace with -o 5 at offset 1M (ls_o5.img)', () => {
    expect(lockspace('LSO5', 512, MiB, 5).equals(img('ls_o5.img').subarray(MiB))).toBe(true);
  });
  it('resource 512/1M (res.img), -n 10 (res_n10.img), 48-byte name', () => {
    const g = geometryFor(512, MiB);
    expect(buildResourceArea({ spaceName: 'LS', resourceName: 'RES1', geometry: g }).equals(img('res.img'))).toBe(true);
    expect(buildResourceArea({ spaceName: 'LS', resourceName: 'RESN10', geometry: g, numHosts: 10 }).equals(img('res_n10.img'))).toBe(true);
    expect(buildResourceArea({ spaceName: 'LS', resourceName: 'R'.repeat(48), geometry: g }).equals(img('res_name48.img'))).toBe(true);
  });
  it.each([1, 2, 4, 8])('resource 4096/%dM (res4k_*.img)', (a) => {
    const area = buildResourceArea({ spaceName: 'LS4K', resourceName: 'RES4K', geometry: geometryFor(4096, a * MiB) });
    expect(area.equals(img(`res4k_${a}M.img`).subarray(0, a * MiB))).toBe(true);
  });
  it('cleared resource (res_clear.img) with its write_timestamp', () => {
    const file = img('res_clear.img');
    const ts = decodeLeader(file).writeTimestamp;
    const area = buildResourceArea({ spaceName: 'LS', resourceName: 'RES1', geometry: geometryFor(512, MiB), clear: true, now: ts });
    expect(area.equals(file)).toBe(true);
  });
});

describe('decoding records sanlock wrote', () => {
  it('acquired delta lease (ls_acq.img)', () => {
    const b = img('ls_acq.img');
    const { rv, leader } = verifyDeltaLeader(b, 0, 'LS');
    expect(rv).toBe(0);
    expect(leader).toMatchObject({
      ownerId: 1, ownerGeneration: 1, timestamp: 323, ioTimeout: 10, checksum: 0xc201be70,
      resourceName: 'a785609f-a4e2-4939-b1d0-6e9451b2f7d7.vm',
    });
  });
  it('bitmap bits (ls_bitmap.img)', () => {
    expect(bitmapHosts(img('ls_bitmap.img'), 0)).toEqual([1, 3, 16]);
  });
  it('long host name stored as 47 chars (ls_longname.img)', () => {
    const l = decodeLeader(img('ls_longname.img'), 512);
    expect(l.resourceName).toBe('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK');
    expect(l.ioTimeout).toBe(1);
  });
  it('paxos acquire (res_acq_g2.img)', () => {
    const b = img('res_acq_g2.img');
    const { rv, leader } = verifyPaxosLeader(b, 0, 'LS', 'RES1', 1);
    expect(rv).toBe(0);
    expect(leader).toMatchObject({ ownerId: 1, ownerGeneration: 2, lver: 2, timestamp: 409, writeId: 1, writeGeneration: 2, writeTimestamp: 409, checksum: 0x5b6e6c73 });
    const d = decodeDblock(b, 1024);
    expect(d).toEqual({ mbal: 2001, bal: 2001, inp: 1, inp2: 2, inp3: 409, lver: 2, checksum: 0xedf288d8, flags: 0 });
    expect(dblockChecksum(b, 1024)).toBe(d.checksum);
    expect(decodeModeBlock(b, 1024)).toEqual({ flags: 0, generation: 0 });
  });
  it('verdicts match sanlock: -223 clear, -226, -227, -229, -214', () => {
    expect(verifyPaxosLeader(img('res_clear.img'), 0, 'LS', 'RES1').rv).toBe(-223);
    expect(verifyPaxosLeader(Buffer.alloc(512), 0, 'LS', 'RES1').rv).toBe(-223);
    expect(verifyPaxosLeader(img('res.img'), 0, 'XX', 'RES1').rv).toBe(-226);
    expect(verifyPaxosLeader(img('res.img'), 0, 'LS', 'WRONG').rv).toBe(-227);
    const cs = img('err_cs.img');
    expect(verifyPaxosLeader(cs, 0, 'LS', 'RES1').rv).toBe(-229);
    expect(leaderChecksum(cs, 0)).toBe(0xfc385b77);
    const db = img('err_db.img');
    expect(verifyPaxosLeader(db, 0, 'LS', 'RES1').rv).toBe(0);
    expect(verifyDblocks(db, 2000, 512)).toBe(-214);
    expect(verifyDblocks(img('res_acq.img'), 2000, 512)).toBe(0);
    expect(verifyPaxosLeader(img('res_n10.img'), 0, 'LS', 'RESN10', 11).rv).toBe(-228);
  });
});
