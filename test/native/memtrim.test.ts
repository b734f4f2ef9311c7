import { getHeapSpaceStatistics } from 'v8';
import { IdleTrimmer, trimMemory } from '../../src/daemon/memtrim';

const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;

describe('IdleTrimmer', () => {
  it('keeps a timer only while there was activity since the last quiet check', () => {
    jest.useFakeTimers();
    try {
      const t = new IdleTrimmer(5000);
      t.start();
      expect(jest.getTimerCount()).toBe(0); // idle from the start: nothing wakes the agent
      t.touch();
      t.touch();
      expect(jest.getTimerCount()).toBe(1);
      jest.advanceTimersByTime(2500); // not quiet yet: checks again later
      expect(jest.getTimerCount()).toBe(1);
      jest.advanceTimersByTime(5000); // quiet: the check ran, and no timer is left
      expect(jest.getTimerCount()).toBe(0);
      t.touch();
      expect(jest.getTimerCount()).toBe(1);
      t.stop();
      expect(jest.getTimerCount()).toBe(0);
    } finally {
      jest.useRealTimers();
    }
  });

  it('trims only after activity followed by quiet', () => {
    const calls: string[] = [];
    const t = new IdleTrimmer(5000, () => calls.push('trim'), () => calls.push('before'));
    const now = Date.now();
    expect(t.check(now + 60000)).toBe(false); // no activity yet
    t.touch();
    expect(t.check(now + 1000)).toBe(false); // not quiet long enough
    const trimmed = t.check(Date.now() + 6000);
    // trimmed only when memory grew; either way the activity is consumed
    expect(calls).toEqual(trimmed ? ['before', 'trim'] : []);
    expect(t.check(Date.now() + 12000)).toBe(false);
  });

  it('after a burst, trims at quiet for a growth that a busy agent lets be', () => {
    const calls: string[] = [];
    const busy = new IdleTrimmer(60000, () => calls.push('busy'), undefined, 10000); // never quiet here
    const quiet = new IdleTrimmer(5000, () => calls.push('quiet'));
    const grown = Buffer.alloc(10 * 1024 * 1024, 1); // resident: RSS grows by 10 MiB (> 4, < 16)
    busy.touch();
    quiet.touch();
    expect(busy.check(Date.now() + 10001)).toBe(false);
    expect(quiet.check(Date.now() + 6000)).toBe(true);
    expect(calls).toEqual(['quiet']);
    expect(grown[grown.length - 1]).toBe(1);
  });

  it('trims a busy agent (no quiet) whose memory grew, at most once per interval', () => {
    const calls: string[] = [];
    const t = new IdleTrimmer(60000, () => calls.push('trim'), undefined, 10000); // never quiet here
    const grown = Buffer.alloc(48 * 1024 * 1024, 1); // resident: RSS grows by 48 MiB
    const now = Date.now();
    t.touch();
    expect(t.check(now + 1000)).toBe(false); // busy, interval not over
    t.touch();
    expect(t.check(Date.now() + 10001)).toBe(true); // still busy, but grown and the interval is over
    t.touch();
    expect(t.check(Date.now() + 10002)).toBe(false); // trimmed just now
    expect(calls).toEqual(['trim']);
    expect(grown[grown.length - 1]).toBe(1);
  });

  it('trimMemory runs a full GC that shrinks a grown young generation', () => {
    const keep: unknown[] = [];
    for (let i = 0; i < 300000; i++) {
      const o = { i, s: `x${i}`, a: [i] };
      if (i % 100 === 0) keep.push(o);
    }
    const before = newSpace();
    trimMemory();
    expect(newSpace()).toBeLessThanOrEqual(before);
    expect(keep.length).toBe(3000);
  });
});
