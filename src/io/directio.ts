// Sector I/O for lease areas on shared storage: O_DIRECT (or O_DSYNC fallback)
// reads/writes with per-request deadlines, executed by the native addon on
// per-file threads of its own. See docs/direct-io.md for the design.
import { NOT_STARTED, ScheduledResult, SectorStamp, StartWindow } from '../lease/storage';
import { IoStats, loadNative, NativeBinding, NativeFile, NativeHeadResult, NativeWriteGate } from './native';

export interface OpenOptions {
  readOnly?: boolean;
  /** Deadline for open itself, default 10000 ms. */
  timeoutMs?: number;
  /**
   * How long the file's idle I/O thread waits for its next request before it exits (default
   * 50 ms, the addon's): longer for a file with I/O at a steady pace (a lockspace's renewals).
   */
  keepThreadMs?: number;
}

/** Which file an fd is: st_dev and st_ino from fstat(2) of the fd right after the open. */
export interface FileId {
  dev: bigint;
  ino: bigint;
}

export function sameFileId(a: FileId | undefined, b: FileId | undefined): boolean {
  return !!a && !!b && a.dev === b.dev && a.ino === b.ino;
}

export interface DeviceInfo {
  isBlockDevice: boolean;
  size: number;
  /** BLKSSZGET for block devices; 512 for regular files. */
  logicalSectorSize: number;
}

/**
 * Shape of every error this module rejects with. Timeouts have
 * code 'ETIMEDOUT' and sanlockRv -202 (SANLK_AIO_TIMEOUT).
 */
export interface DirectIoError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path: string;
  sanlockRv?: number;
}

const DEFAULT_OPEN_TIMEOUT_MS = 10000;
const CLOSE_TIMEOUT_MS = 10000;
const SECTOR = 512;
const EINVAL = 22;

let fallbackWarning: (path: string) => void = (p) => {
  process.stderr.write(
    `lockagent: ${p}: filesystem refuses O_DIRECT, falling back to O_DSYNC ` +
      '(page cache may serve stale data on shared storage)\n',
  );
};
const warnedPaths = new Set<string>();

/** Replaces the default stderr line printed (once per path) on O_DSYNC fallback. */
export function setFallbackWarningHandler(fn: (path: string) => void): void {
  fallbackWarning = fn;
}

function warnFallbackOnce(path: string): void {
  if (warnedPaths.has(path)) return;
  warnedPaths.add(path);
  try {
    fallbackWarning(path);
  } catch {
    // a failing logger must not fail the open
  }
}

function invalid(path: string, syscall: string, message: string): DirectIoError {
  return Object.assign(new Error(message), { code: 'EINVAL', errno: EINVAL, syscall, path });
}

/**
 * Re-creates a native error as an Error of the caller's realm with a useful
 * async stack: the addon builds errors on a bare TSFN callback frame (and, under
 * jest, in another realm, which breaks `instanceof Error`).
 */
function rethrown(e: unknown): unknown {
  if (!(e && typeof e === 'object' && 'code' in e && 'message' in e)) return e;
  const src = e as DirectIoError;
  const out: DirectIoError = Object.assign(new Error(src.message), {
    code: src.code,
    errno: src.errno,
    syscall: src.syscall,
    path: src.path,
  });
  if (src.sanlockRv !== undefined) out.sanlockRv = src.sanlockRv;
  return out;
}

function checkTimeout(path: string, syscall: string, timeoutMs: number): void {
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw invalid(path, syscall, `invalid ${syscall} on ${path}: timeoutMs must be a positive number, got ${timeoutMs}`);
  }
}

export class DirectFile {
  readonly path: string;
  /** false when the filesystem refused O_DIRECT and O_DSYNC is used instead. */
  readonly direct: boolean;
  /** Snapshot taken at open time (size does not follow later writes). */
  readonly info: DeviceInfo;
  /**
   * The file this fd is (fstat of the fd at open). A lease file's path may later name another
   * file (deleted and re-created by another host); the fd keeps naming this one.
   */
  readonly fileId?: FileId;
  /**
   * st_nlink of the fd at open: more than 1 means the file has another name too (a hard link),
   * possibly outside the directory it was opened in.
   */
  readonly linkCount?: number;
  private readonly native: NativeFile;

