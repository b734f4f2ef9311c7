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
   * A read is about to hold a buffer: at most maxUsers do at once, so a burst of requests
   * (hundreds of acquires) holds maxUsers areas, not one each (as sanlock's worker threads bound
   * its). Each read leaves once its bytes are decoded (OpBuffers.put).
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

/**
 * The read buffers of one operation (one acquire call). Each lease-area read takes a buffer and
 * a turn in the pool (IoBufferPool.enter) and hands both back with put() once its bytes are
 * decoded, so an acquire holds a buffer only while a read of it is in flight or being looked at,
 * not between its phases (writes, the lease-file check, the journal): maxUsers buffers serve more
 * acquires in flight. An operation holds at most one buffer at a time, so no two wait for each
 * other.
 */
export class OpBuffers {
  private readonly held = new Set<Buffer>();
  constructor(private readonly pool?: IoBufferPool) {}

  /** A buffer of `length` bytes for one read; waits for a turn in the pool. */
  async get(length: number): Promise<Buffer> {
    if (!this.pool) return Buffer.allocUnsafe(length);
    await this.pool.enter();
    const b = this.pool.take(length);
    this.held.add(b);
    return b;
  }

  /** The read's bytes are decoded: the buffer and the turn go back to the pool. */
  put(buf: Buffer): void {
    if (!this.held.delete(buf)) return;
    this.pool!.give(buf);
    this.pool!.leave();
  }

  /** The read into `buf` failed: the turn goes back, the buffer never (a late completion may still fill it). */
  poison(buf: Buffer): void {
    if (this.held.delete(buf)) this.pool!.leave();
  }

  /** At the operation's end: anything still held (an error between a read and its put) goes back. */
  release(): void {
    for (const b of [...this.held]) this.put(b);
  }
}
