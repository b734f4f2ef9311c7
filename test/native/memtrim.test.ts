import { execFileSync } from 'child_process';
import * as path from 'path';
import { IdleTrimmer } from '../../src/daemon/memtrim';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/daemon/nodeflags';
import { cliEntry } from '../helpers/cli';

/**
 * Runs `body` in a fresh node with the daemon's flags and environment, `m` being the built
 * daemon/memtrim module; `out(value)` reports a value, which this returns.
 */
function inDaemonProcess(body: string): unknown {
  const memtrim = path.join(path.dirname(cliEntry()), '..', 'daemon', 'memtrim.js');
  const code = `const m = require(${JSON.stringify(memtrim)});
const out = (v) => process.stdout.write(JSON.stringify(v));
${body}`;
  const stdout = execFileSync(process.execPath, [...DAEMON_NODE_FLAGS, '-e', code], {
    env: { ...process.env, ...DAEMON_ENV, NODE_OPTIONS: '' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return JSON.parse(stdout);
}

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
    // RSS growth is only telling in a process of its own (a jest worker's heap moves with
    // the test files before this one): a fresh node with the daemon's flags and environment.
    const r = inDaemonProcess(`
      const calls = [];
      const busy = new m.IdleTrimmer(60000, () => calls.push('busy'), undefined, 10000); // never quiet here
      const quiet = new m.IdleTrimmer(5000, () => calls.push('quiet'));
      const grown = Buffer.alloc(10 * 1024 * 1024, 1); // resident: RSS grows by 10 MiB (> 4, < 16)
      busy.touch();
      quiet.touch();
      const busyTrimmed = busy.check(Date.now() + 10001);
      const quietTrimmed = quiet.check(Date.now() + 6000);
      out({ busyTrimmed, quietTrimmed, calls, last: grown[grown.length - 1] });
    `);
    expect(r).toEqual({ busyTrimmed: false, quietTrimmed: true, calls: ['quiet'], last: 1 });
  });

  it('trims a busy agent (no quiet) whose memory grew, at most once per interval', () => {
    const r = inDaemonProcess(`
      const calls = [];
      const t = new m.IdleTrimmer(60000, () => calls.push('trim'), undefined, 10000); // never quiet here
      const grown = Buffer.alloc(48 * 1024 * 1024, 1); // resident: RSS grows by 48 MiB
      const now = Date.now();
      const checks = [];
      t.touch();
      checks.push(t.check(now + 1000)); // busy, interval not over
      t.touch();
      checks.push(t.check(Date.now() + 10001)); // still busy, but grown and the interval is over
      t.touch();
      checks.push(t.check(Date.now() + 10002)); // trimmed just now
      out({ checks, calls, last: grown[grown.length - 1] });
    `);
    expect(r).toEqual({ checks: [false, true, false], calls: ['trim'], last: 1 });
  });

  it('trimMemory runs a full GC: old-generation garbage is collected, live objects stay', () => {
    // Objects that survived two scavenges live in the old generation, which only a full GC
    // (mark-compact) collects. Measured in a fresh daemon-like process, as above.
    const r = inDaemonProcess(`
      const { getHeapSpaceStatistics } = require('v8');
      const oldUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
      m.trimMemory();
      const base = oldUsed();
      let garbage = [];
      for (let i = 0; i < 200000; i++) garbage.push({ i, s: 'x' + i });
      const keep = garbage.filter((_, i) => i % 100 === 0);
      for (let i = 0; i < 100000; i++) ({ i }); // scavenges promote what is live to the old generation
      const withGarbage = oldUsed();
      garbage = null;
      m.trimMemory();
      const after = oldUsed();
      out({ grewBy: withGarbage - base, freed: withGarbage - after, kept: keep.length, lastKept: keep[1999].i });
    `) as { grewBy: number; freed: number; kept: number; lastKept: number };
    expect(r.grewBy).toBeGreaterThan(4 * 1024 * 1024); // the garbage did reach the old generation
    expect(r.freed).toBeGreaterThan(r.grewBy / 2);
    expect(r.kept).toBe(2000);
    expect(r.lastKept).toBe(199900);
  });
});
