/**
 * How `sanlock direct` reads, so that our result codes match its: an O_DIRECT read must be
 * aligned (else -EINVAL), and a read that does not fit inside the file or device comes back
 * short, which sanlock reports as -EMSGSIZE (-90) without using the data. Our DirectFile
 * zero-fills short reads instead, so the bounds are checked here first.
 */
import { constants as osConstants } from 'os';
import {
  DELTA_DISK_MAGIC, LFL_ALIGN_1M, LFL_ALIGN_2M, LFL_ALIGN_4M, LFL_ALIGN_8M, PAXOS_DISK_MAGIC,
} from '../ondisk/constants';
import { LeaseError, SANLK } from '../ondisk/results';
import { MiB } from '../ondisk/sizes';
import type { StorageInfo } from '../io/file-storage';

export const EINVAL = SANLK.EINVAL;
export const EMSGSIZE = -90;
export const EIO = -5;

/** What the direct commands need from a storage handle (FileLeaseStorage, or a test double). */
export interface ReadableStorage {
  readonly info: StorageInfo;
  readonly alignment: number;
  read(offset: number, length: number, timeoutMs: number): Promise<Buffer>;
}

export interface WritableStorage extends ReadableStorage {
  write(offset: number, data: Buffer, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export type ReadResult = { rv: 0; data: Buffer } | { rv: number; data?: undefined; error?: unknown };

/** Negative errno for an error from the I/O layer (sanlock result codes pass through). */
export function errorToRv(err: unknown): number {
  if (err instanceof LeaseError) return err.rv;
  const e = err as { code?: unknown; errno?: unknown; sanlockRv?: unknown } | null;
  if (e && typeof e.sanlockRv === 'number') return e.sanlockRv; // DirectFile timeouts: -202
  if (e && typeof e.code === 'string') {
    const n = (osConstants.errno as Record<string, number | undefined>)[e.code];
    if (typeof n === 'number') return -n;
  }
  if (e && typeof e.errno === 'number' && Number.isInteger(e.errno) && e.errno !== 0) return -Math.abs(e.errno);
  return EIO;
}

/** read_sectors() as sanlock sees it: rv 0 with the data, or its error code. */
export async function sanlockRead(s: ReadableStorage, offset: number, length: number, timeoutMs: number): Promise<ReadResult> {
  if (offset % s.alignment !== 0 || length % s.alignment !== 0 || length <= 0) return { rv: EINVAL };
  if (offset + length > s.info.size) return { rv: EMSGSIZE };
  try {
    return { rv: 0, data: await s.read(offset, length, timeoutMs) };
  } catch (error) {
    return { rv: errorToRv(error), error };
  }
}

/** leader_align_size_from_flag(): the lowest align bit wins; 0 when there is none. */
export function alignFromLeaderFlags(flags: number): number {
  if (flags & LFL_ALIGN_1M) return 1 * MiB;
  if (flags & LFL_ALIGN_2M) return 2 * MiB;
  if (flags & LFL_ALIGN_4M) return 4 * MiB;
  if (flags & LFL_ALIGN_8M) return 8 * MiB;
  return 0;
}

/** sector_size_to_align_size_old(): -1 for a sector size sanlock does not know. */
export function alignFromSectorSizeOld(sectorSize: number): number {
  if (sectorSize === 512) return 1 * MiB;
  if (sectorSize === 4096) return 8 * MiB;
  return -1;
}

/** size_to_max_hosts(): 0 for a pair that is not one of the five. */
export function sizeToMaxHosts(sectorSize: number, alignSize: number): number {
  if (alignSize === 1 * MiB && sectorSize === 512) return 2000;
  if (alignSize === 1 * MiB && sectorSize === 4096) return 250;
  if (alignSize === 2 * MiB && sectorSize === 4096) return 500;
  if (alignSize === 4 * MiB && sectorSize === 4096) return 1000;
  if (alignSize === 8 * MiB && sectorSize === 4096) return 2000;
  return 0;
}

export type SizesResult = { rv: 0; sectorSize: number; alignSize: number } | { rv: number };

/**
 * direct_read_leader_sizes(): read 4096 bytes at `offset`; a delta or paxos leader there gives
 * the sector size and (from its flags, or the old rule) the align size. -1 when the magic is
 * neither. The values are taken as written, even nonsensical ones, as sanlock does.
 */
export async function readLeaderSizes(s: ReadableStorage, offset: number, timeoutMs: number): Promise<SizesResult> {
  const r = await sanlockRead(s, offset, 4096, timeoutMs);
  if (r.rv !== 0 || !r.data) return { rv: r.rv };
  const magic = r.data.readUInt32LE(0);
  if (magic !== DELTA_DISK_MAGIC && magic !== PAXOS_DISK_MAGIC) return { rv: -1 };
  const sectorSize = r.data.readUInt32LE(12);
  let alignSize = alignFromLeaderFlags(r.data.readUInt32LE(8));
  if (!alignSize) alignSize = alignFromSectorSizeOld(sectorSize);
  return { rv: 0, sectorSize, alignSize };
}
