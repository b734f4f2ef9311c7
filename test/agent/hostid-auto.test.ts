/**
 * host_id = "auto": eight agents started at once on one lease directory, beside a real sanlock
 * 3.8.5 daemon with a fixed host_id, each claim a distinct free slot through the normal delta
 * acquire (never the sanlock host's), with no renewal conflict (-260/-261) anywhere, and keep
 * their ids — and generations — over kill -9 and restart.
 */
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir } from '../helpers/cli';
import { AgentHost, log, startHost, status, stopHost, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { addLockspace, describeSanlockDaemons, getsHosts, SanlockDaemon, startSanlockDaemon, stopSanlockDaemon } from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
const N = 8;
jest.setTimeout(240000);

describeSanlockDaemons('host_id = auto', () => {
  let base: string;
  let leaseDir: string;
  let sl: SanlockDaemon;
  const hosts: AgentHost[] = [];

  beforeAll(async () => {
    base = makeTempDir('la-autoid-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const lsPath = path.join(leaseDir, LS);
    fs.writeFileSync(lsPath, Buffer.alloc(0));
    fs.truncateSync(lsPath, 1048576);
    expect((await lockagent(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).code).toBe(0);
    // A sanlock host with a fixed id in the low range that auto hosts would otherwise choose.
    sl = await startSanlockDaemon(base, 'sanlock3');
    await addLockspace(sl, `${LS}:3:${lsPath}:0`);
  });

  afterAll(async () => {
    await Promise.all(hosts.map((h) => stopHost(h, 'SIGKILL')));
    await stopSanlockDaemon(sl);
    removeTempDir(base);
  });

  const ids = async () => Promise.all(hosts.map(async (h) => {
    const ls = (await status(h)).lockspaces.find((l) => l.name === LS) as unknown as { hostId: number; generation?: number };
    return { hostId: ls.hostId, generation: ls.generation };
  }));

  it('eight agents at once get eight distinct ids, none taken from the sanlock host, and keep them over kill -9', async () => {
    for (let i = 1; i <= N; i++) {
      // writeHostConfig's host_id line is overridden by the later one (the last value wins).
      hosts.push(writeHostConfig(base, 100 + i, { leaseDir, hostName: `auto0${i}`, extra: 'host_id = "auto"' }));
    }
    hosts.forEach((h) => startHost(h));
    await Promise.all(hosts.map((h) => waitJoined(h, LS, 120000)));
    const first = await ids();
    const got = first.map((x) => x.hostId);
    expect(new Set(got).size).toBe(N);
    for (const id of got) {
      expect(id).toBeGreaterThanOrEqual(1);
      expect(id).toBeLessThanOrEqual(2000);
      expect(id).not.toBe(3);
    }
    // The sanlock host sees all of them alive, and itself untouched.
    const seen = await getsHosts(sl, LS);
    expect(seen.find((h) => h.hostId === 3)).toBeDefined();
    const all = hosts.map((h) => log(h)).join('\n');
    expect(all).not.toMatch(/-26[01]\b|RENEW_OWNER|RENEW_DIFF|now belongs to|changed on disk since our last write/);

    // kill -9 every agent, restart them all at once: same id, same generation (continued).
    await Promise.all(hosts.map((h) => stopHost(h, 'SIGKILL')));
    hosts.forEach((h) => startHost(h));
    await Promise.all(hosts.map((h) => waitJoined(h, LS, 120000)));
    const again = await ids();
    expect(again).toEqual(first);
    const after = hosts.map((h) => log(h)).join('\n');
    expect(after).not.toMatch(/-26[01]\b|RENEW_OWNER|RENEW_DIFF|now belongs to|changed on disk since our last write/);
    expect(after).toMatch(/remembered from our state/);
  });
});
