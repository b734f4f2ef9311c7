import { LeaseError, SANLK } from '../../src/ondisk';
import { Clock } from '../../src/lease/clock';
import { LeaseStorage } from '../../src/lease/storage';

/**
 * An in-memory lease device for tests and the simulation, with the faults real shared storage
 * has: failed I/O, I/O slower than the caller's timeout (the caller gives up, the I/O still
 * completes later: a "late completion"), I/O that never completes, and torn writes where only
 * a prefix of the sectors, or a prefix of one sector, reaches the disk. Time comes only from
 * the given Clock, so a virtual clock makes it deterministic.
 */

export interface IoRequest {
  kind: 'read' | 'write';
  offset: number;
  length: number;
  timeoutMs: number;
  /** Who issued it (MemStorage.view tag), for per-host faults and crash handling. */
  tag: string;
  /** Sequence number over all requests to this device. */
  seq: number;
}

export type IoFault =
  /** The I/O fails (EIO) after `afterMs`; a write does not land. */
  | { type: 'error'; afterMs?: number }
  /** The I/O takes `latencyMs`; beyond the timeout the caller sees -202 and it still completes. */
  | { type: 'slow'; latencyMs: number }
  /** Never completes: -202 at the timeout, a write never lands. */
  | { type: 'hang' }
  /** Write only: `sectors` whole sectors then `bytes` of the next land after `afterMs`; EIO. */
  | { type: 'torn'; sectors: number; bytes?: number; afterMs?: number };

export interface MemStorageOptions {
  id?: string;
  size: number;
  /** Unit of alignment checks and torn writes. Default 512. */
  sectorSize?: number;
  /** Backing memory to use (its content is the initial device content); default zeroed. */
  data?: Buffer;
  clock: Pick<Clock, 'sleep' | 'nowMs'>;
  /** Latency of a normal I/O; default 0 (completes on the next tick of the clock). */
  latencyMs?: (req: IoRequest) => number;
  /** Fault to inject into a request, if any. */
  fault?: (req: IoRequest) => IoFault | undefined;
}

export interface IoStats {
  reads: number;
  writes: number;
  readBytes: number;
  writeBytes: number;
  faults: Record<IoFault['type'], number>;
  /** Completions (data landed or read sampled) after the caller had already timed out. */
  lateCompletions: number;
}

interface PendingWrite {
  tag: string;
  state: 'pending' | 'landed' | 'dropped';
  land: () => void;
}

const CHUNK = 4096;

function eio(req: IoRequest, why: string): Error {
  const e = new Error(`${req.kind} of ${req.length} bytes at ${req.offset}: ${why}`) as Error & { code: string; syscall: string };
  e.code = 'EIO';
  e.syscall = req.kind; // as the addon's errors name the failed syscall
  return e;
}

export class MemStorage implements LeaseStorage {
  readonly id: string;
  readonly holdsWrites = true;
  /** The device bytes, for inspection. Change them only with load() or patch(). */
  readonly data: Buffer;
  readonly sectorSize: number;
  readonly stats: IoStats = {
    reads: 0, writes: 0, readBytes: 0, writeBytes: 0, lateCompletions: 0,
    faults: { error: 0, slow: 0, hang: 0, torn: 0 },
  };
  private seq = 0;
  private readonly opts: MemStorageOptions;
  /** Version of each chunk: the write counter when data last landed in it. */
  private readonly chunkVersion: Uint32Array;
  private writeCounter = 0;
  /**
   * What each readInto target already holds: reading the same area into the same buffer again
   * copies only the chunks written since (a 1 MiB lockspace is re-read every renewal). This
   * relies on callers not modifying read buffers, which the lease engine never does.
   */
  private readonly delivered = new WeakMap<Buffer, { offset: number; length: number; counter: number }>();
  private readonly oneShot: { match: (r: IoRequest) => boolean; fault: IoFault }[] = [];
  private readonly pending = new Set<PendingWrite>();
  /** Per writer and sector: when its last write lands. A device applies one initiator's writes to a sector in order. */
  private readonly lastLand = new Map<string, number>();

  constructor(opts: MemStorageOptions) {
    this.opts = opts;
    this.id = opts.id ?? 'mem';
    this.data = opts.data ?? Buffer.alloc(opts.size);
    if (this.data.length !== opts.size) throw new RangeError(`backing buffer is ${this.data.length} bytes, not ${opts.size}`);
    this.sectorSize = opts.sectorSize ?? 512;
    this.chunkVersion = new Uint32Array(Math.ceil(opts.size / CHUNK));
  }

  /** Copy bytes onto the device and mark their chunks as changed. */
  private apply(src: Buffer, offset: number, n = src.length): void {
    src.copy(this.data, offset, 0, n);
    const v = ++this.writeCounter;
    for (let c = Math.floor(offset / CHUNK); c * CHUNK < offset + n; c++) this.chunkVersion[c] = v;
  }

