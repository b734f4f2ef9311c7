/**
 * Several real lockagent daemons as hosts over one lease directory (io_timeout 1), driven
 * through the CLI and the socket: config errors, join, contention, kill -9 and restart with
 * leases held.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120000);

describe('lockagent daemons as hosts over one directory', () => {
  let base: string;
  let leaseDir: string;
  const hosts: AgentHost[] = [];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    base = makeTempDir('la-daemons-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    for (const r of ['r1', 'r2']) {
      sparseFile(path.join(leaseDir, r), 1048576);
      expect((await lockagent(['direct', 'init', '-r', `${LS}:${r}:${path.join(leaseDir, r)}:0`])).code).toBe(0);
    }
    for (const id of [1, 2, 3]) hosts.push(startHost(writeHostConfig(base, id, { leaseDir })));
    await Promise.all(hosts.map((h) => waitJoined(h)));
  });

  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await Promise.all(hosts.map((h) => stopHost(h, 'SIGKILL')));
    removeTempDir(base);
  });

  const res = (r: string) => `${LS}:${r}:${path.join(leaseDir, r)}:0`;

  it('refuses bad configs with the reason and the nearest key', async () => {
    const bad = writeHostConfig(base, 9, { leaseDir, extra: 'host_idd = 4' });
    const r = await lockagent(['config', 'check', '-c', bad.conf]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown key "host_idd"; did you mean "host_id"\?/);
    const noId = writeHostConfig(base, 0, { leaseDir });
    const d = await lockagent(['daemon', '-c', noId.conf], { timeoutMs: 20000 });
    expect(d.code).not.toBe(0);
    expect(d.stderr).toMatch(/no host ID is set/);
  });

  it('every host sees the others LIVE', async () => {
    await waitFor('all hosts LIVE on host 3', async () => {
      const r = await cli(hosts[2], ['host_status', '--json']);
      const list = JSON.parse(r.stdout)[0].hosts as Array<{ hostId: number; state: string; ownerName: string }>;
      return [1, 2, 3].every((id) => list.some((h) => h.hostId === id && h.state === 'LIVE')) ? list : undefined;
    }, 20000, 500);
  });

  it('contention: one holder at a time, the refusal names the holder, release lets the other in', async () => {
    const a = await cli(hosts[0], ['client', 'acquire', '-r', res('r1'), '--owner', 'vm-a', '--name', 'vmA']);
    expect(a.code).toBe(0);
    const b = await cli(hosts[1], ['client', 'acquire', '-r', res('r1'), '--owner', 'vm-b', '--name', 'vmB']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/lease .*r1 is leased by host 1 \(node node01\), last renewal \d+ s ago/);
    expect((await cli(hosts[0], ['client', 'release', '--owner', 'vm-a'])).code).toBe(0);
    const b2 = await cli(hosts[1], ['client', 'acquire', '-r', res('r1'), '--owner', 'vm-b', '--name', 'vmB']);
    expect(b2.code).toBe(0);
    expect(b2.stdout).toMatch(/:2\n$/); // lver 2
    expect((await cli(hosts[1], ['client', 'release', '--owner', 'vm-b'])).code).toBe(0);
  });

  it('kill -9 and restart with a lease held: re-adopted at once, never released, never doubly held', async () => {
    const owner = spawn('sleep', ['600']);
    children.push(owner);
    const h1 = hosts[0];
    expect((await cli(h1, ['client', 'acquire', '-r', res('r2'), '--owner', 'vm-k', '--name', 'vmK', '--pid', String(owner.pid)])).code).toBe(0);
    const genBefore = (await status(h1)).lockspaces[0].generation!;
    await stopHost(h1, 'SIGKILL');
    // While host 1 is down its lease must stay held: host 2 is refused.
    // (host_dead is 68 s at io_timeout 1: host 2 would wait that long; it gives up after 4 s.)
    const during = await cli(hosts[1], ['client', 'acquire', '-r', res('r2'), '--owner', 'vm-x', '--name', 'vmX', '--timeout', '4']);
    expect(during.code).toBe(1);
    expect(during.stderr).toMatch(/host 1 \(node node01\)/);
    startHost(h1);
    const gen = await waitJoined(h1);
    // Restarted within 8 x io_timeout on the same boot: the delta lease is continued, not re-acquired
    // (a new generation would tell waiting hosts our leases are free).
    expect(gen).toBe(genBefore);
    const adopted = await waitFor('lease re-adopted', async () => {
      const s = await status(h1);
      return s.owners.find((o) => o.uuid === 'vm-k' && o.leases.some((l) => l.resource === 'r2'));
    });
    expect(adopted.leases[0].lver).toBeGreaterThan(1);
    const dump = await lockagent(['direct', 'dump', path.join(leaseDir, 'r2')]);
    expect(dump.stdout).toMatch(new RegExp(`r2 \\d{10} 0001 ${String(gen).padStart(4, '0')}`));
    const after = await cli(hosts[1], ['client', 'acquire', '-r', res('r2'), '--owner', 'vm-x', '--name', 'vmX']);
    expect(after.code).toBe(1);
    expect(log(h1)).not.toMatch(/released .*r2/);
    expect(owner.exitCode).toBeNull();
  });
});
