/**
 * Lease areas for fewer hosts than the geometry allows (num_hosts 250 on 512/1M, where
 * max_hosts is 2000): made by `sanlock direct init -n 250` and by `lockagent direct init -n 250`
 * they are the same bytes and the same leader fields; a real sanlock daemon (host 1) and a
 * lockagent daemon with max_hosts = 250 (host 3) contend on both correctly; a host_id above 250
 * is refused by both tools (-228), so no host ever writes a dblock beyond what the leader
 * says the area holds, which is all that an acquire reads (docs/engine.md).
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, startHost, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { cliEntry, lockagent, makeTempDir, readLeaderOf, removeTempDir, sanlock, sparseFile } from '../helpers/cli';
import {
  addLockspace, describeSanlockDaemons, Holder, holdWithSleep, killHolder, killSanlockDaemon, SanlockDaemon,
  sanlockCommand, startSanlockDaemon, stopSanlockDaemon,
} from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

describeSanlockDaemons('250-host lease areas shared by sanlock and lockagent', () => {
  let base: string;
  let leaseDir: string;
  let sl: SanlockDaemon | undefined;
  let la: AgentHost | undefined;
  const holders: Holder[] = [];
  const file = (r: string) => path.join(leaseDir, r);
  const res = (r: string) => `${LS}:${r}:${file(r)}:0`;
  const leaderOf = (r: string) => readLeaderOf(file(r));

  beforeAll(async () => {
    cliEntry();
    base = makeTempDir('la-maxhosts');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const lsPath = sparseFile(file(LS), 1048576);
    expect((await sanlock(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    sparseFile(file('BY_SANLOCK'), 1048576);
    expect((await sanlock(['direct', 'init', '-r', res('BY_SANLOCK'), '-n', '250'])).stdout).toBe('init done 0\n');
    sparseFile(file('BY_LOCKAGENT'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res('BY_LOCKAGENT'), '-n', '250'])).stdout).toBe('init done 0\n');
    sl = await startSanlockDaemon(base, 'sanlockA');
    la = startHost(writeHostConfig(base, 3, { leaseDir, ioTimeout: 1, hostName: 'lockagent3', extra: 'max_hosts = 250' }));
    await Promise.all([addLockspace(sl, `${LS}:1:${lsPath}:0`, 1), waitJoined(la, LS, 30_000)]);
  });

  afterAll(async () => {
    for (const h of holders) await killHolder(h).catch(() => undefined);
    if (la) await stopHost(la, 'SIGKILL').catch(() => undefined);
    if (sl) await stopSanlockDaemon(sl).catch(() => undefined);
    if (sl) await killSanlockDaemon(sl).catch(() => undefined);
    removeTempDir(base);
  });

  it('both inits write the same area; sanlock read_leader shows num_hosts 250, max_hosts 2000', async () => {
    const a = fs.readFileSync(file('BY_SANLOCK'));
    const b = fs.readFileSync(file('BY_LOCKAGENT'));
    // the names differ: compare everything but the resource name and the checksum
    for (const buf of [a, b]) buf.fill(0, 104, 172);
    expect(a.equals(b)).toBe(true);
    for (const r of ['BY_SANLOCK', 'BY_LOCKAGENT']) {
      const out = (await sanlock(['direct', 'read_leader', '-r', res(r)])).stdout;
      expect(out).toMatch(/^num_hosts 250$/m);
      expect(out).toMatch(/^max_hosts 2000$/m);
      expect(out).toMatch(/read_leader done 0/);
      expect((await lockagent(['direct', 'read_leader', '-r', res(r)])).stdout).toBe(out);
    }
  });

  it.each(['BY_SANLOCK', 'BY_LOCKAGENT'])('%s: one holds, the other is refused; after release the other acquires', async (r) => {
    // sanlock holds -> lockagent refused (-243)
    const h = await holdWithSleep(sl!, res(r));
    holders.push(h);
    const refused = await cli(la!, ['client', 'acquire', '-r', res(r), '--owner', 'o-3', '--name', 'o3']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/leased by host 1 \(node sanlockA\).*sanlock -243/);
    const l1 = leaderOf(r);
    expect(l1).toMatchObject({ ownerId: 1, numHosts: 250 });

    // sanlock releases -> lockagent acquires
    await killHolder(h);
    await waitFor(`sanlock to release ${r}`, async () => leaderOf(r).timestamp === 0 || undefined, 10_000);
    expect((await cli(la!, ['client', 'acquire', '-r', res(r), '--owner', 'o-3', '--name', 'o3'])).code).toBe(0);
    expect(leaderOf(r)).toMatchObject({ ownerId: 3, lver: l1.lver + 1, numHosts: 250 });

    // lockagent holds -> sanlock refused (-243); released -> sanlock acquires
    const s = sanlockCommand(sl!, res(r), ['/bin/true']);
    holders.push(s);
    const out = await s.done;
    expect(out.output).toMatch(/acquire done -243/);
    expect(leaderOf(r)).toMatchObject({ ownerId: 3 });
    expect((await cli(la!, ['client', 'release', '--owner', 'o-3'])).code).toBe(0);
    const s2 = sanlockCommand(sl!, res(r), ['/bin/true']);
    expect((await s2.done).code).toBe(0);
    expect(leaderOf(r)).toMatchObject({ ownerId: 1, lver: l1.lver + 2, numHosts: 250 });
    await waitFor(`sanlock to release ${r}`, async () => leaderOf(r).timestamp === 0 || undefined, 10_000);
  });

  it('a host_id above num_hosts is refused by both tools with -228 and writes nothing', async () => {
    for (const r of ['BY_SANLOCK', 'BY_LOCKAGENT']) {
      const before = fs.readFileSync(file(r));
      const s = await sanlock(['direct', 'acquire', '-r', res(r), '-i', '251', '-g', '1']);
      expect(s.stdout).toMatch(/acquire done -228/);
      const l = await lockagent(['direct', 'acquire', '-r', res(r), '-i', '251', '-g', '1']);
      expect(l.stdout).toMatch(/acquire done -228/);
      expect(fs.readFileSync(file(r)).equals(before)).toBe(true);
    }
  });
});
