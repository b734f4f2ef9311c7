/**
 * Reusable read buffers. Lease reads are large (a paxos acquire reads the whole 1–8 MiB area,
 * each ballot phase num_hosts+2 sectors rounded up to a power of two) and direct I/O needs
 * aligned memory, so an operation keeps its buffers and hands them back when it is done. A
 * buffer whose read failed may still be written by a late completion: it is never reused.
 */
export class IoBufferPool {
  private readonly free = new Map<number, Buffer[]>();
  /**
   * @param keepPerLength buffers kept per length; beyond this they are left to the GC
   * @param allocate where new buffers come from (aligned memory for direct I/O)
   */
  constructor(
    private readonly keepPerLength = 4,
    private readonly allocate: (length: number) => Buffer = (n) => Buffer.allocUnsafe(n),
  ) {}

  take(length: number): Buffer {
    return this.free.get(length)?.pop() ?? this.allocate(length);
  }

  give(buf: Buffer): void {
    const list = this.free.get(buf.length) ?? [];
    if (list.length < this.keepPerLength) list.push(buf);
    this.free.set(buf.length, list);
  }
}

/** The buffers of one operation (one acquire call), returned to the pool at the end. */
export class OpBuffers {
  private readonly held = new Map<number, Buffer>();
  constructor(private readonly pool?: IoBufferPool) {}

  /** A buffer of `length` bytes owned by this operation (the same one on every call). */
  get(length: number): Buffer {
    let b = this.held.get(length);
    if (!b) {
      b = this.pool ? this.pool.take(length) : Buffer.allocUnsafe(length);
      this.held.set(length, b);
    }
    return b;
  }

  /** The read into `buf` failed: forget it (a late completion may still fill it). */
  poison(buf: Buffer): void {
    if (this.held.get(buf.length) === buf) this.held.delete(buf.length);
  }

  release(): void {
    if (this.pool) for (const b of this.held.values()) this.pool.give(b);
    this.held.clear();
  }
}
