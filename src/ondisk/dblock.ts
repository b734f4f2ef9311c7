import { DBLOCK_CHECKSUM_LEN, DBLOCK_SIZE, MBLOCK_SHARED, MODE_BLOCK_OFFSET } from './constants';
import { sanlockChecksum } from './crc32c';
import { readU64, writeU64 } from './u64';

/** struct paxos_dblock: one per host_id, at the start of sector 2 + (host_id - 1). */
export interface Dblock {
  mbal: number;
  bal: number;
  /** proposed owner host_id */
  inp: number;
  /** proposed owner generation */
  inp2: number;
  /** proposed owner timestamp (proposer's monotime) */
  inp3: number;
  lver: number;
  checksum: number;
  /** DBLOCK_FL_RELEASED; not covered by the checksum */
  flags: number;
}

/** struct mode_block at byte 128 of the dblock sector: marks a shared holder. */
export interface ModeBlock {
  flags: number;
  /** lockspace generation of the shared holder */
  generation: number;
}

export function emptyDblock(): Dblock {
  return { mbal: 0, bal: 0, inp: 0, inp2: 0, inp3: 0, lver: 0, checksum: 0, flags: 0 };
}

export function decodeDblock(buf: Buffer, off = 0): Dblock {
  return {
    mbal: readU64(buf, off),
    bal: readU64(buf, off + 8),
    inp: readU64(buf, off + 16),
    inp2: readU64(buf, off + 24),
    inp3: readU64(buf, off + 32),
    lver: readU64(buf, off + 40),
    checksum: buf.readUInt32LE(off + 48),
    flags: buf.readUInt32LE(off + 52),
  };
}

export function encodeDblockInto(d: Dblock, buf: Buffer, off = 0): void {
  writeU64(buf, off, d.mbal);
  writeU64(buf, off + 8, d.bal);
  writeU64(buf, off + 16, d.inp);
  writeU64(buf, off + 24, d.inp2);
  writeU64(buf, off + 32, d.inp3);
  writeU64(buf, off + 40, d.lver);
  buf.writeUInt32LE(d.checksum >>> 0, off + 48);
  buf.writeUInt32LE(d.flags >>> 0, off + 52);
}

export function dblockChecksum(buf: Buffer, off = 0): number {
  return sanlockChecksum(buf, off, DBLOCK_CHECKSUM_LEN);
}

/** Encode with a computed checksum; returns the stored record. */
export function sealDblockInto(d: Dblock, buf: Buffer, off = 0): Dblock {
  encodeDblockInto({ ...d, checksum: 0 }, buf, off);
  const checksum = dblockChecksum(buf, off);
  buf.writeUInt32LE(checksum, off + 48);
  return { ...d, checksum };
}

export function encodeDblock(d: Dblock): Buffer {
  const b = Buffer.alloc(DBLOCK_SIZE);
  encodeDblockInto(d, b);
  return b;
}

/**
 * sanlock accepts a dblock whose checksum verifies, or one that is entirely unused (checksum,
 * mbal, bal, inp and lver all zero), which is how init leaves them.
 */
export function dblockValid(buf: Buffer, off = 0): boolean {
  const d = decodeDblock(buf, off);
  if (d.checksum === 0 && d.mbal === 0 && d.bal === 0 && d.inp === 0 && d.lver === 0) return true;
  return dblockChecksum(buf, off) === d.checksum;
}

/** Mode block of the sector at `sectorOff`; bytes 132..135 are padding that may hold garbage. */
export function decodeModeBlock(buf: Buffer, sectorOff = 0): ModeBlock {
  return {
    flags: buf.readUInt32LE(sectorOff + MODE_BLOCK_OFFSET),
    generation: readU64(buf, sectorOff + MODE_BLOCK_OFFSET + 8),
  };
}

export function encodeModeBlockInto(m: ModeBlock, buf: Buffer, sectorOff = 0): void {
  buf.writeUInt32LE(m.flags >>> 0, sectorOff + MODE_BLOCK_OFFSET);
  buf.writeUInt32LE(0, sectorOff + MODE_BLOCK_OFFSET + 4);
  writeU64(buf, sectorOff + MODE_BLOCK_OFFSET + 8, m.generation);
}

export function isShared(m: ModeBlock): boolean {
  return (m.flags & MBLOCK_SHARED) !== 0;
}
