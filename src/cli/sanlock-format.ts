/**
 * Text output byte-for-byte as sanlock 3.8.5 prints it (main.c print_leader, direct.c
 * direct_dump). Fields are read straight from the on-disk bytes with BigInt so that every u64
 * prints exactly, even garbage above 2^53. Strings are latin1: one character per disk byte,
 * written to stdout as those bytes.
 */
import {
  HOSTID_BITMAP_OFFSET, LEADER_RECORD_SIZE, MODE_BLOCK_OFFSET, NAME_ID_SIZE,
} from '../ondisk/constants';

/** The leader record with every integer exact (u64 as bigint). */
export interface RawLeader {
  magic: number;
  version: number;
  flags: number;
  sectorSize: number;
  numHosts: bigint;
  maxHosts: bigint;
  ownerId: bigint;
  ownerGeneration: bigint;
  lver: bigint;
  /** up to the first NUL, at most 48 bytes (latin1) */
  spaceName: string;
  resourceName: string;
  timestamp: bigint;
  unused1: bigint;
  checksum: number;
  unused2: number;
  ioTimeout: number;
  writeId: bigint;
  writeGeneration: bigint;
  writeTimestamp: bigint;
}

export interface RawDblock {
  mbal: bigint;
  bal: bigint;
  inp: bigint;
  inp2: bigint;
  inp3: bigint;
  lver: bigint;
  checksum: number;
  flags: number;
}

export interface RawModeBlock {
  flags: number;
  generation: bigint;
}

export interface RawRequest {
  magic: number;
  version: number;
  lver: bigint;
  forceMode: number;
}

export interface RawRindexHeader {
  magic: number;
  version: number;
  flags: number;
  sectorSize: number;
  maxResources: number;
  rxOffset: bigint;
  lockspaceName: string;
}

export interface RawRindexEntry {
  resOffset: bigint;
  flags: number;
  name: string;
}

/** A NUL-terminated name of at most `max` bytes (strncpy / %.48s semantics). */
export function cName(buf: Buffer, off: number, max = NAME_ID_SIZE): string {
  let end = off;
  const lim = Math.min(off + max, buf.length);
  while (end < lim && buf[end] !== 0) end++;
  return buf.toString('latin1', off, end);
}

/**
 * Where each field of a record lies (byte offset from the record's start) and how it is read:
 * `u64` → bigint, `name` → a NUL-terminated name (cName), `u16`/`u32` → number.
 */
type FieldOf<V> = V extends bigint ? readonly ['u64', number] : V extends string ? readonly ['name', number] : readonly ['u16' | 'u32', number];
type Layout<T> = { readonly [K in keyof T]: FieldOf<T[K]> };

function readRecord<T>(layout: Layout<T>, buf: Buffer, off: number): T {
  const out: Record<string, bigint | number | string> = {};
  for (const [key, [kind, at]] of Object.entries(layout) as Array<[string, readonly [string, number]]>) {
    const p = off + at;
    out[key] = kind === 'u64' ? buf.readBigUInt64LE(p) : kind === 'u32' ? buf.readUInt32LE(p) : kind === 'u16' ? buf.readUInt16LE(p) : cName(buf, p);
  }
  return out as T;
}

const LEADER: Layout<RawLeader> = {
  magic: ['u32', 0], version: ['u32', 4], flags: ['u32', 8], sectorSize: ['u32', 12],
  numHosts: ['u64', 16], maxHosts: ['u64', 24], ownerId: ['u64', 32], ownerGeneration: ['u64', 40], lver: ['u64', 48],
  spaceName: ['name', 56], resourceName: ['name', 104],
  timestamp: ['u64', 152], unused1: ['u64', 160], checksum: ['u32', 168], unused2: ['u16', 172], ioTimeout: ['u16', 174],
  writeId: ['u64', 176], writeGeneration: ['u64', 184], writeTimestamp: ['u64', 192],
};
const DBLOCK: Layout<RawDblock> = {
  mbal: ['u64', 0], bal: ['u64', 8], inp: ['u64', 16], inp2: ['u64', 24], inp3: ['u64', 32], lver: ['u64', 40],
  checksum: ['u32', 48], flags: ['u32', 52],
};
const MODE_BLOCK: Layout<RawModeBlock> = { flags: ['u32', 0], generation: ['u64', 8] };
const REQUEST: Layout<RawRequest> = { magic: ['u32', 0], version: ['u32', 4], lver: ['u64', 8], forceMode: ['u32', 16] };
const RINDEX_HEADER: Layout<RawRindexHeader> = {
  magic: ['u32', 0], version: ['u32', 4], flags: ['u32', 8], sectorSize: ['u32', 12], maxResources: ['u32', 16],
  rxOffset: ['u64', 24], lockspaceName: ['name', 32],
};
const RINDEX_ENTRY: Layout<RawRindexEntry> = { resOffset: ['u64', 0], flags: ['u32', 8], name: ['name', 16] };

export function readRawLeader(buf: Buffer, off = 0): RawLeader {
  if (off < 0 || buf.length < off + LEADER_RECORD_SIZE) throw new RangeError(`leader record needs ${LEADER_RECORD_SIZE} bytes at offset ${off}`);
  return readRecord(LEADER, buf, off);
}

/** An all-zero leader: what sanlock prints when it never got to read one. */
export function zeroRawLeader(): RawLeader {
  return readRawLeader(Buffer.alloc(LEADER_RECORD_SIZE));
}

export function readRawDblock(buf: Buffer, off: number): RawDblock {
  return readRecord(DBLOCK, buf, off);
}

export function readRawModeBlock(buf: Buffer, sectorOff: number): RawModeBlock {
  return readRecord(MODE_BLOCK, buf, sectorOff + MODE_BLOCK_OFFSET);
}

