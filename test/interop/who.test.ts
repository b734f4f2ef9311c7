/**
 * `lockagent who` against what sanlock itself says: a real sanlock 3.8.5 daemon (host 1,
 * "sanlockA") and a real lockagent (host 3, "lockagent3") in one __LIBVIRT__DISKS__ lockspace
 * (io_timeout 1). For leases held by either, `who` names the same holder, generation and lver
 * as `sanlock direct read_leader -r`, and the same host name and generation as
 * `sanlock client host_status`; through the agent and without one; by disk, by domain, by -r;
 * free and shared leases too.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, startHost, stopHost, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { cliEntry, lockagent, makeTempDir, removeTempDir, sanlock, sparseFile } from '../helpers/cli';
import {
  addLockspace, describeSanlockDaemons, Holder, holdWithSleep, hostStatus, killHolder, killSanlockDaemon, SanlockDaemon,
  startSanlockDaemon, stopSanlockDaemon, waitHostState,
} from '../helpers/sanlockd';
import { md5hex } from '../../src/libvirt/leaseplan';
import type { WhoResult } from '../../src/cli/who';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

describeSanlockDaemons('lockagent who agrees with sanlock', () => {
  let base: string;
  let leaseDir: string;
  let lsPath: string;
  let disk: string;
  let sl: SanlockDaemon;
  let la: AgentHost;
  /** a config for the same directory with no agent behind its socket */
  let noAgentConf: string;
  const holders: Holder[] = [];
  const res = (r: string, sh = false) => `${LS}:${r}:${path.join(leaseDir, r)}:0${sh ? ':SH' : ''}`;

  const readLeader = async (r: string): Promise<Record<string, string>> => {
    const out = await sanlock(['direct', 'read_leader', '-r', res(r)]);
    expect(out.stdout).toMatch(/read_leader done 0/);
    return Object.fromEntries([...out.stdout.matchAll(/^(\w+) (.*)$/gm)].map((m) => [m[1], m[2]]));
  };
  const whoJson = async (args: string[], conf: string): Promise<WhoResult[]> => {
    const r = await lockagent(['who', ...args, '--json', '-c', conf], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`who ${args.join(' ')}: rc ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as WhoResult[];
  };

  /** An acquire through the agent that must succeed; a failure shows the CLI's error line. */
  const acquireOk = async (args: string[]) => {
    const r = await cli(la, args);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  };

  beforeAll(async () => {
    cliEntry();
    base = makeTempDir('la-who-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    lsPath = sparseFile(path.join(leaseDir, LS), 1048576);
    expect((await sanlock(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    for (const r of ['R1', 'R2', 'R3', 'R4']) {
      const f = sparseFile(path.join(leaseDir, r), 1048576);
      expect((await sanlock(['direct', 'init', '-r', `${LS}:${r}:${f}:0`])).stdout).toBe('init done 0\n');
    }
    disk = path.join(base, 'disk1.img');
    fs.writeFileSync(disk, '');
    const diskLease = sparseFile(path.join(leaseDir, md5hex(disk)), 1048576);
    expect((await sanlock(['direct', 'init', '-r', `${LS}:${md5hex(disk)}:${diskLease}:0`])).stdout).toBe('init done 0\n');

    sl = await startSanlockDaemon(base, 'sanlockA');
    la = startHost(writeHostConfig(base, 3, { leaseDir, ioTimeout: 1, hostName: 'lockagent3' }));
    await Promise.all([addLockspace(sl, `${LS}:1:${lsPath}:0`, 1), waitJoined(la, LS, 30_000)]);
    await waitHostState(sl, LS, 3, 'LIVE', 30_000);
    noAgentConf = writeHostConfig(base, 9, { leaseDir, ioTimeout: 1 }).conf;

    holders.push(await holdWithSleep(sl, res('R1')));
    await acquireOk(['client', 'acquire', '-r', res('R2'), '--owner', 'u-vm2', '--name', 'vm2']);
    await acquireOk(['client', 'acquire', '-r', `${LS}:${md5hex(disk)}:${diskLease}:0`, '--owner', 'u-vm1', '--name', 'vm1']);
    holders.push(await holdWithSleep(sl, res('R4', true)));
    await acquireOk(['client', 'acquire', '-r', res('R4', true), '--owner', 'u-vm4', '--name', 'vm4']);
  });

  afterAll(async () => {
    for (const h of holders) await killHolder(h).catch(() => undefined);
    if (la) await stopHost(la, 'SIGKILL').catch(() => undefined);
    await stopSanlockDaemon(sl).catch(() => undefined);
    await killSanlockDaemon(sl).catch(() => undefined);
    removeTempDir(base);
  });

  it('a lease held by sanlock: the holder, generation and lver of read_leader, the name and generation of host_status', async () => {
    const leader = await readLeader('R1');
    const hs = (await hostStatus(sl, LS)).find((h) => h.hostId === 1)!;
    for (const conf of [la.conf, noAgentConf]) {
      const [w] = await whoJson(['-r', res('R1')], conf);
      expect(w).toMatchObject({ state: 'held', mode: 'exclusive', lver: Number(leader.lver) });
      expect(w.holder).toMatchObject({
        hostId: Number(leader.owner_id), leaseGeneration: Number(leader.owner_generation), leaderTimestamp: Number(leader.timestamp),
        name: hs.ownerName, generation: hs.ownerGeneration, state: 'LIVE',
      });
      expect(w.holder!.name).toBe('sanlockA');
      expect(w.holder!.thisHost).toBeFalsy();
      expect(Date.parse(w.holder!.since!)).toBeLessThanOrEqual(Date.now());
    }
  });

  it('a lease held by lockagent: agrees with read_leader and with what sanlock sees of host 3', async () => {
    const leader = await readLeader('R2');
    const hs = (await hostStatus(sl, LS)).find((h) => h.hostId === 3)!;
    const [viaAgent] = await whoJson(['-r', res('R2')], la.conf);
    const [direct] = await whoJson(['-r', res('R2')], noAgentConf);
    for (const w of [viaAgent, direct]) {
      expect(w.holder).toMatchObject({
        hostId: Number(leader.owner_id), leaseGeneration: Number(leader.owner_generation), leaderTimestamp: Number(leader.timestamp),
        name: hs.ownerName, generation: hs.ownerGeneration, state: 'LIVE',
      });
    }
    expect(viaAgent.holder!.name).toBe('lockagent3');
    expect(viaAgent.holder!.thisHost).toBe(true);
    expect(viaAgent.owners).toEqual([{ uuid: 'u-vm2', name: 'vm2' }]);
    expect(direct.owners).toBeUndefined();
  });

  it('by disk and by domain, in one line', async () => {
    const byDisk = await lockagent(['who', disk, '-c', la.conf]);
    expect(byDisk.code).toBe(0);
    expect(byDisk.stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect(byDisk.stdout).toMatch(new RegExp(`^${LS}:${md5hex(disk)} \\(disk ${disk}\\): held exclusive by host 3 "lockagent3" \\(LIVE.*this host\\).*since .*; owner vm1 \\(u-vm1\\)$`, 'm'));
    const byDomain = await lockagent(['who', 'vm1', '-c', la.conf]);
    const age = (t: string) => t.replace(/renewal seen \d+ s ago/, 'renewal seen N s ago');
    expect(age(byDomain.stdout)).toBe(age(byDisk.stdout.replace(` (disk ${disk})`, '')));
    const noAgent = await lockagent(['who', 'vm1', '-c', noAgentConf]);
    expect(noAgent.code).toBe(2);
    expect(noAgent.stderr).toMatch(/names a domain.*only the running agent knows/);
  });

  it('a free lease and a shared one', async () => {
    const [free] = await whoJson(['-r', res('R3')], la.conf);
    expect(free).toMatchObject({ state: 'free', lver: 0 });
    const [sh] = await whoJson(['-r', res('R4')], la.conf);
    expect(sh).toMatchObject({ state: 'held', mode: 'shared' });
    expect(sh.shared!.map((s) => [s.hostId, s.name, s.state])).toEqual([[1, 'sanlockA', 'LIVE'], [3, 'lockagent3', 'LIVE']]);
    const text = await lockagent(['who', '-r', res('R4'), '-c', la.conf]);
    expect(text.stdout).toMatch(/held shared by host 1 "sanlockA" \(LIVE.*\), host 3 "lockagent3" \(LIVE.*this host\); owner vm4 \(u-vm4\)/);
  });
});
