import { Clock } from '../../src/lease/clock';

/**
 * Discrete-event virtual time. Nothing waits for real: sleeps and I/O latencies are events in
 * a heap ordered by (time, insertion order), and between two events every promise reaction
 * runs to completion, so a run depends only on the seed.
 */

/** mulberry32: small, fast, good enough for schedules; same seed, same sequence. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

/** setImmediate runs after all pending promise reactions: the "everything settled" point. */
const drain = () => new Promise<void>((r) => setImmediate(r));

export class VirtualScheduler {
  private heap: Event[] = [];
  private seq = 0;
  private now = 0;
  /** Events run so far. */
  events = 0;

  constructor(startMs = 0) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  /** Run `fn` at virtual time `atMs` (never in the past). */
  at(atMs: number, fn: () => void): void {
    const e = { at: Math.max(atMs, this.now), seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p], e)) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  after(ms: number, fn: () => void): void {
    this.at(this.now + ms, fn);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  private pop(): Event | undefined {
    const h = this.heap;
    if (!h.length) return undefined;
    const top = h[0];
    const last = h.pop() as Event;
    if (h.length) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        let mv = last;
        if (l < h.length && less(h[l], mv)) { m = l; mv = h[l]; }
        if (r < h.length && less(h[r], mv)) { m = r; mv = h[r]; }
        if (m === i) break;
        h[i] = h[m];
        i = m;
      }
      h[i] = last;
    }
    return top;
  }

  /** Run events up to and including virtual time `untilMs` (or until none are left). */
  async runUntil(untilMs: number, maxEvents = Infinity): Promise<void> {
    await drain();
    let n = 0;
    while (this.heap.length && this.heap[0].at <= untilMs && n++ < maxEvents) {
      const e = this.pop() as Event;
      this.now = e.at;
      this.events++;
      e.fn();
      await drain();
    }
    if (!this.heap.length || this.heap[0].at > untilMs) this.now = Math.max(this.now, untilMs);
  }

  /** Run events until `p` settles; return its value (or throw its error). */
  async run<T>(p: Promise<T>, limitMs = 24 * 3600 * 1000): Promise<T> {
    let done = false;
    const watched = p.finally(() => {
      done = true;
    });
    watched.catch(() => undefined);
    await drain();
    while (!done) {
      const e = this.pop();
      if (!e) throw new Error('virtual time ran out of events before the operation finished');
      if (e.at > limitMs) throw new Error(`operation still running at virtual ${limitMs} ms`);
      this.now = e.at;
      this.events++;
      e.fn();
      await drain();
    }
    return watched;
  }

  /**
   * A host's clock: monotime counts from its boot (`bootMs` before virtual time 0 + now), so
   * hosts write different timestamps as real hosts do.
   */
  clock(opts: { bootMs?: number; random?: () => number } = {}): Clock {
    const boot = opts.bootMs ?? 0;
    const random = opts.random ?? prng(1);
    return {
      monotime: () => Math.floor((this.now + boot) / 1000),
      nowMs: () => this.now + boot,
      sleep: (ms) => this.sleep(ms),
      random,
    };
  }
}

function less(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
