/**
 * The lease-loss timeline on real storage: a lockspace on a loop device that stops answering
 * (its backing file truncated, the device resized to 0). Renewals fail, the agent warns at
 * 6 x io_timeout, declares the lease lost at 8 x io_timeout, and the default action (SIGTERM,
 * then SIGKILL after the grace period) ends the owner process.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, cli, log, startHost, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const canLoop = process.getuid?.() === 0 && fs.existsSync('/usr/sbin/losetup');
const maybe = canLoop || process.env.CI ? describe : describe.skip;
if (!canLoop && !process.env.CI) console.warn('SKIPPED lease-loss test: needs root and losetup');
jest.setTimeout(120000);

maybe('lease loss when lockspace storage fails (loop device, io_timeout 1)', () => {
  let base: string;
  let dev = '';
  let host: AgentHost | undefined;
  let victim: ChildProcess | undefined;

  beforeAll(() => { base = makeTempDir('la-loss-'); });
  afterAll(async () => {
    victim?.kill('SIGKILL');
    if (host) await stopHost(host, 'SIGKILL');
    if (dev) execFileSync('losetup', ['-d', dev]);
    removeTempDir(base);
  });

  it('warns at 6T, fails at 8T and kills the owner with SIGTERM', async () => {
    const backing = sparseFile(path.join(base, 'lockspace.img'), 1048576);
    dev = execFileSync('losetup', ['--find', '--show', backing], { encoding: 'utf8' }).trim();
    expect((await lockagent(['direct', 'init', '-s', `LSLOOP:0:${dev}:0`, '-o', '1'])).code).toBe(0);
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const resFile = sparseFile(path.join(base, 'res'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `LSLOOP:res:${resFile}:0`])).code).toBe(0);
    host = startHost(writeHostConfig(base, 1, { leaseDir, extra: `lockspaces = [ "LSLOOP:1:${dev}:0" ]` }));
    await waitJoined(host, 'LSLOOP');

    victim = spawn('sleep', ['600']);
    const died = new Promise<NodeJS.Signals | null>((resolve) => victim!.once('exit', (_c, sig) => resolve(sig)));
    const acq = await cli(host, ['client', 'acquire', '-r', `LSLOOP:res:${resFile}:0`, '--owner', 'victim', '--name', 'victim', '--pid', String(victim.pid)]);
    expect(acq.code).toBe(0);

    // Storage goes away under the running agent.
    const t0 = Date.now();
    fs.truncateSync(backing, 0);
    execFileSync('losetup', ['-c', dev]);

    let timer: NodeJS.Timeout | undefined;
    const sig = await Promise.race([died, new Promise((r) => { timer = setTimeout(() => r('timeout'), 40000); })]);
    clearTimeout(timer);
    const elapsed = (Date.now() - t0) / 1000;
    expect(sig).toBe('SIGTERM');
    // Lost 8 s after the last successful renewal began (the log line below says so). That one
    // began at most a renewal interval (2·io + 0.5 s) plus one renewal's I/O (≤ io) before the
    // break, and its time is in whole seconds (up to 1 s earlier): never sooner than 3.5 s after.
    expect(elapsed).toBeGreaterThanOrEqual(8 - (2 + 0.5) - 1 - 1);
    expect(elapsed).toBeLessThan(15);
    const text = log(host);
    expect(text).toMatch(/lockspace LSLOOP: no successful renewal for [67] s; leases fail in [12] s/);
    expect(text).toMatch(/lockspace LSLOOP lost: renewals failed for 8 s/);
    expect(text).toMatch(/lease lost for victim \(victim, pid \d+\).*sending SIGTERM, SIGKILL in 3 s/);
    // The agent is still up and answers; the other lockspace is unaffected.
    await waitFor('status answers', async () => (await cli(host!, ['status', '--json'])).code === 0 || undefined);
  });
});
