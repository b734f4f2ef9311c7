import {
  DELTA_DISK_MAGIC, LEADER_CHECKSUM_LEN, LEADER_RECORD_SIZE, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC,
} from './constants';
import { sanlockChecksum } from './crc32c';
import { readName, writeName } from './names';

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

const u64 = (b: Buffer, o: number) => Number(b.readBigUInt64LE(o));
const w64 = (b: Buffer, o: number, v: number) => b.writeBigUInt64LE(BigInt(v), o);

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
    numHosts: u64(buf, off + 16),
    maxHosts: u64(buf, off + 24),
    ownerId: u64(buf, off + 32),
    ownerGeneration: u64(buf, off + 40),
    lver: u64(buf, off + 48),
    spaceName: readName(buf, off + 56),
    resourceName: readName(buf, off + 104),
    timestamp: u64(buf, off + 152),
    unused1: u64(buf, off + 160),
    checksum: buf.readUInt32LE(off + 168),
    unused2: buf.readUInt16LE(off + 172),
    ioTimeout: buf.readUInt16LE(off + 174),
    writeId: u64(buf, off + 176),
    writeGeneration: u64(buf, off + 184),
    writeTimestamp: u64(buf, off + 192),
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
  w64(buf, off + 16, rec.numHosts);
  w64(buf, off + 24, rec.maxHosts);
  w64(buf, off + 32, rec.ownerId);
  w64(buf, off + 40, rec.ownerGeneration);
  w64(buf, off + 48, rec.lver);
  writeName(buf, off + 56, rec.spaceName);
  writeName(buf, off + 104, rec.resourceName, nameMax);
  w64(buf, off + 152, rec.timestamp);
  w64(buf, off + 160, rec.unused1);
  buf.writeUInt32LE(rec.checksum >>> 0, off + 168);
  buf.writeUInt16LE(rec.unused2 & 0xffff, off + 172);
  buf.writeUInt16LE(rec.ioTimeout & 0xffff, off + 174);
  w64(buf, off + 176, rec.writeId);
  w64(buf, off + 184, rec.writeGeneration);
  w64(buf, off + 192, rec.writeTimestamp);
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
  buf.writeUInt32LE(checksum, off + 168);
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