  /** Fill `out` with [offset, offset + out.length), incrementally when it already holds that area. */
  private sample(offset: number, out: Buffer, reuse: boolean): void {
    const length = out.length;
    const prev = reuse ? this.delivered.get(out) : undefined;
    if (prev && prev.offset === offset && prev.length === length) {
      const first = Math.floor(offset / CHUNK);
      const last = Math.ceil((offset + length) / CHUNK);
      for (let c = first; c < last; c++) {
        if (this.chunkVersion[c] <= prev.counter) continue;
        const s = Math.max(c * CHUNK, offset);
        const e = Math.min((c + 1) * CHUNK, offset + length);
        this.data.copy(out, s - offset, s, e);
      }
      prev.counter = this.writeCounter;
      return;
    }
    this.data.copy(out, 0, offset, offset + length);
    if (reuse) this.delivered.set(out, { offset, length, counter: this.writeCounter });
  }

  /**
   * Edit device bytes in place (a foreign writer, a corruption). Always go through this or
   * load(): writing `data` directly would be invisible to incremental readInto.
   */
  patch(offset: number, length: number, edit: (bytes: Buffer) => void): void {
    const view = Buffer.from(this.data.subarray(offset, offset + length));
    edit(view);
    this.apply(view, offset);
  }

  /** Copy bytes in directly (initialising an area, loading a fixture). */
  load(offset: number, bytes: Buffer): void {
    this.apply(bytes, offset);
  }

  /** Inject `fault` into the next request matching `match` (default: any of `kind`). */
  failNext(kind: IoRequest['kind'], fault: IoFault, match?: (r: IoRequest) => boolean): void {
    this.oneShot.push({ match: (r) => r.kind === kind && (!match || match(r)), fault });
  }

  /** A LeaseStorage whose requests carry `tag` (one per simulated host). */
  view(tag: string): LeaseStorage {
    return {
      id: this.id,
      holdsWrites: true,
      read: (o, l, t) => this.submitRead(tag, o, l, t),
      readInto: (o, b, t) => this.submitRead(tag, o, b.length, t, b).then(() => undefined),
      write: (o, d, t) => this.submitWrite(tag, o, d, t),
      writeIfUnchanged: (o, e, w, t, after) => this.submitIfUnchanged(tag, o, e, w, t, after),
      readCompareWrite: (o, b, a, e, w, t) => this.submitReadCompareWrite(tag, o, b, a, e, w, t),
    };
  }

  readCompareWrite(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number): Promise<boolean> {
    return this.submitReadCompareWrite('', offset, target, compareAt, expected, writes, timeoutMs);
  }

  writeIfUnchanged(offset: number, expected: Buffer, writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number,
    writesAfter?: Promise<unknown>): Promise<true | Buffer> {
    return this.submitIfUnchanged('', offset, expected, writes, timeoutMs, writesAfter);
  }

  read(offset: number, length: number, timeoutMs: number): Promise<Buffer> {
    return this.submitRead('', offset, length, timeoutMs);
  }

  async readInto(offset: number, target: Buffer, timeoutMs: number): Promise<void> {
    await this.submitRead('', offset, target.length, timeoutMs, target);
  }

  write(offset: number, data: Buffer, timeoutMs: number): Promise<void> {
    return this.submitWrite('', offset, data, timeoutMs);
  }

  /**
   * A crashed writer: its writes still in flight either reach the disk now or never (`land`
   * decides per write).
   */
  settlePending(tag: string, land: () => boolean): number {
    let n = 0;
    for (const p of [...this.pending]) {
      if (p.tag !== tag || p.state !== 'pending') continue;
      if (land()) p.land();
      else p.state = 'dropped';
      this.pending.delete(p);
      n++;
    }
    return n;
  }

  private request(kind: IoRequest['kind'], tag: string, offset: number, length: number, timeoutMs: number): IoRequest {
    if (offset % this.sectorSize || length % this.sectorSize || length <= 0) {
      throw new RangeError(`${kind} at ${offset} of ${length} bytes is not whole ${this.sectorSize}-byte sectors`);
    }
    if (offset + length > this.data.length) throw new RangeError(`${kind} at ${offset}+${length} is beyond the ${this.data.length}-byte device`);
    return { kind, offset, length, timeoutMs, tag, seq: this.seq++ };
  }

  private decide(req: IoRequest): IoFault | undefined {
    const i = this.oneShot.findIndex((f) => f.match(req));
    const f = i >= 0 ? this.oneShot.splice(i, 1)[0].fault : this.opts.fault?.(req);
    if (f) this.stats.faults[f.type]++;
    return f;
  }

  private timeoutError(req: IoRequest): LeaseError {
    return new LeaseError(SANLK.AIO_TIMEOUT, `${req.kind} of ${req.length} bytes at ${this.id}:${req.offset} timed out after ${req.timeoutMs} ms`);
  }