export function readRawRequest(buf: Buffer, off: number): RawRequest {
  return readRecord(REQUEST, buf, off);
}

export function readRawRindexHeader(buf: Buffer, off: number): RawRindexHeader {
  return readRecord(RINDEX_HEADER, buf, off);
}

export function readRawRindexEntry(buf: Buffer, off: number): RawRindexEntry {
  return readRecord(RINDEX_ENTRY, buf, off);
}

// ---- printf emulation ----------------------------------------------------------------------

/** `%Ns`: right-aligned in a field of width N, never truncated. */
export function padStr(s: string, width: number): string {
  return s.length >= width ? s : ' '.repeat(width - s.length) + s;
}

/** `%0Nllu` / `%0Nu`: zero-padded decimal of a non-negative value. */
export function zeroPad(v: bigint | number, width: number): string {
  const s = v.toString();
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

/** `%x` of a u32. */
export function hex(v: number): string {
  return (v >>> 0).toString(16);
}

/** `%d` of a u32 field (sanlock prints some u32s as int). */
export function asInt32(v: number): string {
  return (v | 0).toString();
}

// ---- read_leader ---------------------------------------------------------------------------

/** print_leader(): the lines after `read_leader done <rv>`. */
export function formatLeaderFields(l: RawLeader, isLockspace: boolean): string {
  const lines = [
    `magic 0x${hex(l.magic)}`,
    `version 0x${hex(l.version)}`,
    `flags 0x${hex(l.flags)}`,
    `sector_size ${l.sectorSize >>> 0}`,
    `num_hosts ${l.numHosts}`,
    `max_hosts ${l.maxHosts}`,
    `owner_id ${l.ownerId}`,
    `owner_generation ${l.ownerGeneration}`,
    `lver ${l.lver}`,
    `space_name ${l.spaceName}`,
    `resource_name ${l.resourceName}`,
    `timestamp ${l.timestamp}`,
    `checksum 0x${hex(l.checksum)}`,
    `io_timeout ${l.ioTimeout}`,
  ];
  if (isLockspace) {
    lines.push(`extra1 ${l.writeId}`, `extra2 ${l.writeGeneration}`, `extra3 ${l.writeTimestamp}`);
  } else {
    lines.push(`write_id ${l.writeId}`, `write_generation ${l.writeGeneration}`, `write_timestamp ${l.writeTimestamp}`);
  }
  return lines.map((x) => `${x}\n`).join('');
}

// ---- dump ----------------------------------------------------------------------------------

export function formatDumpHeader(forceMode: number): string {
  return `${padStr('offset', 8)} ${padStr('lockspace', 36)} ${padStr('resource', 48)} ${padStr('timestamp', 10)} ${padStr('own', 4)} ${padStr('gen', 4)} lver${forceMode ? '/req/mode' : ''}\n`;
}

function rowPrefix(offset: bigint | number, space: string, resource: string, l: RawLeader): string {
  return `${zeroPad(offset, 8)} ${padStr(space, 36)} ${padStr(resource, 48)} ${zeroPad(l.timestamp, 10)} ${zeroPad(l.ownerId, 4)} ${zeroPad(l.ownerGeneration, 4)}`;
}

/** A delta-lease row; `bitmapHosts` given (with -f) appends " h1 h2 ...". */
export function formatDeltaRow(offset: bigint | number, l: RawLeader, bitmapHosts?: number[]): string {
  const bits = bitmapHosts ? bitmapHosts.map((h) => ` ${h}`).join('') : '';
  return `${rowPrefix(offset, l.spaceName, l.resourceName, l)}${bits}\n`;
}

/** A paxos-leader row; with -f the request record's `/lver/force_mode` is appended. */
export function formatPaxosRow(offset: bigint | number, l: RawLeader, req?: RawRequest): string {
  const tail = req ? `/${req.lver}/${req.forceMode >>> 0}` : '';
  return `${rowPrefix(offset, l.spaceName, l.resourceName, l)} ${l.lver}${tail}\n`;
}

export function formatDblockLine(index: number, d: RawDblock): string {
  return `dblock[${zeroPad(index, 4)}] mbal ${d.mbal} bal ${d.bal} inp ${d.inp} inp2 ${d.inp2} inp3 ${d.inp3} lver ${d.lver} sum ${hex(d.checksum)}\n`;
}

/** Width of the blank prefix of a shared-holder line (sanlock prints a literal run of spaces). */
export const SH_INDENT = 106;

export function formatSharedLine(hostId: number, generation: bigint): string {
  return `${' '.repeat(SH_INDENT)}${zeroPad(hostId, 4)} ${zeroPad(generation, 4)} SH\n`;
}

export function formatRindexHeaderLine(offset: bigint | number, h: RawRindexHeader): string {
  return `${zeroPad(offset, 8)} ${padStr(h.lockspaceName, 36)} rindex_header 0x${hex(h.flags)} ${asInt32(h.sectorSize)} ${h.maxResources >>> 0} ${h.rxOffset}\n`;
}

export function formatRentryLine(offset: bigint | number, lockspaceName: string, e: RawRindexEntry): string {
  return `${zeroPad(offset, 8)} ${padStr(lockspaceName, 36)} rentry ${e.name} ${e.resOffset}\n`;
}

/** Host ids whose bit is set in the bitmap of the delta sector at `sectorOff`, up to maxHosts. */
export function bitmapHostIds(buf: Buffer, sectorOff: number, maxHosts: number): number[] {
  const hosts: number[] = [];
  for (let b = 0; b < maxHosts; b++) {
    const byte = buf[sectorOff + HOSTID_BITMAP_OFFSET + (b >> 3)];
    if (byte & (1 << (b & 7))) hosts.push(b + 1);
  }
  return hosts;
}
