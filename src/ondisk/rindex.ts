import { RINDEX_DISK_MAGIC } from './constants';
import { readName } from './names';
import { MiB } from './sizes';
import { readU64 } from './u64';

/** Resource index header (read-only support: dump shows it as sanlock does). */
export interface RindexHeader {
  magic: number;
  version: number;
  flags: number;
  sectorSize: number;
  maxResources: number;
  rxOffset: number;
  lockspaceName: string;
}

export interface RindexEntry {
  resOffset: number;
  flags: number;
  name: string;
}

export const RINDEX_ENTRY_SIZE = 64;

export function decodeRindexHeader(buf: Buffer, off = 0): RindexHeader {
  return {
    magic: buf.readUInt32LE(off),
    version: buf.readUInt32LE(off + 4),
    flags: buf.readUInt32LE(off + 8),
    sectorSize: buf.readUInt32LE(off + 12),
    maxResources: buf.readUInt32LE(off + 16),
    rxOffset: readU64(buf, off + 24),
    lockspaceName: readName(buf, off + 32),
  };
}

export function isRindexHeader(buf: Buffer, off = 0): boolean {
  return buf.length >= off + 80 && buf.readUInt32LE(off) === RINDEX_DISK_MAGIC;
}

/** Align size from the rindex header flags (1,2,4,8 = 1M..8M; different bits from the leader's). */
export function rindexAlignSize(flags: number, sectorSize: number): number {
  if (flags & 1) return 1 * MiB;
  if (flags & 2) return 2 * MiB;
  if (flags & 4) return 4 * MiB;
  if (flags & 8) return 8 * MiB;
  return sectorSize === 4096 ? 8 * MiB : 1 * MiB;
}

export function decodeRindexEntry(buf: Buffer, off: number): RindexEntry {
  return {
    resOffset: readU64(buf, off),
    flags: buf.readUInt32LE(off + 8),
    name: readName(buf, off + 16),
  };
}
