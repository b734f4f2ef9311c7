/**
 * Large read buffers reused from one seed to the next. Fresh 1 MiB buffers cost page faults
 * on every first touch, which dominated short runs. When a seed ends nothing of it runs any
 * more (pending events are dropped with its scheduler), so all its buffers can be reused.
 */
export class BufferArena {
  private readonly free = new Map<number, Buffer[]>();
  private out: Buffer[] = [];

  alloc(length: number): Buffer {
    const b = this.free.get(length)?.pop() ?? Buffer.allocUnsafe(length);
    this.out.push(b);
    return b;
  }

  /** Call only when nothing can touch the handed-out buffers any more. */
  reset(): void {
    for (const b of this.out) {
      const list = this.free.get(b.length) ?? [];
      list.push(b);
      this.free.set(b.length, list);
    }
    this.out = [];
  }
}

/** One per thread: seeds run one after another in a thread. */
export const arena = new BufferArena();