  /**
   * Settle the caller's promise at `completeMs` with `complete` (which also samples/lands the
   * data), or with a timeout at timeoutMs if that comes first; the I/O itself still completes.
   */
  private run<T>(req: IoRequest, completeMs: number | undefined, complete: () => T, onLate?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const timeout = req.timeoutMs > 0 && (completeMs === undefined || completeMs > req.timeoutMs);
      if (timeout) {
        void this.opts.clock.sleep(req.timeoutMs).then(() => {
          if (settled) return;
          settled = true;
          reject(this.timeoutError(req));
        });
      }
      if (completeMs === undefined) return;
      void this.opts.clock.sleep(completeMs).then(() => {
        let value: T;
        try {
          value = complete();
        } catch (e) {
          if (!settled) {
            settled = true;
            reject(e);
          }
          return;
        }
        if (settled) {
          this.stats.lateCompletions++;
          onLate?.();
          return;
        }
        settled = true;
        resolve(value);
      });
    });
  }

  private submitRead(tag: string, offset: number, length: number, timeoutMs: number, target?: Buffer): Promise<Buffer> {
    const req = this.request('read', tag, offset, length, timeoutMs);
    this.stats.reads++;
    this.stats.readBytes += length;
    const fault = this.decide(req);
    const base = this.opts.latencyMs?.(req) ?? 0;
    if (fault?.type === 'hang') return this.run(req, undefined, () => Buffer.alloc(0));
    if (fault?.type === 'error' || fault?.type === 'torn') {
      return this.run(req, fault.afterMs ?? base, () => {
        throw eio(req, 'injected I/O error');
      });
    }
    const latency = fault?.type === 'slow' ? fault.latencyMs : base;
    // Data is sampled when the read completes; a late completion still fills a caller's buffer.
    return this.run(req, latency, () => {
      const out = target ?? Buffer.allocUnsafe(length);
      this.sample(offset, out, !!target);
      return out;
    });
  }

  /**
   * LeaseStorage.writeIfUnchanged as the addon runs it: a read, then the writes together (each
   * with its own latency, so they land in any order), under one deadline, with other hosts' I/O
   * free to land in between (it is not atomic).
   */
  private async submitIfUnchanged(tag: string, offset: number, expected: Buffer, writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number,
    writesAfter?: Promise<unknown>): Promise<true | Buffer> {
    const found = Buffer.alloc(expected.length);
    return (await this.submitReadCompareWrite(tag, offset, found, 0, expected, writes, timeoutMs, writesAfter)) || found;
  }

  /** LeaseStorage.readCompareWrite as the addon runs it: as writeIfUnchanged, the read into `target` and compared at `compareAt`. */
  private async submitReadCompareWrite(tag: string, offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number, writesAfter?: Promise<unknown>): Promise<boolean> {
    const deadline = this.opts.clock.nowMs() + timeoutMs;
    const left = () => Math.max(1, deadline - this.opts.clock.nowMs());
    await this.submitRead(tag, offset, target.length, left(), target);
    if (!target.subarray(compareAt, compareAt + expected.length).equals(expected)) return false;
    await writesAfter?.catch(() => undefined);
    await Promise.all(writes.map((w) => this.submitWrite(tag, w.offset, w.data, left())));
    return true;
  }

  private submitWrite(tag: string, offset: number, data: Buffer, timeoutMs: number): Promise<void> {
    const req = this.request('write', tag, offset, data.length, timeoutMs);
    this.stats.writes++;
    this.stats.writeBytes += data.length;
    // Like real direct I/O, the caller's buffer must stay untouched until the write completes;
    // the device lands it from there (no copy).
    const copy = data;
    const fault = this.decide(req);
    const base = this.opts.latencyMs?.(req) ?? 0;
    if (fault?.type === 'hang') return this.run(req, undefined, () => undefined);
    if (fault?.type === 'error') {
      return this.run(req, fault.afterMs ?? base, () => {
        throw eio(req, 'injected I/O error');
      });
    }
    let latency = fault?.type === 'slow' ? fault.latencyMs : fault?.type === 'torn' ? (fault.afterMs ?? base) : base;
    // In-order per writer and sector: a late write must not land after that writer's next one.
    const key = `${tag}:${offset}`;
    const now = this.opts.clock.nowMs();
    latency = Math.max(latency, (this.lastLand.get(key) ?? 0) - now);
    this.lastLand.set(key, now + latency);

    const p: PendingWrite = {
      tag, state: 'pending',
      land: () => {
        if (p.state !== 'pending') return;
        p.state = 'landed';
        this.pending.delete(p);
        if (fault?.type === 'torn') {
          this.apply(copy, offset, Math.min(copy.length, fault.sectors * this.sectorSize + (fault.bytes ?? 0)));
        } else {
          this.apply(copy, offset);
        }
      },
    };
    this.pending.add(p);
    return this.run(req, latency, () => {
      const dropped = p.state === 'dropped';
      p.land();
      if (dropped) throw eio(req, 'the writer crashed before this write completed');
      if (fault?.type === 'torn') throw eio(req, 'torn write: only part of the data reached the disk');
    });
  }
}
