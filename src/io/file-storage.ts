/**
 * LeaseStorage over a lease file or block device, through the O_DIRECT addon (DirectFile):
 * whole-sector I/O that bypasses the page cache, as sanlock does, so every host sees what the
 * others wrote. Timeouts become LeaseError -202 (SANLK_AIO_TIMEOUT); other I/O errors are
 * DirectFile's (with `code`/`errno`; misaligned I/O is EINVAL).
 */
import { isIoTimeout } from '../lease/diskio';
import { LeaseStorage, NOT_STARTED, ScheduledResult, SectorStamp, StartWindow } from '../lease/storage';
import { LeaseError, SANLK } from '../ondisk/results';
import { allocIoBuffer, DirectFile, FileId } from './directio';

export interface OpenLeaseStorageOptions {
  /** open O_RDONLY (read_leader, dump); writes are then refused */
  readOnly?: boolean;
  /** timeout for the open itself (a hung NFS server can block open) */
  timeoutMs?: number;
  /** how long an idle I/O thread of the file waits for its next request (DirectFile) */
  keepThreadMs?: number;
  /**
   * Called each time a request has been handed to the file's I/O thread: the event loop would
   * now only wait, and work that could wait can run (the agent's Housekeeping).
   */
  onSubmit?: () => void;
}

export interface StorageInfo {
  isBlockDevice: boolean;
  /** bytes: file size at open, or device size */
  size: number;
  /** the device's logical sector size (O_DIRECT alignment) */
  logicalSectorSize: number;
}

/** Smallest I/O unit sanlock uses; O_DIRECT on files needs at least this alignment. */
const MIN_SECTOR = 512;

export class FileLeaseStorage implements LeaseStorage {
  readonly id: string;
  /** writeIfUnchanged holds its writes for writesAfter (DirectFile: a native WriteGate). */
  readonly holdsWrites = true;
  private closed = false;

  private constructor(private readonly file: DirectFile, readonly readOnly: boolean, private readonly onSubmit?: () => void) {
    this.id = file.path;
  }

  static async open(path: string, opts: OpenLeaseStorageOptions = {}): Promise<FileLeaseStorage> {
    const readOnly = opts.readOnly ?? false;
    try {
      const file = await DirectFile.open(path, { readOnly, timeoutMs: opts.timeoutMs, keepThreadMs: opts.keepThreadMs });
      return new FileLeaseStorage(file, readOnly, opts.onSubmit);
    } catch (err) {
      if (isIoTimeout(err)) {
        throw new LeaseError(SANLK.AIO_TIMEOUT, `opening ${path} did not complete within ${opts.timeoutMs ?? '?'} ms`);
      }
      throw err;
    }
  }

  get path(): string {
    return this.file.path;
  }

  /** LeaseStorage.fileId: the file the fd is (st_dev, st_ino), fixed at open. */
  get fileId(): FileId | undefined {
    return this.file.fileId;
  }

  /** LeaseStorage.linkCount: st_nlink of the fd at open. */
  get linkCount(): number | undefined {
    return this.file.linkCount;
  }

  /** true when the addon really bypasses the page cache (tmpfs, for one, ignores O_DIRECT) */
  get direct(): boolean {
    return this.file.direct;
  }

  get info(): StorageInfo {
    return this.file.info;
  }

  /**
   * I/O alignment the storage requires (DirectFile enforces it with EINVAL): the logical sector
   * size of a block device opened O_DIRECT, else 512.
   */
  get alignment(): number {
    const i = this.file.info;
    return this.file.direct && i.isBlockDevice ? Math.max(MIN_SECTOR, i.logicalSectorSize) : MIN_SECTOR;
  }

  /**
   * Runs one I/O; its timeout becomes -202 (SANLK_AIO_TIMEOUT) naming what did not complete
   * (`what` is called only then: no message is built for the I/Os that complete).
   */
  private timed<T>(what: () => string, timeoutMs: number, io: () => Promise<T>): Promise<T> {
    const p = io();
    this.onSubmit?.();
    return p.catch((err: unknown) => {
      if (isIoTimeout(err)) throw new LeaseError(SANLK.AIO_TIMEOUT, `${what()} on ${this.id} did not complete within ${timeoutMs} ms`);
      throw err;
    });
  }

  private check(op: string): void {
    if (this.closed) throw new Error(`${op} on closed lease storage ${this.id}`);
  }

  async read(offset: number, length: number, timeoutMs: number): Promise<Buffer> {
    this.check('read');
    return this.timed(() => `read of ${length} bytes at ${offset}`, timeoutMs, () => this.file.read(offset, length, timeoutMs));
  }

  /** LeaseStorage.readInto: the lease engine reuses its area buffers (see DirectFile.readInto). */
  async readInto(offset: number, target: Buffer, timeoutMs: number): Promise<void> {
    this.check('read');
    return this.timed(() => `read of ${target.length} bytes at ${offset}`, timeoutMs, () => this.file.readInto(offset, target, timeoutMs));
  }

  /** LeaseStorage.allocBuffer: memory the addon reads into in place (allocIoBuffer). */
  allocBuffer(length: number): Buffer {
    return allocIoBuffer(length);
  }

  async write(offset: number, data: Buffer, timeoutMs: number): Promise<void> {
    this.check('write');
    if (this.readOnly) throw new Error(`write to ${this.id}, which was opened read-only`);
    return this.timed(() => `write of ${data.length} bytes at ${offset}`, timeoutMs, () => this.file.write(offset, data, timeoutMs));
  }

  /** LeaseStorage.writeIfUnchanged: a release's read and two writes in one request. */
  async writeIfUnchanged(offset: number, expected: Buffer, writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number,
    writesAfter?: Promise<unknown>): Promise<true | Buffer> {
    this.check('write');
    if (this.readOnly) throw new Error(`write to ${this.id}, which was opened read-only`);
    return this.timed(() => `read of ${expected.length} bytes at ${offset} and ${writes.length} write(s)`, timeoutMs,
      () => this.file.writeIfUnchanged(offset, expected, writes, timeoutMs, writesAfter));
  }

  /** LeaseStorage.readCompareWrite: a renewal's area read and sector write in one request. */
  async readCompareWrite(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number): Promise<boolean> {
    this.check('write');
    if (this.readOnly) throw new Error(`write to ${this.id}, which was opened read-only`);
    return this.timed(() => `read of ${target.length} bytes at ${offset} and ${writes.length} write(s)`, timeoutMs,
      () => this.file.readCompareWrite(offset, target, compareAt, expected, writes, timeoutMs));
  }

  /** LeaseStorage.readCompareWriteAt: the next renewal, started by the file's I/O thread. */
  async readCompareWriteAt(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number, at: StartWindow, stamp?: SectorStamp): Promise<ScheduledResult | typeof NOT_STARTED> {
    this.check('write');
    if (this.readOnly) throw new Error(`write to ${this.id}, which was opened read-only`);
    return this.timed(() => `read of ${target.length} bytes at ${offset} and ${writes.length} write(s)`, timeoutMs,
      () => this.file.readCompareWriteAt(offset, target, compareAt, expected, writes, timeoutMs, at, stamp));
  }

  /** LeaseStorage.cancelScheduled. */
  cancelScheduled(): boolean {
    return this.file.cancelScheduled();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.file.close();
  }
}

/** Open a lease path (file or block device) for direct I/O. */
export function openLeaseStorage(path: string, opts: OpenLeaseStorageOptions = {}): Promise<FileLeaseStorage> {
  return FileLeaseStorage.open(path, opts);
}
