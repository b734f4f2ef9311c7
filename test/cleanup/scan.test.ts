/**
 * The directory scan on real files: the one-request path for regular files (readFileHead on
 * the addon's shared I/O pool, many files at a time) says exactly what the entry-by-entry path
 * (lstat, open, read, close) says, and a file whose read hangs is reported while every other
 * file is still classified.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { classifyEntry, ClassifyContext, LEFTOVER_PREFIX, LivenessView } from '../../src/cleanup/classify';
import { inspect, listDir, scanDirectory } from '../../src/cleanup/scan';
import { Verdict } from '../../src/control/replies';
import { ioStats } from '../../src/io/directio';
import { loadNative } from '../../src/io/native';
import { initLease, LS, md5, patchLeader } from './helpers';

jest.setTimeout(60000);

const view: LivenessView = {
  source: 'test',
  host: (h) => (h === 2 ? { hostId: 2, state: 'LIVE', generation: 1, name: 'node02', ageSeconds: 1, deadAfter: 68 } : undefined),
  hostLive: (h) => h === 2,
  candidates: () => [2],
};
const ctx = (): ClassifyContext => ({ view, nowMs: Date.now(), minAgeSeconds: 3600 });
/** ageSeconds depends on when each entry was judged */
const same = (v: Verdict) => ({ ...v, ageSeconds: undefined });

describe('cleanup scan', () => {
  let dir: string;
  const p = (n: string) => path.join(dir, n);

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-scan-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('judges every kind of entry as the entry-by-entry path does', async () => {
    const names = Array.from({ length: 40 }, (_, i) => md5(`/images/vm-${i}`));
    for (const n of names) await initLease(p(n));
    await patchLeader(p(names[0]), { ownerId: 2, ownerGeneration: 1, timestamp: 5, lver: 1 }); // in use by host 2
    await initLease(p('not-an-md5-name'), 'not-an-md5-name');
    fs.writeFileSync(p(md5('empty')), '');
    fs.writeFileSync(p(md5('short')), 'short');
    fs.writeFileSync(p(LS), Buffer.alloc(4096));
    fs.mkdirSync(p(md5('a directory')));
    fs.symlinkSync(p(names[1]), p(md5('a symlink')));
    execFileSync('mkfifo', [p(md5('a fifo'))]);
    fs.linkSync(p(names[2]), p(md5('a hard link')));
    fs.linkSync(p(names[3]), p(LEFTOVER_PREFIX + names[3]));
    const old = new Date(Date.now() - 7200 * 1000);
    for (const n of fs.readdirSync(dir)) fs.lutimesSync(p(n), old, old);

    const entries = await listDir(dir);
    const got = await scanDirectory(dir, entries, ctx, { ioTimeoutMs: 5000, concurrency: 16 });
    const want: Verdict[] = [];
    for (const e of entries) want.push(classifyEntry(await inspect(dir, e.name, view, 5000), ctx()));
    expect(got.map(same)).toEqual(want.map(same));
    expect(got.map((v) => v.name)).toEqual([...fs.readdirSync(dir)].sort());
    const byName = new Map(got.map((v) => [v.name, v]));
    expect(byName.get(names[0])).toMatchObject({ class: 'in use' });
    expect(byName.get(names[5])).toMatchObject({ class: 'free', deletable: true });
    expect(byName.get(md5('a fifo'))).toMatchObject({ class: 'not a lease', detail: 'not a regular file' });
    expect(byName.get(md5('a symlink'))).toMatchObject({ class: 'not a lease', detail: 'a symbolic link (not followed)' });
    expect(byName.get(md5('a hard link'))).toMatchObject({ class: 'linked' });
    // read only: nothing was written through the scan
    expect(names.reduce((n, x) => n + ioStats(p(x)).writes, 0)).toBe(names.length + 1);
  });

  it('a file whose read hangs past io_timeout is reported; all the others are still classified', async () => {
    const names = Array.from({ length: 100 }, (_, i) => md5(`/images/disk-${i}`));
    for (const n of names) await initLease(p(n));
    const old = new Date(Date.now() - 7200 * 1000);
    for (const n of names) fs.utimesSync(p(n), old, old);
    // More hung files than the pool's threads: it must add threads for the rest.
    const hung = names.filter((_, i) => i % 5 === 0);
    for (const n of hung) loadNative()._testInjectStall(p(n), 0, 3000, 1);

    const files = await scanDirectory(dir, await listDir(dir), ctx, { ioTimeoutMs: 1000, concurrency: 32 });
    for (const v of files) {
      if (hung.includes(v.name)) {
        expect(v).toMatchObject({ class: 'error', deletable: false, ino: expect.any(String) });
        expect(v.detail).toMatch(/^cannot read: I\/O timeout: .* did not complete within 1000 ms/);
      } else {
        expect(v).toMatchObject({ class: 'free', deletable: true, detail: 'never used' });
      }
    }
    expect(files.filter((v) => v.class === 'free')).toHaveLength(names.length - hung.length);
  });

  it('a scan told to stop (the daemon is stopping) examines no further entry and returns those it examined, in order', async () => {
    const names = Array.from({ length: 300 }, (_, i) => md5(`/images/stop-${i}`));
    for (const n of names) await initLease(p(n));
    const entries = await listDir(dir);
    const abort = new AbortController();
    let batches = 0;
    const files = await scanDirectory(dir, entries, () => { batches++; return ctx(); }, {
      ioTimeoutMs: 5000, concurrency: 4, signal: abort.signal,
      onProgress: (done) => { if (done === 10) abort.abort(); },
    });
    // the 4 in hand when it stopped finish; nothing is started after (300 entries: 2 batches)
    expect(files.length).toBeGreaterThanOrEqual(10);
    expect(files.length).toBeLessThanOrEqual(13);
    expect(files.map((v) => v.name)).toEqual(entries.slice(0, files.length).map((e) => e.name));
    expect(files.every((v) => v.class === 'too recent')).toBe(true);
    expect(batches).toBe(1);
    // Already stopped: nothing is read at all.
    expect(await scanDirectory(dir, entries, ctx, { ioTimeoutMs: 5000, signal: abort.signal })).toEqual([]);
  });
});
