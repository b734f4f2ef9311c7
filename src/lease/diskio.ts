import { LeaseError, SANLK } from '../ondisk/results';
import { LeaseStorage } from './storage';

/**
 * Sector I/O for the lease algorithms (sanlock's diskio.c): whole-sector writes that zero what
 * they do not own, and the mapping of storage failures to sanlock result codes.
 */

/**
 * True when the failure is an I/O timeout: LeaseError -202 (SANLK_AIO_TIMEOUT), or an error of
 * the storage below (the addon's DirectFile) with code ETIMEDOUT/ETIME or sanlockRv -202. The
 * one timeout test of the project.
 */
export function isIoTimeout(err: unknown): boolean {
  if (err instanceof LeaseError) return err.rv === SANLK.AIO_TIMEOUT;
  const e = err as { code?: unknown; sanlockRv?: unknown } | null;
  return !!e && (e.code === 'ETIMEDOUT' || e.code === 'ETIME' || e.sanlockRv === SANLK.AIO_TIMEOUT);
}

function reason(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * Map a storage failure to a sanlock code. Timeouts are -202 (SANLK_AIO_TIMEOUT) unless
 * `always` is set: run_ballot reports every dblock I/O failure, timeouts included, as
 * -210/-211. Other failures get `code` (-210/-211/-220/-221), which is what sanlock returns
 * when it cannot read or write a majority of the lease disks.
 */
export function ioError(err: unknown, code: number, what: string, always = false): LeaseError {
  if (!always && isIoTimeout(err)) {
    return new LeaseError(SANLK.AIO_TIMEOUT, `${what}: I/O timed out (${reason(err)})`);
  }
  return new LeaseError(code, `${what}: I/O failed (${reason(err)})`);
}

/** Read `length` bytes at `offset`, into `target` when given and the storage supports it. */
export async function readArea(
  storage: LeaseStorage, offset: number, length: number, timeoutMs: number, target?: Buffer,
): Promise<Buffer> {
  if (target && storage.readInto && target.length === length) {
    await storage.readInto(offset, target, timeoutMs);
    return target;
  }
  return storage.read(offset, length, timeoutMs);
}

/**
 * Write one whole sector whose content is `fill`ed into a zeroed buffer: sanlock's write_sector
 * zeroes everything after the structure, which is why a delta acquire clears the bitmap and a
 * dblock write clears the mode block.
 */
export async function writeSector(
  storage: LeaseStorage, offset: number, sectorSize: number, timeoutMs: number, fill: (sector: Buffer) => void,
): Promise<Buffer> {
  const sector = Buffer.alloc(sectorSize);
  fill(sector);
  await storage.write(offset, sector, timeoutMs);
  return sector;
}

/** What a lease I/O was, for the I/O latency metrics (docs/metrics.md). */
export type IoKind = 'leader_read' | 'leader_write' | 'dblock_read' | 'dblock_write' | 'area_read' | 'delta_write'
  /** a release's leader read, dblock write and leader write as one request (writeIfUnchanged) */
  | 'release_rmw'
  /** a renewal's area read and delta lease write as one request (readCompareWrite) */
  | 'renew_rmw';

/** The process's I/O timing observer (the daemon's metrics), or none. */
let ioObserver: ((kind: IoKind, seconds: number, ok: boolean) => void) | undefined;

export function setIoObserver(fn: ((kind: IoKind, seconds: number, ok: boolean) => void) | undefined): void {
  ioObserver = fn;
}

/** Run one storage I/O, telling the observer how long it took (only when one is set). */
export async function timedIo<T>(kind: IoKind, io: () => Promise<T>): Promise<T> {
  const obs = ioObserver;
  if (!obs) return io();
  const t0 = performance.now();
  try {
    const v = await io();
    obs(kind, (performance.now() - t0) / 1000, true);
    return v;
  } catch (e) {
    obs(kind, (performance.now() - t0) / 1000, false);
    throw e;
  }
}
