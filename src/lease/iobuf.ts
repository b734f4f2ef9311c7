/**
 * Reusable read buffers. Lease reads are large (a paxos acquire reads the whole 1–8 MiB area,
 * each ballot phase num_hosts+2 sectors rounded up to a power of two) and direct I/O needs
 * aligned memory, so an operation keeps its buffers and hands them back when it is done. A
 * buffer whose read failed may still be written by a late completion: it is never reused.
 */
export class IoBufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private users = 0;
  private readonly waiting: Array<() => void> = [];
  /**
   * @param keepPerLength buffers kept per length; beyond this they are left to the GC
   * @param allocate where new buffers come from (aligned memory for direct I/O)
   * @param maxUsers operations holding buffers at once (see enter); the rest wait their turn
   */
  constructor(
    private readonly keepPerLength = 4,
    private readonly allocate: (length: number) => Buffer = (n) => Buffer.allocUnsafe(n),
    private readonly maxUsers = Infinity,
  ) {}

  /**
   * An operation is about to hold buffers: at most maxUsers do at once, so a burst of
   * requests (hundreds of acquires) holds maxUsers areas, not one each (as sanlock's worker
   * threads bound its). Operations leave while they only wait (see paxosLeaseAcquire).
   */
  async enter(): Promise<void> {
    if (this.users < this.maxUsers) {
      this.users++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve)); // leave() hands its turn over
  }

  leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.users--;
  }

  /** Forget the kept buffers (operations keep theirs); see memtrim.ts. */
  drop(): void {
    this.free.clear();
  }

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
  private entered = false;
  constructor(private readonly pool?: IoBufferPool) {}

  /**
   * A buffer of `length` bytes owned by this operation (the same one on every call). The
   * operation's first buffer waits for its turn in the pool (IoBufferPool.enter); an operation
   * holding its turn never waits again, so no two wait for each other.
   */
  async get(length: number): Promise<Buffer> {
    let b = this.held.get(length);
    if (b) return b;
    if (this.pool && !this.entered) {
      await this.pool.enter();
      this.entered = true;
    }
    b = this.held.get(length);
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

  /** Hand the buffers back and leave the pool (a later get() waits for a turn again). */
  release(): void {
    if (this.pool) for (const b of this.held.values()) this.pool.give(b);
    this.held.clear();
    if (this.entered) {
      this.entered = false;
      this.pool!.leave();
    }
  }
}
