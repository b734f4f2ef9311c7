/**
 * The sweeper and the daemon's life (in-process daemons, io_timeout 1, real files with O_DIRECT
 * under /tmp): a daemon stopped in the middle of a sweep waits for it to end cleanly; right
 * after a restart, before the start-up recovery and reconcile have ended, no real sweep runs
 * (a lease of an earlier generation of this host that no record names is what the reconcile
 * takes back); the report names a lease used during the sweep by this host; the schedule's
 * timers do not pile up.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { sweep } from '../../src/cleanup/sweep';
import { SweepReport } from '../../src/control/replies';
import { DomainHandlers } from '../../src/control/handler';
import { cleanupExtension } from '../../src/daemon/cleanup';
import { DirectFile } from '../../src/io/directio';
import { memoryLogger } from '../../src/log/logger';
import { decodeLeader, DEFAULT_GEOMETRY, LeaderRecord } from '../../src/ondisk';
import { cli, initLease, LS, md5, patchLeader, startTestDaemon, TestDaemon, waitFor, waitJoined } from './helpers';

jest.setTimeout(120000);

const SWEEP_LOCK = '__lockagent_cleanup__';
const ALIAS = /^\.lockagent-cleanup\./;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function leaderOf(p: string): Promise<LeaderRecord> {
  const f = await DirectFile.open(p, { readOnly: true, timeoutMs: 5000 });
  try {
    return decodeLeader(await f.read(0, 4096, 5000), 0);
  } finally {
    await f.close();
  }
}

/** A real sweep that deletes nothing (min-age 10 years) is accepted: the start-up recovery has ended. */
async function waitRecovered(d: TestDaemon): Promise<void> {
  await waitFor('the start-up recovery to end', async () => (await cli(['cleanup', '--min-age', '3650d', '--socket', d.socket])).code === 0, 60000, 250);
}

