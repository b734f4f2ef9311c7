/**
 * One process of a simulated host. Every continuation of its code (a sleep ending, an I/O
 * completing) passes through its gate: a crashed process never runs again, a paused (frozen)
 * process runs nothing until it is resumed, exactly like SIGKILL / SIGSTOP of a daemon. The
 * world around it (storage, other hosts, the watchdog) keeps going.
 */
export class Gate {
  crashed = false;
  paused = false;
  private queue: (() => void)[] = [];
  /** Run before the queued continuations when the process resumes (the daemon's checks). */
  onResume?: () => void;

  wrap<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      p.then((v) => this.deliver(() => resolve(v)), (e) => this.deliver(() => reject(e)));
    });
  }

  private deliver(fn: () => void): void {
    if (this.crashed) return;
    if (this.paused) this.queue.push(fn);
    else fn();
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (this.crashed || !this.paused) return;
    this.paused = false;
    this.onResume?.();
    const q = this.queue;
    this.queue = [];
    for (const fn of q) this.deliver(fn);
  }

  crash(): void {
    this.crashed = true;
    this.queue = [];
  }
}
