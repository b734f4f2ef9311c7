/**
 * A slot someone else renews is never taken (issue: a cloned host took over a live host's slot).
 *
 * Host 1 (a lockagent) holds r1 for a running owner; host 2 is a real sanlock 3.8.5 daemon that
 * wants r1. A second agent is then started with host 1's host_id — once with host 1's own host
 * name (a host cloned from a golden image, or a copied config), once with another name. It must
 * refuse to join, naming the live host, and keep refusing; host 1 keeps its generation and its
 * owner; the sanlock host stays refused. Before the fix the clone joined at once with a new
 * generation, and the sanlock host took r1 while host 1's owner ran (a newer generation of the
 * owner's host_id means "the owner is gone" to Disk Paxos).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import {
  addLockspace, describeSanlockDaemons, killHolder, SanlockDaemon, sanlockClient, sanlockCommand, startSanlockDaemon, stopSanlockDaemon,
} from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(180000);

describeSanlockDaemons('a second agent on a live host_id (clone, copied config)', () => {
  let base: string;
  let leaseDir: string;
  let h1: AgentHost;
  let sl: SanlockDaemon;
  let owner: ChildProcess;
  let res: string;
  const clones: AgentHost[] = [];

  beforeAll(async () => {
    base = makeTempDir('la-clone-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const r1 = sparseFile(path.join(leaseDir, 'r1'), 1048576);
    res = `${LS}:r1:${r1}:0`;
    expect((await lockagent(['direct', 'init', '-r', res])).code).toBe(0);
    h1 = startHost(writeHostConfig(base, 1, { leaseDir, hostName: 'node01' }));
    await waitJoined(h1);
    owner = spawn('sleep', ['600']);
    expect((await cli(h1, ['client', 'acquire', '-r', res, '--owner', 'owner-1', '--name', 'owner-1', '--pid', String(owner.pid)])).code).toBe(0);
    sl = await startSanlockDaemon(base, 'sanlock2');
    await addLockspace(sl, `${LS}:2:${path.join(leaseDir, LS)}:0`);
  });

  afterAll(async () => {
    owner?.kill('SIGKILL');
    await Promise.all([h1, ...clones].filter(Boolean).map((h) => stopHost(h, 'SIGKILL')));
    await stopSanlockDaemon(sl);
    removeTempDir(base);
  });

  /** One attempt by the sanlock host to take r1: true if it got it (then it is let go again). */
  async function sanlockTakes(): Promise<boolean> {
    const h = sanlockCommand(sl, res, ['/bin/sleep', '600']);
    let timer: NodeJS.Timeout | undefined;
    const ended = await Promise.race([h.done.then(() => true), new Promise<false>((r) => { timer = setTimeout(() => r(false), 8000); })]);
    clearTimeout(timer);
    if (ended) return false;
    const st = await sanlockClient(sl, ['status'], 5000);
    const holds = new RegExp(`^r ${LS}:r1:.* p ${h.pid}`, 'm').test(st.stdout);
    await killHolder(h);
    return holds;
  }

  it.each([
    ['the same host name (a clone)', 'node01'],
    ['another host name', 'node77'],
  ])('with %s: refuses to join, keeps refusing; host 1 and its owner untouched; sanlock host refused', async (_what, hostName) => {
    const gen1 = await waitJoined(h1);
    const clone = startHost(writeHostConfig(path.join(base, `clone-${hostName}`), 1, { leaseDir, hostName }));
    clones.push(clone);
    // Refused, with the live host named, at least twice (the join loop retries and watches again).
    await waitFor('the clone to refuse twice', async () =>
      (log(clone).match(/being renewed by another live host \(node "node01"/g) ?? []).length >= 2 || undefined, 60000, 500);
    if (hostName === 'node01') expect(log(clone)).toMatch(/duplicate host_id\/host_name/);
    const cs = await status(clone);
    expect(cs.lockspaces.find((l) => l.name === LS)?.state).not.toBe('joined');
    // Meanwhile the sanlock host cannot take r1.
    expect(await sanlockTakes()).toBe(false);
    // Host 1 was never disturbed: same generation, still joined, owner alive and holding r1.
    const s1 = await status(h1);
    expect(s1.lockspaces.find((l) => l.name === LS)).toMatchObject({ state: 'joined', generation: gen1 });
    expect(s1.owners.find((o) => o.uuid === 'owner-1')?.leases.map((l) => l.resource)).toEqual(['r1']);
    expect(owner.exitCode).toBeNull();
    expect(owner.signalCode).toBeNull();
    expect(log(h1)).not.toMatch(/lockspace __LIBVIRT__DISKS__ lost/);
    await stopHost(clone, 'SIGKILL');
  });
});