  private constructor(path: string, native: NativeFile, direct: boolean, info: DeviceInfo, fileId?: FileId, linkCount?: number) {
    this.path = path;
    this.native = native;
    this.direct = direct;
    this.info = info;
    this.fileId = fileId;
    this.linkCount = linkCount;
  }

  /**
   * Opens an existing file or block device read-write (O_RDWR|O_DIRECT|O_SYNC)
   * or read-only. The open runs on the file's own thread under a deadline, so
   * an unresponsive NFS server or a FIFO cannot block the caller.
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<DirectFile> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_OPEN_TIMEOUT_MS;
    checkTimeout(path, 'open', timeoutMs);
    const res = await loadNative()
      .open(path, opts.readOnly === true, timeoutMs, opts.keepThreadMs)
      .catch((e: unknown) => Promise.reject(rethrown(e)));
    const info: DeviceInfo = Object.freeze({
      isBlockDevice: res.isBlockDevice,
      size: res.size,
      logicalSectorSize: res.logicalSectorSize,
    });
    if (!res.direct) warnFallbackOnce(path);
    const fileId = typeof res.dev === 'bigint' && typeof res.ino === 'bigint' ? Object.freeze({ dev: res.dev, ino: res.ino }) : undefined;
    return new DirectFile(path, res.file, res.direct, info, fileId, typeof res.nlink === 'number' ? res.nlink : undefined);
  }

  /** Reads `length` bytes; the part past EOF of a regular file reads as zeros. */
  async read(offset: number, length: number, timeoutMs: number): Promise<Buffer> {
    this.checkIo('read', offset, length, timeoutMs);
    try {
      return await this.native.read(offset, length, timeoutMs);
    } catch (e) {
      throw rethrown(e);
    }
  }

  /**
   * Reads `target.length` bytes into `target` (a caller-owned, reusable buffer): no new Buffer
   * per read, which matters for 1-8 MiB lease areas (each fresh one is external memory V8 must
   * collect). A target from allocIoBuffer() is read into in place (no copy): after a rejection
   * a late completion may still write it, so the caller abandons it (LeaseStorage.readInto).
   * Any other target is written only when the read succeeds, never after a rejection.
   */
  async readInto(offset: number, target: Buffer, timeoutMs: number): Promise<void> {
    this.checkIo('read', offset, target.length, timeoutMs);
    try {
      if (this.native.readInto) await this.native.readInto(offset, target, timeoutMs);
      else (await this.native.read(offset, target.length, timeoutMs)).copy(target);
    } catch (e) {
      throw rethrown(e);
    }
  }

  /** Writes `data` (a multiple of 512 bytes); writes past EOF extend the file. */
  async write(offset: number, data: Buffer, timeoutMs: number): Promise<void> {
    if (!(data instanceof Uint8Array)) {
      throw invalid(this.path, 'write', `invalid write on ${this.path}: data must be a Buffer`);
    }
    this.checkIo('write', offset, data.length, timeoutMs);
    try {
      await this.native.write(offset, data, timeoutMs);
    } catch (e) {
      throw rethrown(e);
    }
  }

