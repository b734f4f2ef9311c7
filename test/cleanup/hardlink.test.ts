/**
 * Files the sweeper must never write to or delete, on real files with a real agent (host 1,
 * io_timeout 1): a lease file that is also hard-linked from outside the lease directory (before
 * the sweep, after the scan, and between the sweep's second name and the acquire's open), and
 * a `.lockagent-cleanup.<md5>` name that holds something other than a lease a sweep left.
 * Acquiring a lease writes its leader: through a hard link, that write lands in the outside file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { SweepHooks, sweep } from '../../src/cleanup/sweep';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { systemClock } from '../../src/lease/clock';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';
import { initLease, LS, md5, sha256File } from './helpers';

jest.setTimeout(120000);

describe('cleanup never writes through a hard link', () => {
  let base: string;
  let dir: string;
  let outside: string;
  let A: Agent;
  const log = memoryLogger();
  /** runs before host 1 opens this path for a lease (once) */
  const beforeOpen = new Map<string, () => void>();
  const p = (n: string) => path.join(dir, n);
  const o = (n: string) => path.join(outside, n);
  const old = new Date(Date.now() - 2 * 3600 * 1000);

  const run = (dryRun: boolean, hooks?: SweepHooks) => sweep({
    agent: A, log, store: undefined,
    config: { diskLeaseDir: dir, ioTimeout: 1, sectorSize: 512, alignSize: 1048576, cleanupMinAge: 3600 },
  }, { dryRun, minAgeSeconds: 3600, hooks });

  /** An old, free (never used) lease file. */
  const freeLease = async (n: string) => {
    await initLease(p(n));
    fs.utimesSync(p(n), old, old);
  };
  /** What must not change in the outside file. */
  const snap = (f: string) => {
    const st = fs.statSync(f, { bigint: true });
    return { sum: sha256File(f), mtimeNs: st.mtimeNs, ino: st.ino };
  };

  beforeAll(async () => {
    base = fs.mkdtempSync('/tmp/la-cleanup-links-');
    dir = path.join(base, 'leases');
    outside = path.join(base, 'elsewhere');
    fs.mkdirSync(dir);
    fs.mkdirSync(outside);
    await ensureLockspaceFile(p(LS), LS, DEFAULT_GEOMETRY, 1);
    A = new Agent({
      clock: systemClock, log, store: new StateStore(path.join(base, 'host1.db')), hostName: 'node01',
      policy: { onLeaseFailure: async () => undefined },
      openStorage: async (target) => {
        const hook = beforeOpen.get(target);
        beforeOpen.delete(target);
        hook?.();
        return FileLeaseStorage.open(target);
      },
    });
    A.addLockspace({ name: LS, hostId: 1, path: p(LS), offset: 0, ioTimeout: 1 });
    await A.lockspaces.get(LS)!.waitJoined(30000);
  });

  afterAll(async () => {
    await A?.shutdown(true).catch(() => undefined);
    if (base?.startsWith('/tmp/')) fs.rmSync(base, { recursive: true, force: true });
  });

  it('a lease file hard-linked from outside the lease directory is reported and kept; the outside file is untouched', async () => {
    const plain = md5('/images/plain.img');
    const linked = md5('/images/linked.img');
    await freeLease(plain);
    await freeLease(linked);
    fs.linkSync(p(linked), o('copy-of-linked.img'));
    const before = snap(o('copy-of-linked.img'));

    const dry = await run(true);
    expect(dry.files.find((f) => f.name === plain)).toMatchObject({ class: 'free', deletable: true });
    const v = dry.files.find((f) => f.name === linked)!;
    expect(v).toMatchObject({ class: 'linked', deletable: false });
    expect(v.detail).toMatch(/^has 2 hard links: .*never writes to it or deletes it; free: never used$/);

    const r = await run(false);
    expect(r.files.find((f) => f.name === plain)).toMatchObject({ action: 'deleted' });
    expect(r.files.find((f) => f.name === linked)).toMatchObject({ class: 'linked' });
    expect(r.files.find((f) => f.name === linked)!.action).not.toBe('deleted');
    expect(fs.existsSync(p(plain))).toBe(false);
    expect(fs.existsSync(p(linked))).toBe(true);
    expect(snap(o('copy-of-linked.img'))).toEqual(before);
    expect(fs.statSync(p(linked)).nlink).toBe(2);
  });

  it('a hard link made after the scan, or just before the acquire opens the file, is noticed before anything is written', async () => {
    const afterScan = md5('/images/linked-after-scan.img');
    const beforeAcquire = md5('/images/linked-before-acquire.img');
    await freeLease(afterScan);
    await freeLease(beforeAcquire);
    // Linked between the sweep's second name (link count 2 then) and the acquire's open: only
    // the check on the fd the acquire writes through can see it.
    beforeOpen.set(p(`.lockagent-cleanup.${beforeAcquire}`), () => fs.linkSync(p(beforeAcquire), o('before-acquire.img')));
    let before: ReturnType<typeof snap> | undefined;
    const r = await run(false, {
      scanned: async () => {
        fs.linkSync(p(afterScan), o('after-scan.img'));
        before = snap(o('after-scan.img'));
      },
    });
    expect(beforeOpen.size).toBe(0);
    for (const n of [afterScan, beforeAcquire]) {
      const v = r.files.find((f) => f.name === n)!;
      expect(v).toMatchObject({ class: 'linked', action: 'kept' });
      expect(v.detail).toMatch(/has 2 hard links: .*\(linked during the sweep\)/);
      expect(fs.existsSync(p(n))).toBe(true);
      expect(fs.existsSync(p(`.lockagent-cleanup.${n}`))).toBe(false);
    }
    expect(snap(o('after-scan.img'))).toEqual(before);
    // Never acquired, so never written: still the leader initLease wrote (lver 0, no owner).
    const again = await run(true);
    expect(again.files.find((f) => f.name === beforeAcquire)!.detail).toMatch(/free: never used$/);
    expect(again.files.find((f) => f.name === afterScan)!.detail).toMatch(/free: never used$/);
    expect(A.inquire('cleanup:node01')).toEqual([]);
  });

  it('a ".lockagent-cleanup.<md5>" name is removed only when it holds a lease of that resource', async () => {
    const foreign = `.lockagent-cleanup.${md5('/images/foreign.img')}`;
    const ours = md5('/images/unlinked-by-a-crashed-sweep.img');
    fs.writeFileSync(p(foreign), 'someone else\'s data, not a lease\n');
    await initLease(p(`.lockagent-cleanup.${ours}`), ours);
    const before = sha256File(p(foreign));

    const dry = await run(true);
    const f = dry.files.find((x) => x.name === foreign)!;
    expect(f).toMatchObject({ class: 'not a lease', deletable: false });
    expect(f.detail).toMatch(/^sweeper-style name, but not a lease left by a sweep \(no lease record/);
    expect(dry.files.find((x) => x.name === `.lockagent-cleanup.${ours}`)).toMatchObject({ class: 'leftover', deletable: true });

    const r = await run(false);
    expect(r.files.find((x) => x.name === foreign)!.action).not.toBe('deleted');
    expect(r.files.find((x) => x.name === `.lockagent-cleanup.${ours}`)).toMatchObject({ action: 'deleted' });
    expect(fs.existsSync(p(foreign))).toBe(true);
    expect(sha256File(p(foreign))).toBe(before);
    expect(fs.existsSync(p(`.lockagent-cleanup.${ours}`))).toBe(false);
  });
});
