import {
  DELTA_DISK_MAGIC, LEADER_CHECKSUM_LEN, LEADER_RECORD_SIZE, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC,
} from './constants';
import { sanlockChecksum } from './crc32c';
import { readName, writeName } from './names';
import { readU64, writeU64 } from './u64';

/**
 * struct leader_record (200 bytes, little-endian). Delta leases (one per host_id sector of a
 * lockspace) and paxos leases (sector 0 of a resource) share it; some fields change meaning.
 */
export interface LeaderRecord {
  magic: number;
  version: number;
  flags: number;
  sectorSize: number;
  numHosts: number;
  maxHosts: number;
  /** delta: host_id; paxos: owner host_id */
  ownerId: number;
  /** delta: host generation, +1 per acquire; paxos: owner's lockspace generation */
  ownerGeneration: number;
  lver: number;
  spaceName: string;
  /** paxos: resource name; delta: the owner's unique host name */
  resourceName: string;
  /** 0 = free. Writer's CLOCK_MONOTONIC seconds. */
  timestamp: number;
  unused1: number;
  checksum: number;
  unused2: number;
  /** delta: the owner's io_timeout; others derive their delays for this host from it */
  ioTimeout: number;
  /** paxos: last writer; delta: host event (extra1..3) */
  writeId: number;
  writeGeneration: number;
  writeTimestamp: number;
}

/** Byte offsets of the fields a renewal changes (delta.ts restamps our last sector in place). */
export const LEADER_TIMESTAMP_OFFSET = 152;
export const LEADER_CHECKSUM_OFFSET = 168;

export function emptyLeader(): LeaderRecord {
  return {
    magic: 0, version: 0, flags: 0, sectorSize: 0, numHosts: 0, maxHosts: 0, ownerId: 0,
    ownerGeneration: 0, lver: 0, spaceName: '', resourceName: '', timestamp: 0, unused1: 0,
    checksum: 0, unused2: 0, ioTimeout: 0, writeId: 0, writeGeneration: 0, writeTimestamp: 0,
  };
}

/** Decode 200 bytes at `off`. Never throws for in-range buffers: any bytes are a record. */
export function decodeLeader(buf: Buffer, off = 0): LeaderRecord {
  if (buf.length < off + LEADER_RECORD_SIZE) throw new RangeError(`leader record needs ${LEADER_RECORD_SIZE} bytes at offset ${off}`);
  const rec: LeaderRecord = {
    magic: buf.readUInt32LE(off),
    version: buf.readUInt32LE(off + 4),
    flags: buf.readUInt32LE(off + 8),
    sectorSize: buf.readUInt32LE(off + 12),
    numHosts: readU64(buf, off + 16),
    maxHosts: readU64(buf, off + 24),
    ownerId: readU64(buf, off + 32),
    ownerGeneration: readU64(buf, off + 40),
    lver: readU64(buf, off + 48),
    spaceName: readName(buf, off + 56),
    resourceName: readName(buf, off + 104),
    timestamp: readU64(buf, off + LEADER_TIMESTAMP_OFFSET),
    unused1: readU64(buf, off + 160),
    checksum: buf.readUInt32LE(off + LEADER_CHECKSUM_OFFSET),
    unused2: buf.readUInt16LE(off + 172),
    ioTimeout: buf.readUInt16LE(off + 174),
    writeId: readU64(buf, off + 176),
    writeGeneration: readU64(buf, off + 184),
    writeTimestamp: readU64(buf, off + 192),
  };
  // The exact bytes, for sanlock's memcmp-style comparisons: u64 fields above 2^53 do not
  // survive a Number. Not enumerable, so a record copied with changes ({...rec}) drops it.
  Object.defineProperty(rec, RAW, { value: Buffer.from(buf.subarray(off, off + LEADER_RECORD_SIZE)), enumerable: false });
  return rec;
}

const RAW = Symbol('raw leader bytes');

function rawBytes(rec: LeaderRecord): Buffer {
  return (rec as unknown as Record<symbol, Buffer | undefined>)[RAW] ?? encodeLeader(rec);
}

/**
 * Encode into `buf` at `off` exactly as given (checksum included). `nameMax` limits the
 * resource_name bytes: delta acquires store at most 47 characters plus NUL.
 */
export function encodeLeaderInto(rec: LeaderRecord, buf: Buffer, off = 0, nameMax = 48): void {
  buf.writeUInt32LE(rec.magic >>> 0, off);
  buf.writeUInt32LE(rec.version >>> 0, off + 4);
  buf.writeUInt32LE(rec.flags >>> 0, off + 8);
  buf.writeUInt32LE(rec.sectorSize >>> 0, off + 12);
  writeU64(buf, off + 16, rec.numHosts);
  writeU64(buf, off + 24, rec.maxHosts);
  writeU64(buf, off + 32, rec.ownerId);
  writeU64(buf, off + 40, rec.ownerGeneration);
  writeU64(buf, off + 48, rec.lver);
  writeName(buf, off + 56, rec.spaceName);
  writeName(buf, off + 104, rec.resourceName, nameMax);
  writeU64(buf, off + LEADER_TIMESTAMP_OFFSET, rec.timestamp);
  writeU64(buf, off + 160, rec.unused1);
  buf.writeUInt32LE(rec.checksum >>> 0, off + LEADER_CHECKSUM_OFFSET);
  buf.writeUInt16LE(rec.unused2 & 0xffff, off + 172);
  buf.writeUInt16LE(rec.ioTimeout & 0xffff, off + 174);
  writeU64(buf, off + 176, rec.writeId);
  writeU64(buf, off + 184, rec.writeGeneration);
  writeU64(buf, off + 192, rec.writeTimestamp);
}

export function encodeLeader(rec: LeaderRecord, nameMax = 48): Buffer {
  const b = Buffer.alloc(LEADER_RECORD_SIZE);
  encodeLeaderInto(rec, b, 0, nameMax);
  return b;
}

/** The checksum sanlock expects over bytes [0,168) of the encoded record at `off`. */
export function leaderChecksum(buf: Buffer, off = 0): number {
  return sanlockChecksum(buf, off, LEADER_CHECKSUM_LEN);
}

/**
 * Encode with a freshly computed checksum; returns the record as stored (checksum set, and
 * resource_name as truncated on disk).
 */
export function sealLeaderInto(rec: LeaderRecord, buf: Buffer, off = 0, nameMax = 48): LeaderRecord {
  encodeLeaderInto({ ...rec, checksum: 0 }, buf, off, nameMax);
  const checksum = leaderChecksum(buf, off);
  buf.writeUInt32LE(checksum, off + LEADER_CHECKSUM_OFFSET);
  return decodeLeader(buf, off);
}

export function sealLeader(rec: LeaderRecord, nameMax = 48): { rec: LeaderRecord; bytes: Buffer } {
  const bytes = Buffer.alloc(LEADER_RECORD_SIZE);
  return { rec: sealLeaderInto(rec, bytes, 0, nameMax), bytes };
}

export type LeaderKind = 'delta' | 'paxos' | 'clear' | 'uncommitted' | 'unknown';

export function leaderKind(magic: number): LeaderKind {
  switch (magic) {
    case DELTA_DISK_MAGIC: return 'delta';
    case PAXOS_DISK_MAGIC: return 'paxos';
    case PAXOS_DISK_CLEAR: return 'clear';
    case 0: return 'uncommitted';
    default: return 'unknown';
  }
}

/** Equality of the 200 stored bytes, as sanlock's memcmp of records. */
export function leadersEqual(a: LeaderRecord, b: LeaderRecord): boolean {
  return rawBytes(a).equals(rawBytes(b));
}
