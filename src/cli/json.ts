/**
 * JSON forms of the records `read_leader --json` and `dump --json` print. u64 values are JSON
 * numbers when they are exact (≤ 2^53-1) and decimal strings otherwise; names are the on-disk
 * bytes decoded as UTF-8.
 */
import { resultInfo } from '../ondisk/results';
import type {
  RawDblock, RawLeader, RawModeBlock, RawRequest, RawRindexEntry, RawRindexHeader,
} from './sanlock-format';

export type JsonU64 = number | string;

export function u64(v: bigint): JsonU64 {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

export function nameText(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

export function hex32(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

export function leaderJson(l: RawLeader, isLockspace: boolean): Record<string, unknown> {
  const base: Record<string, unknown> = {
    magic: hex32(l.magic),
    version: hex32(l.version),
    flags: hex32(l.flags),
    sectorSize: l.sectorSize,
    numHosts: u64(l.numHosts),
    maxHosts: u64(l.maxHosts),
    ownerId: u64(l.ownerId),
    ownerGeneration: u64(l.ownerGeneration),
    lver: u64(l.lver),
    spaceName: nameText(l.spaceName),
    resourceName: nameText(l.resourceName),
    timestamp: u64(l.timestamp),
    checksum: hex32(l.checksum),
    ioTimeout: l.ioTimeout,
  };
  if (isLockspace) {
    base.extra1 = u64(l.writeId);
    base.extra2 = u64(l.writeGeneration);
    base.extra3 = u64(l.writeTimestamp);
  } else {
    base.writeId = u64(l.writeId);
    base.writeGeneration = u64(l.writeGeneration);
    base.writeTimestamp = u64(l.writeTimestamp);
  }
  return base;
}

export function dblockJson(d: RawDblock): Record<string, unknown> {
  return {
    mbal: u64(d.mbal), bal: u64(d.bal), inp: u64(d.inp), inp2: u64(d.inp2), inp3: u64(d.inp3),
    lver: u64(d.lver), checksum: hex32(d.checksum), flags: d.flags,
  };
}

export function modeBlockJson(m: RawModeBlock): Record<string, unknown> {
  return { flags: m.flags, generation: u64(m.generation) };
}

export function requestJson(r: RawRequest): Record<string, unknown> {
  return { magic: hex32(r.magic), version: hex32(r.version), lver: u64(r.lver), forceMode: r.forceMode };
}

export function rindexHeaderJson(h: RawRindexHeader): Record<string, unknown> {
  return {
    magic: hex32(h.magic), version: hex32(h.version), flags: hex32(h.flags), sectorSize: h.sectorSize,
    maxResources: h.maxResources, rxOffset: u64(h.rxOffset), lockspaceName: nameText(h.lockspaceName),
  };
}

export function rindexEntryJson(e: RawRindexEntry): Record<string, unknown> {
  return { name: nameText(e.name), resOffset: u64(e.resOffset), flags: e.flags };
}

/** `{ rv, name, meaning, remedy }` of a result code. */
export function verdictJson(rv: number): { rv: number; name: string; meaning: string; remedy: string } {
  const i = resultInfo(rv);
  return { rv, name: i.name, meaning: i.meaning, remedy: i.remedy };
}