describe('the sweeper and the daemon\'s life', () => {
  let base: string;
  let dir: string;
  const daemons: TestDaemon[] = [];
  let openGate: () => void = () => undefined;
  const procs: ChildProcess[] = [];
  const p = (n: string) => path.join(dir, n);
  const spec = (n: string) => ({ lockspace: LS, resource: n, path: p(n), offset: 0, mode: 'exclusive' as const });
  const old = new Date(Date.now() - 2 * 3600 * 1000);
  const age = (...names: string[]) => { for (const n of names) fs.utimesSync(p(n), old, old); };
  const md5Names = () => fs.readdirSync(dir).filter((n) => /^[0-9a-f]{32}$/.test(n));

  beforeAll(async () => {
    base = fs.mkdtempSync('/tmp/la-cleanup-life-');
    dir = path.join(base, 'leases');
    fs.mkdirSync(dir);
    await ensureLockspaceFile(p(LS), LS, DEFAULT_GEOMETRY, 1);
  });

  afterAll(async () => {
    openGate();
    for (const c of procs) c.kill('SIGKILL');
    for (const d of daemons) await d.stop({ releaseAll: true }).catch(() => undefined);
    if (base?.startsWith('/tmp/')) fs.rmSync(base, { recursive: true, force: true });
  });

  async function start(extra = '', ext = {}): Promise<TestDaemon> {
    // One host 1 at a time (a test that failed may have left its daemon running).
    openGate();
    while (daemons.length) await daemons.pop()!.stop({ releaseAll: true }).catch(() => undefined);
    const d = await startTestDaemon(base, dir, 1, extra, ext);
    daemons.push(d);
    return d;
  }

  async function stop(d: TestDaemon, releaseAll = false): Promise<void> {
    daemons.splice(daemons.indexOf(d), 1);
    await d.stop({ releaseAll });
  }

  it('a daemon stopped during a sweep waits for it: the file in hand finishes, the lock is released, the caller gets the report', async () => {
    const A = await start();
    await waitJoined(A);
    await waitRecovered(A);
    const names = Array.from({ length: 80 }, (_, i) => md5(`/images/stop-${i}.img`));
    for (const n of names) await initLease(p(n));
    age(...names);

    let answeredAt = 0;
    const sweeping = cli(['cleanup', '--json', '--min-age', '1h', '--socket', A.socket]).then((r) => { answeredAt = Date.now(); return r; });
    await waitFor('a few deletions', () => md5Names().length <= names.length - 3, 60000, 10);
    await stop(A);
    const stoppedAt = Date.now();

    // The caller got its report, not a closed connection.
    const r = await sweeping;
    expect(r.stderr).not.toMatch(/closed the connection/);
    expect(answeredAt).toBeGreaterThan(0);
    expect(answeredAt).toBeLessThanOrEqual(stoppedAt + 1000);
    const rep = JSON.parse(r.stdout) as SweepReport;
    expect(r.code).toBe(1);
    expect(rep.errors).toEqual([expect.stringMatching(/^the sweep was stopped \(the agent is stopping\): \d+ of \d+ entries examined, \d+ deletable left for the next sweep$/)]);
    const mine = rep.files.filter((f) => names.includes(f.name));
    const deleted = mine.filter((f) => f.action === 'deleted').map((f) => f.name);
    const left = mine.filter((f) => f.action === 'kept' && /; not deleted: the sweep was stopped$/.test(f.detail));
    expect(deleted.length).toBeGreaterThanOrEqual(3);
    expect(left.length).toBeGreaterThan(0);
    expect(deleted.length + left.length).toBe(mine.length);

    // Ended cleanly: what the report says deleted is gone, the rest is there with a free lease,
    // no second name is left, the sweep lock is released on disk, the agent holds nothing for it.
    const now = md5Names();
    for (const n of deleted) expect(now).not.toContain(n);
    for (const n of now) expect([n, (await leaderOf(p(n))).timestamp]).toEqual([n, 0]);
    expect(fs.readdirSync(dir).filter((n) => ALIAS.test(n))).toEqual([]);
    expect((await leaderOf(p(SWEEP_LOCK))).timestamp).toBe(0);
    expect(A.agent.inquire('cleanup:node01')).toEqual([]);
    const at = A.logLines.indexOf('info lockagent stopped');
    expect(at).toBeGreaterThan(0);
    expect(A.logLines.slice(0, at).some((l) => /^warning cleanup \(requested[^)]*\): \d+ files: \d+ deleted/.test(l))).toBe(true);

    // Nothing runs after the stop.
    const snap = () => fs.readdirSync(dir).sort().map((n) => `${n} ${fs.lstatSync(p(n)).mtimeMs}`);
    const after = snap();
    await sleep(1500);
    expect(snap()).toEqual(after);
    expect(A.logLines.slice(at + 1).filter((l) => /cleanup/.test(l))).toEqual([]);
  });

  it('no real sweep before the start-up recovery and reconcile have ended; a dry run says "recovering"', async () => {
    // Before the restart: a domain (a process) holds X; the agent stops and keeps it.
    const X = md5('/images/running-vm.img');
    const Z = md5('/images/lost-record.img');
    const D1 = await start();
    await waitJoined(D1);
    await waitRecovered(D1);
    await initLease(p(X));
    await initLease(p(Z));
    const vm = spawn('sleep', ['600']);
    procs.push(vm);
    await D1.agent.acquire({ uuid: 'vm-run', name: 'vmRun', pid: vm.pid }, [spec(X)], { timeoutMs: 20000 });
    const g1 = D1.agent.lockspaces.get(LS)!.lease!.generation;
    expect(g1).toBeGreaterThan(1); // host 1 joined before, in the first test
    await stop(D1);
    // Z: held by an earlier generation of this host, and no record names it (as after a lost
    // state database): the start-up reconcile takes it back; until then it looks free.
    const g0 = g1 - 1;
    await patchLeader(p(Z), { ownerId: 1, ownerGeneration: g0, timestamp: 100, lver: 1, writeId: 1, writeGeneration: g0 });
    age(X, Z);

    // Restart; the recovery is held up in asking whether vmRun still runs.
    let asked = false;
    const gate = new Promise<void>((r) => { openGate = r; });
    const D2 = await start('cleanup_schedule = "* * * * * *"', {
      domain: async () => ({ handlers: {} as DomainHandlers, ownerExists: async () => { asked = true; await gate; return true; } }),
    });
    await waitJoined(D2);
    await waitFor('the recovery to ask about vmRun', () => asked, 30000, 50);

    const real = await cli(['cleanup', '--json', '--min-age', '1h', '--socket', D2.socket]);
    expect(real.stdout).toBe('');
    expect(real.stderr).toBe('lockagent: cleanup: the agent is still recovering the leases it held before its restart; try again in a moment');
    expect(real.code).toBe(4);

    const dry = await cli(['cleanup', '--dry-run', '--json', '--min-age', '1h', '--socket', D2.socket]);
    expect(dry.code).toBe(0);
    const r = JSON.parse(dry.stdout) as SweepReport;
    expect(r.liveness).toMatch(/the agent is still recovering the leases it held before its restart/);
    expect(r.files.find((f) => f.name === X)).toMatchObject({ class: 'in use', deletable: false });
    const z = r.files.find((f) => f.name === Z)!;
    expect(z).toMatchObject({ class: 'in use', deletable: false });
    expect(z.detail).toMatch(new RegExp(`held by an earlier generation \\(${g0}\\) of this host; not decided: recovering`));
    await waitFor('a scheduled run skipped', () => D2.logLines.includes(
      'warning cleanup (scheduled): skipped: the agent is still recovering the leases it held before its restart'), 10000, 100);
    expect(D2.logLines.filter((l) => /cleanup \(scheduled\): \d+ files/.test(l))).toEqual([]);
    expect(fs.existsSync(p(X)) && fs.existsSync(p(Z))).toBe(true);

    // Recovery ends: vmRun keeps X, the reconcile takes Z back; the schedule runs and keeps both.
    openGate();
    await waitFor('the reconcile', () => D2.logLines.some((l) => /start-up reconcile: 1 lease\(s\) held on disk were unknown/.test(l)), 30000, 100);
    await waitFor('a scheduled sweep', () => D2.logLines.some((l) => /^(info|warning) cleanup \(scheduled\): \d+ files/.test(l)), 10000, 100);
    expect(fs.existsSync(p(X)) && fs.existsSync(p(Z))).toBe(true);
    expect(D2.agent.inquire('vm-run')).toHaveLength(1);
    expect(D2.agent.inquire(`unknown-owner:${LS}:${Z}`)).toHaveLength(1);
    await stop(D2, true);
  });

  it('a lease used by this host while the sweep was deleting it: kept, and the report does not blame another host', async () => {
    const D3 = await start();
    await waitJoined(D3);
    await waitRecovered(D3);
    const W = md5('/images/used-here.img');
    await initLease(p(W));
    age(W);
    const local = { uuid: 'vm-local', name: 'vmLocal' };
    const r = await sweep({ agent: D3.agent, config: D3.config, log: D3.log, store: D3.store }, {
      dryRun: false, minAgeSeconds: 3600,
      hooks: {
        acquiring: async (name) => {
          if (name !== W) return;
          await D3.agent.acquire(local, [spec(W)], { timeoutMs: 20000 });
          await D3.agent.release(local);
        },
      },
    });
    expect(r.files.find((f) => f.name === W)).toMatchObject({
      class: 'in use', action: 'kept', detail: 'used during the sweep, by this host or another (lease version 1, classified at 0); kept',
    });
    expect(fs.existsSync(p(W))).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => ALIAS.test(n))).toEqual([]);
  });

  it('a sweep told to stop while it reads the directory reads no further entry and deletes nothing', async () => {
    const D = daemons[daemons.length - 1];
    const names = Array.from({ length: 300 }, (_, i) => md5(`/images/scan-stop-${i}.img`));
    for (const n of names) await initLease(p(n));
    age(...names);
    const before = fs.readdirSync(dir).sort();
    const abort = new AbortController();
    const r = await sweep({ agent: D.agent, config: D.config, log: D.log, store: D.store }, {
      dryRun: false, minAgeSeconds: 3600, signal: abort.signal, onProgress: (done) => { if (done === 5) abort.abort(); },
    });
    expect(r.errors).toEqual([expect.stringMatching(new RegExp(`^the sweep was stopped \\(the agent is stopping\\): ${r.files.length} of ${before.length} entries examined(, \\d+ deletable left for the next sweep)?$`))]);
    expect(r.files.length).toBeLessThan(5 + 32);
    expect(r.summary.deleted).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect((await leaderOf(p(SWEEP_LOCK))).timestamp).toBe(0);
  });

  it('the schedule keeps no timer of a run that has fired', async () => {
    const D = daemons[daemons.length - 1];
    const log = memoryLogger();
    const ext = cleanupExtension({ jitterMs: 40 })({ agent: D.agent, config: { ...D.config, cleanupSchedule: '* * * * * *' }, log, store: D.store });
    try {
      await waitFor('4 scheduled sweeps', () => log.lines.filter((l) => /cleanup \(scheduled\): \d+ files/.test(l)).length >= 4, 20000, 50);
      // at most the jitter of the run about to start
      expect(ext.pendingTimers()).toBeLessThanOrEqual(1);
    } finally {
      await ext.stop();
    }
    expect(ext.pendingTimers()).toBe(0);
  });
});