  /**
   * Reads `expected.length` bytes at `offset`; when they equal `expected`, writes each of
   * `writes` (submitted together, landing in any order; the addon refuses overlapping writes)
   * and resolves true, else resolves the bytes found and writes nothing.
   * One request to the file's I/O thread. An addon built before it rejects (the lease engine
   * then releases step by step). With `writesAfter`, the I/O thread holds the writes until it
   * settles (a native WriteGate; an addon without one: the whole request waits for it).
   */
  async writeIfUnchanged(offset: number, expected: Buffer, writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number,
    writesAfter?: Promise<unknown>): Promise<true | Buffer> {
    this.checkIo('read', offset, expected.length, timeoutMs);
    this.checkWrites(writes, timeoutMs);
    try {
      if (!this.native.writeIfUnchanged) throw new Error(`the native addon has no writeIfUnchanged: rebuild it (npm run build:native)`);
      let gate: NativeWriteGate | undefined;
      if (writesAfter) {
        const Gate = loadNative().WriteGate;
        if (Gate) {
          const g = new Gate();
          void writesAfter.then(() => g.open(), () => g.open());
          gate = g;
        } else {
          await writesAfter.catch(() => undefined);
        }
      }
      return await this.native.writeIfUnchanged(offset, expected, writes.map((w) => [w.offset, w.data]), timeoutMs, gate);
    } catch (e) {
      throw rethrown(e);
    }
  }

  /**
   * Reads `target.length` bytes at `offset` into `target` (as readInto); when `expected` is
   * found at `target[compareAt]`, writes each of `writes` (as writeIfUnchanged) and resolves true, else
   * resolves false and writes nothing. One request to the file's I/O thread.
   */
  async readCompareWrite(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number): Promise<boolean> {
    this.checkIo('read', offset, target.length, timeoutMs);
    this.checkWrites(writes, timeoutMs);
    try {
      if (!this.native.readCompareWrite) throw new Error(`the native addon has no readCompareWrite: rebuild it (npm run build:native)`);
      return await this.native.readCompareWrite(offset, target, compareAt, expected, writes.map((w) => [w.offset, w.data]), timeoutMs);
    } catch (e) {
      throw rethrown(e);
    }
  }

  /**
   * readCompareWrite started `at.startInMs` from now by the file's I/O thread (nothing on the
   * event loop wakes to start it), stamping its first write as it starts (SectorStamp). Resolves
   * { written, ms, timestamp?, checksum? } (ms: from its start), or NOT_STARTED (nothing read
   * or written) when cancelled (cancelScheduled, close) or when its thread could not start it
   * within `at.latestStartInMs`. One at a time per file (a second rejects EBUSY).
   */
  async readCompareWriteAt(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number, at: StartWindow, stamp?: SectorStamp): Promise<ScheduledResult | typeof NOT_STARTED> {
    this.checkIo('read', offset, target.length, timeoutMs);
    this.checkWrites(writes, timeoutMs);
    if (!this.native.cancelScheduled || !this.native.readCompareWrite) throw new Error('the native addon cannot schedule a request: rebuild it (npm run build:native)');
    try {
      // Absolute on the addon's clock, from the same whole milliseconds the caller's clock
      // (systemClock.nowMs) reads: a series whose starts are `nextInMs` apart lands exactly on
      // the time its I/O thread waits for (io_engine.h, Request::nextIn).
      const now = Number(process.hrtime.bigint() / 1000000n);
      return await this.native.readCompareWrite(offset, target, compareAt, expected, writes.map((w) => [w.offset, w.data]), timeoutMs,
        { startAtMs: now + at.startInMs, latestStartAtMs: now + at.latestStartInMs, nextInMs: at.nextInMs, stamp }) as unknown as ScheduledResult;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ECANCELED' || code === 'ETIME') return NOT_STARTED;
      throw rethrown(e);
    }
  }

  /** Stops the readCompareWriteAt waiting for its start time; true when there was one. */
  cancelScheduled(): boolean {
    return this.native.cancelScheduled?.() ?? false;
  }

  private checkWrites(writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number): void {
    for (const w of writes) {
      if (!(w.data instanceof Uint8Array)) throw invalid(this.path, 'write', `invalid write on ${this.path}: data must be a Buffer`);
      this.checkIo('write', w.offset, w.data.length, timeoutMs);
    }
  }

  /**
   * Stops accepting I/O and closes the fd. Requests still queued reject with
   * ECANCELED; if a syscall is stuck, the fd is closed when it returns.
   */
  async close(): Promise<void> {
    try {
      await this.native.close(CLOSE_TIMEOUT_MS);
    } catch (e) {
      throw rethrown(e);
    }
  }

