/**
 * An in-memory stand-in for FileLeaseStorage, and a CliContext around it, to drive the direct
 * commands through cases files cannot produce (block devices with 4K sectors, timeouts, write
 * order). Reads past the end zero-fill, like DirectFile.
 */
import type { Stats } from 'fs';
import type { CliContext, Output } from '../../src/cli/context';
import type { WritableStorage } from '../../src/cli/sanlock-io';
import type { StorageInfo } from '../../src/io/file-storage';

export interface MemoryStorageOptions {
  size: number;
  isBlockDevice?: boolean;
  logicalSectorSize?: number;
  /** make every read/write reject like DirectFile does on a timeout */
  timeout?: boolean;
}

export class MemoryStorage implements WritableStorage {
  data: Buffer;
  readonly info: StorageInfo;
  readonly writes: { offset: number; data: Buffer }[] = [];
  closed = false;

  constructor(private readonly opts: MemoryStorageOptions, initial?: Buffer) {
    this.data = Buffer.alloc(opts.size);
    if (initial) initial.copy(this.data);
    this.info = { isBlockDevice: !!opts.isBlockDevice, size: opts.size, logicalSectorSize: opts.logicalSectorSize ?? 512 };
  }

  get alignment(): number {
    return this.info.isBlockDevice ? Math.max(512, this.info.logicalSectorSize) : 512;
  }

  private fail(op: string): never {
    throw Object.assign(new Error(`${op} timed out`), { code: 'ETIMEDOUT', errno: 110, sanlockRv: -202 });
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.opts.timeout) this.fail('read');
    const out = Buffer.alloc(length);
    if (offset < this.data.length) this.data.copy(out, 0, offset, Math.min(this.data.length, offset + length));
    return out;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.opts.timeout) this.fail('write');
    this.writes.push({ offset, data: Buffer.from(data) });
    if (offset + data.length > this.data.length) {
      if (this.info.isBlockDevice) throw Object.assign(new Error('no space'), { code: 'ENOSPC', errno: 28 });
      const grown = Buffer.alloc(offset + data.length);
      this.data.copy(grown);
      this.data = grown;
    }
    data.copy(this.data, offset);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

export interface Captured {
  stdout: string;
  stderr: string[];
  json: unknown[];
}

/** A CliContext whose every path opens `storage`; output is captured. */
export function memoryContext(storage: MemoryStorage, monotime = 1234): { ctx: CliContext; cap: Captured } {
  const cap: Captured = { stdout: '', stderr: [], json: [] };
  const output: Output = {
    out: (t) => {
      cap.stdout += t;
    },
    json: (v) => {
      cap.json.push(JSON.parse(JSON.stringify(v)));
    },
    err: (l) => {
      cap.stderr.push(l);
    },
  };
  const ctx: CliContext = {
    output,
    openStorage: async () => storage,
    stat: async () => ({
      isDirectory: () => false,
      isFile: () => !storage.info.isBlockDevice,
      isBlockDevice: () => storage.info.isBlockDevice,
    }) as unknown as Stats,
    monotime: () => monotime,
  };
  return { ctx, cap };
}
