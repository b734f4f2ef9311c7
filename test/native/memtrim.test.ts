import { execFileSync } from 'child_process';
import * as path from 'path';
import { IdleTrimmer } from '../../src/daemon/memtrim';
import { loadNative } from '../../src/io/native';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/daemon/nodeflags';
import { cliEntry } from '../helpers/cli';

/**
 * Runs `body` in a fresh node with the daemon's flags (or `nodeFlags`) and environment, `m` being the built
 * daemon/memtrim module; `out(value)` reports a value, which this returns.
 */
function inDaemonProcess(body: string, nodeFlags: readonly string[] = DAEMON_NODE_FLAGS): unknown {
  const memtrim = path.join(path.dirname(cliEntry()), '..', 'daemon', 'memtrim.js');
  const code = `const m = require(${JSON.stringify(memtrim)});
const out = (v) => process.stdout.write(JSON.stringify(v));
${body}`;
  const stdout = execFileSync(process.execPath, [...nodeFlags, '-e', code], {
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
    // the first quiet check gives back file pages (none were given back yet), and the heap only
    // when it grew (in a jest worker it may or may not have)
    expect(t.check(Date.now() + 6000)).toBe(true);
    expect(calls[calls.length - 1]).toBe('trim');
    expect(calls.length).toBeLessThanOrEqual(2);
    expect(t.check(Date.now() + 12000)).toBe(false); // the activity was consumed
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

describe('giving back clean file pages', () => {
  const plan = (smaps: string) => loadNative()._testDroppableMappings!(smaps);
  /** one mapping's smaps lines, as the kernel writes them */
  const mapping = (range: string, perms: string, inode: number, path: string, rssKiB: number, anonKiB: number, swapKiB = 0) =>
    `${range} ${perms} 00000000 08:01 ${inode}${' '.repeat(10)}${path}\n` +
    `Size:               1024 kB\nKernelPageSize:        4 kB\nRss:             ${String(rssKiB).padStart(4)} kB\n` +
    `Pss:             ${String(rssKiB).padStart(4)} kB\nShared_Clean:          0 kB\nAnonymous:       ${String(anonKiB).padStart(4)} kB\n` +
    `Swap:            ${String(swapKiB).padStart(4)} kB\nSwapPss:               0 kB\nTHPeligible:    0\nVmFlags: rd mr mw me\n`;

  it('chooses only private read-only file mappings with resident pages and no copied page', () => {
    const smaps = [
      mapping('555555554000-555555600000', 'r--p', 1201, '/usr/bin/node', 400, 0), // read-only data: yes
      mapping('555555600000-555557000000', 'r-xp', 1201, '/usr/bin/node', 9000, 0), // code: yes
      mapping('555557000000-555557100000', 'r--p', 1201, '/usr/bin/node', 1024, 12), // RELRO, relocated: no
      mapping('555557100000-555557180000', 'r--p', 1202, '/usr/lib/libfoo.so', 8, 0, 4), // a relocated page swapped out: no
      mapping('555557180000-555557200000', 'rw-p', 1201, '/usr/bin/node', 64, 64), // data: no
      mapping('7f0000000000-7f0000100000', 'r--s', 88, '/var/lib/lockagent/state.db', 16, 0), // shared: no
      mapping('7f0000100000-7f0000200000', 'r--p', 0, '', 32, 32), // anonymous: no
      mapping('7f0000200000-7f0000300000', 'r-xp', 1300, '/usr/lib/x86_64-linux-gnu/libc.so.6', 0, 0), // nothing resident: no
      mapping('7f0000300000-7f0000400000', 'r-xp', 1301, '/opt/lockagent/lockagent_native.node (deleted)', 8, 0), // yes
      mapping('7ffff7fc1000-7ffff7fc3000', 'r-xp', 0, '[vdso]', 8, 0), // no
      mapping('ffffffffff600000-ffffffffff601000', '--xp', 0, '[vsyscall]', 0, 0), // no
    ].join('');
    expect(plan(smaps)).toEqual([
      [0x555555554000, 0x555555600000, 400 * 1024],
      [0x555555600000, 0x555557000000, 9000 * 1024],
      [0x7f0000300000, 0x7f0000400000, 8 * 1024],
    ]);
    expect(plan('')).toEqual([]);
    // A path longer than the line buffer: the rest of its line is never read as a line of its
    // own, even where it looks like a header of a droppable mapping.
    // (the buffer holds 4607 characters: the rest starts exactly at the look-alike header)
    const prefix = `7f1000000000-7f1000100000 rw-p 00000000 08:01 77${' '.repeat(10)}`.length;
    const longPath = `/opt/${'x'.repeat(4607 - prefix - 5)}7f2000000000-7f2000800000 r--p 00000000 08:01 5 /x`;
    expect(plan(mapping('7f1000000000-7f1000100000', 'rw-p', 77, longPath, 64, 64))).toEqual([]);
    expect(plan(mapping('7f1000000000-7f1000100000', 'r--p', 77, longPath, 64, 0))).toEqual([[0x7f1000000000, 0x7f1000100000, 64 * 1024]]);
    expect(plan('not smaps at all\n\u0000\nRss: 12 kB\n')).toEqual([]);
  });

  it('gives back code pages of a running node and loses nothing: everything still runs after', () => {
    // In a fresh process: load what the daemon loads, drop, then run code of each of them again.
    const native = path.join(path.dirname(cliEntry()), '..', 'io', 'native.js');
    const r = inDaemonProcess(`
      const { loadNative } = require(${JSON.stringify(native)});
      const Database = require('better-sqlite3');
      const zlib = require('zlib');
      const crypto = require('crypto');
      const work = () => {
        const db = new Database(':memory:');
        db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
        const ins = db.prepare('INSERT INTO t VALUES (?, ?)');
        for (let i = 0; i < 200; i++) ins.run('k' + i, i);
        const sum = db.prepare('SELECT sum(v) AS s FROM t').get().s;
        db.close();
        const z = zlib.gunzipSync(zlib.gzipSync(Buffer.alloc(100000, 7))).length;
        const h = crypto.createHash('md5').update('lockagent').digest('hex');
        const buf = loadNative().allocAligned(4096);
        return { sum, z, h, aligned: buf.length, json: JSON.parse(JSON.stringify({ a: [1, 2, 3] })).a[2] };
      };
      const first = work();
      const fileBefore = m.residentBytes().file;
      const dropped = m.dropCleanFilePages();
      const fileAfter = m.residentBytes().file;
      const again = work();
      out({ first, again, dropped, fileBefore, fileAfter });
    `) as { first: unknown; again: unknown; dropped: number; fileBefore: number; fileAfter: number };
    expect(r.first).toEqual({ sum: 19900, z: 100000, h: '6495d9d4b3a494f9efce8824812be7ae', aligned: 4096, json: 3 });
    expect(r.again).toEqual(r.first);
    expect(r.dropped).toBeGreaterThan(4 * 1024 * 1024);
    expect(r.fileAfter).toBeLessThan(r.fileBefore - 4 * 1024 * 1024);
  });

  it('started without the daemon\'s node flags, a request followed by quiet trims nothing', () => {
    // V8's default young generation grows to 32 MiB under allocation and stays there after a
    // full GC: that alone must not make every quiet period a full GC and a drop of code pages.
    const r = inDaemonProcess(`
      const t = new m.IdleTrimmer(5000);
      let keep = 0;
      for (let i = 0; i < 400000; i++) keep += { i, s: 'x' + i }.s.length; // requests' garbage
      t.touch();
      const first = t.check(Date.now() + 6000); // start-up's trim and drop
      const later = [];
      for (let k = 1; k <= 3; k++) {
        for (let i = 0; i < 100000; i++) keep += { i }.i & 1;
        t.touch();
        later.push(t.check(Date.now() + 6000 * (k + 1)));
      }
      out({ first, later, keep: keep > 0 });
    `, []);
    expect(r).toEqual({ first: true, later: [false, false, false], keep: true });
  });

  it('a quiet agent gives back the file pages start-up mapped, then only after a burst', () => {
    const r = inDaemonProcess(`
      const calls = [];
      const t = new m.IdleTrimmer(5000, (before, after) => calls.push({ file: m.residentBytes().file, before, after }));
      t.touch();
      const startup = t.check(Date.now() + 6000);
      t.touch(); // a request, no growth: no drop (a drop costs more than it gives back here)
      const request = t.check(Date.now() + 12000);
      const burst = Buffer.alloc(10 * 1024 * 1024, 1); // a burst's garbage: the heap grew
      require('zlib').gzipSync(Buffer.alloc(100000, 7)); // and code the agent had not run yet
      const fileBeforeBurstTrim = m.residentBytes().file;
      t.touch();
      const afterBurst = t.check(Date.now() + 18000);
      out({ startup, request, afterBurst, calls, fileBeforeBurstTrim, last: burst[burst.length - 1] });
    `) as { startup: boolean; request: boolean; afterBurst: boolean; calls: { file: number; before: number; after: number }[]; fileBeforeBurstTrim: number };
    expect(r.startup).toBe(true);
    expect(r.calls[0].before - r.calls[0].after).toBeGreaterThan(4 * 1024 * 1024);
    expect(r.request).toBe(false);
    expect(r.afterBurst).toBe(true);
    expect(r.calls).toHaveLength(2);
    expect(r.calls[1].file).toBeLessThan(r.fileBeforeBurstTrim); // file pages went too, not only the heap
  });
});