  private checkIo(op: 'read' | 'write', offset: number, length: number, timeoutMs: number): void {
    // With O_DIRECT the kernel enforces the device's logical sector size;
    // checking it here gives a clear message instead of a bare EINVAL.
    const align =
      this.direct && this.info.isBlockDevice ? Math.max(SECTOR, this.info.logicalSectorSize) : SECTOR;
    const unit = align === SECTOR ? `${SECTOR}` : `${align} (the logical sector size of ${this.path})`;
    const what = `misaligned ${op} on ${this.path}`;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw invalid(this.path, op, `${what}: offset ${offset} is not a non-negative integer`);
    }
    if (offset % align !== 0) {
      throw invalid(this.path, op, `${what}: offset ${offset} is not a multiple of ${unit}`);
    }
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw invalid(this.path, op, `${what}: length ${length} must be a positive integer`);
    }
    if (length % align !== 0) {
      throw invalid(this.path, op, `${what}: length ${length} at offset ${offset} is not a multiple of ${unit}`);
    }
    checkTimeout(this.path, op, timeoutMs);
  }
}

/**
 * A read buffer for readInto: page-aligned memory from the addon, which a read fills in place
 * (a 1 MiB lease area then exists once, not also as the request's own buffer plus a copy).
 * A plain Buffer when the addon cannot (it was built before allocAligned, or the length is not
 * a multiple of 512): readInto copies into those.
 */
export function allocIoBuffer(length: number): Buffer {
  let native: NativeBinding | undefined;
  try {
    native = loadNative();
  } catch {
    // no addon (a storage of the simulation's): any memory will do
  }
  if (native?.allocAligned && length > 0 && length % SECTOR === 0) return native.allocAligned(length);
  return Buffer.allocUnsafe(length);
}

/** What readFileHead learnt about one file. */
export interface FileHead {
  /** the first `length` bytes (past EOF: zeros); absent when the path is not a regular file */
  data?: Buffer;
  direct: boolean;
  size: number;
  dev: bigint;
  ino: bigint;
  nlink: number;
  /** st_mtim in ns, as fs.lstat(path, { bigint: true }).mtimeNs */
  mtimeNs: bigint;
}

/** true when the addon has readFileHead (an addon built before it has not). */
export function canReadFileHead(): boolean {
  return typeof loadNative().readHead === 'function';
}

/**
 * For scanning many files (the cleanup sweep): open `path` read-only (O_DIRECT, no symlink
 * followed, a FIFO never blocks), fstat it, read its first `length` bytes when it is a regular
 * file, close — one request on a shared pool of I/O threads, under one deadline. A DirectFile
 * per file costs a thread and three round trips, more than the I/O itself. Errors are shaped
 * as DirectFile's.
 */
export async function readFileHead(path: string, length: number, timeoutMs: number): Promise<FileHead> {
  const native = loadNative();
  if (!native.readHead) throw invalid(path, 'read', 'the native addon has no readHead: rebuild it (npm run build:native)');
  if (!Number.isSafeInteger(length) || length <= 0 || length % SECTOR !== 0) {
    throw invalid(path, 'read', `invalid read on ${path}: length ${length} is not a positive multiple of ${SECTOR}`);
  }
  checkTimeout(path, 'read', timeoutMs);
  let r: NativeHeadResult;
  try {
    r = await native.readHead(path, length, timeoutMs);
  } catch (e) {
    throw rethrown(e);
  }
  if (r.data && !r.direct) warnFallbackOnce(path);
  return {
    data: r.data, direct: r.direct, size: r.size, dev: r.dev, ino: r.ino, nlink: r.nlink,
    mtimeNs: BigInt(r.mtimeSec) * 1000000000n + BigInt(r.mtimeNsec),
  };
}

/** Per-path counters (keyed by the path string given to open); totals if omitted. */
export function ioStats(path?: string): IoStats {
  return loadNative().ioStats(path);
}

export function resetIoStats(): void {
  loadNative().resetIoStats();
}
