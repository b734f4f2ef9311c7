/**
 * The state database on a full filesystem (issue 11, item 4). Real agents (io_timeout 1), a real
 * owner process; host 1's state directory is a 2 MiB tmpfs filled up (the lease directory stays
 * on a normal disk dir under /tmp). Needs root (mount).
 *
 * Before the fix: the owner's release succeeded on disk but was reported as failed, the database
 * kept the lease, and after a restart the agent SIGTERMed the owner that had released it (host 2
 * had taken the lease meanwhile). Now: the release is reported done, status and the log name the
 * failing database, its path, SQLITE_FULL and the remedy (no stack trace), and after the restart
 * the agent checks the lease on disk before acting: released here, so the owner is left alone.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { callAgent } from '../../src/control/client';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(180000);
const asRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface StoreStatus { stateStore: { ok: boolean; path: string; fault?: { code: string; remedy: string }; queued: number } }

(asRoot ? describe : describe.skip)('state database on a full filesystem', () => {
  let base: string;
  let leaseDir: string;
  let stateDir: string;
  let h1: AgentHost;
  let h2: AgentHost;
  let owner: ChildProcess | undefined;
  let mounted = false;

  beforeAll(async () => {
    base = makeTempDir('la-state-full-');
    leaseDir = path.join(base, 'leases');
    stateDir = path.join(base, 'state');
    fs.mkdirSync(leaseDir);
    fs.mkdirSync(stateDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', stateDir]);
    mounted = true;
    h1 = writeHostConfig(base, 1, { leaseDir });
    fs.writeFileSync(h1.conf, fs.readFileSync(h1.conf, 'utf8').replace(/^state_path = .*$/m, `state_path = "${path.join(stateDir, 'state.db')}"`));
    startHost(h1);
    h2 = startHost(writeHostConfig(base, 2, { leaseDir }));
    await Promise.all([waitJoined(h1), waitJoined(h2)]);
  });

  afterAll(async () => {
    owner?.kill('SIGKILL');
    await Promise.all([h1, h2].filter(Boolean).map((h) => stopHost(h, 'SIGKILL')));
    if (mounted) execFileSync('umount', ['-l', stateDir]);
    if (!process.env.KEEP_TMP) removeTempDir(base);
  });

  it('a release on a full state filesystem is reported done; after a restart its owner is not acted on', async () => {
    const md5 = createHash('md5').update('/var/lib/images/full.qcow2').digest('hex');
    const leasePath = sparseFile(path.join(leaseDir, md5), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:${md5}:${leasePath}:0`])).code).toBe(0);
    const res = { lockspace: LS, resource: md5, path: leasePath, offset: 0 };
    owner = spawn('sleep', ['600']);
    expect((await cli(h1, ['client', 'acquire', '-r', `${LS}:${md5}:${leasePath}:0`, '--owner', 'vm-full', '--name', 'vm-full', '--pid', String(owner.pid)])).code).toBe(0);

    // Fill the state filesystem.
    const filler = path.join(stateDir, 'filler');
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4096'], { stdio: 'ignore' });
    } catch {
      // ENOSPC: full, as wanted
    }
    const logFrom = log(h1).length;

    // The owner lets go of its lease: done on disk, so reported done.
    const rel = await cli(h1, ['client', 'release', '--owner', 'vm-full']);
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    const db = path.join(stateDir, 'state.db');
    const st = (await status(h1)) as unknown as StoreStatus;
    expect(st.stateStore).toMatchObject({ ok: false, path: db, fault: { code: 'SQLITE_FULL', remedy: `free space on ${stateDir}` } });
    expect(st.stateStore.queued).toBeGreaterThan(0);
    const text = await cli(h1, ['status']);
    expect(text.stdout).toContain(`state ${db}: FAILING (SQLITE_FULL`);
    const faultLog = log(h1).slice(logFrom);
    expect(faultLog).toMatch(new RegExp(`error +state database ${db}: .* failed: the filesystem is full \\(SQLITE_FULL.*\\); free space on ${stateDir}`));
    expect(faultLog).not.toMatch(/\n\s+at /); // no stack trace

    // The lease is free on disk: host 2 takes it.
    await callAgent(h2.socket, { op: 'acquire', owner: { uuid: 'vm-full-b', name: 'vm-full-b' }, leases: [res], timeoutMs: 10000 }, 20000);

    // Host 1's agent restarts (the filesystem still full at the stop), then space is freed.
    await stopHost(h1, 'SIGTERM');
    fs.rmSync(filler);
    const restartFrom = log(h1).length;
    startHost(h1);
    await waitJoined(h1);
    await waitFor('restart recovery', async () => /restart recovery|re-adopt/.test(log(h1).slice(restartFrom)), 30000);
    // Give a kill (SIGTERM, then SIGKILL after kill_grace_seconds = 3) time to happen, were it coming.
    await sleep(5000);
    const restartLog = log(h1).slice(restartFrom);
    expect({ exit: owner.exitCode, signal: owner.signalCode, restartLog }).toEqual({ exit: null, signal: null, restartLog });
    expect(restartLog).toMatch(new RegExp(`the state database says vm-full holds ${LS}:${md5} .* but on disk it is held by host 2 .*; vm-full is not acted on for it`));
    expect((await status(h1)).owners).toEqual([]);
    expect(((await status(h1)) as unknown as StoreStatus).stateStore.ok).toBe(true);
    expect((await cli(h2, ['client', 'release', '--owner', 'vm-full-b'])).code).toBe(0);
  });
});
