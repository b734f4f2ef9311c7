/**
 * Live migration with leases, end to end: two libvirt hosts on this machine (test bed:
 * test/helpers/libvirthosts.ts; host A = host_id 1, host B = host_id 2, each libvirtd in its own
 * mount namespace with its own lockagent and hook) on one lease directory, and a real sanlock
 * 3.8.5 daemon as host 3. Guests are tiny TCG domains (16 MiB, no OS, -no-reboot).
 *
 * Covered: `virsh migrate --live` A → B (default, client-driven) and B → A (--p2p): the domain
 * ends running on the destination, which holds every disk lease (leader owner = its host_id)
 * while the source holds none; the destination took the lease only after the source released
 * it; host 3 is refused before and after. The timeline (source release → destination acquire,
 * and destination CPU start → acquire) is printed. Failure paths: domjobabort mid-way,
 * destination agent down, destination not joined — the domain keeps running on the source with
 * its lease, and the error says why. Offline migration takes no lease, and leaves no incoming
 * mark behind (a later start on the destination goes through the start gate).
 */
import { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cli, log, waitFor, waitJoined } from '../helpers/agentproc';
import { RunResult } from '../helpers/cli';
import { defineDomain, EventMonitor, md5, SanlockHost, stopSanlock, TestDomain } from '../helpers/libvirt';
import {
  Bed, describeBed, diskLease, freePort, hostDomState, hostHolds, hostQemuPid, hvirsh, hvirshOk, LibvirtHost, libvirtdLog, sanlockTries, startAgent, startBed,
  startSanlockHost, stopAgent, stopBed,
} from '../helpers/libvirthosts';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(180_000);

describeBed('migration: virsh migrate --live between two libvirt hosts, leases follow the domain', () => {
  let bed: Bed | undefined;
  let A: LibvirtHost;
  let B: LibvirtHost;
  let S: SanlockHost | undefined;
  let dom: TestDomain;
  const monitors: EventMonitor[] = [];
  const extra: ChildProcess[] = [];

  const leaseFile = (d: TestDomain) => diskLease(bed!, d.disk).file;
  const res = (d: TestDomain) => diskLease(bed!, d.disk).res;
  /** The disk lease's leader on disk: owner host_id and timestamp (0 = free). */
  const leader = (d: TestDomain) => diskLease(bed!, d.disk).leader();
  const held = hostHolds;
  /** Host 3 (sanlock) tries the disk lease: it must be refused while a live host holds it. */
  const host3Tries = (d: TestDomain) => sanlockTries(S!, res(d));
  const migrate = async (from: LibvirtHost, to: LibvirtHost, d: TestDomain, flags: string[] = []): Promise<RunResult> =>
    hvirsh(from, ['migrate', '--live', '--unsafe', ...flags, d.name, to.uri, '--migrateuri', `tcp://127.0.0.1:${await freePort(to)}`], 120_000);

  /** ISO time of the first line of `text` matching `re`, as epoch ms. */
  const timeOf = (text: string, re: RegExp): number | undefined => {
    const line = text.split('\n').find((l) => re.test(l));
    if (!line) return undefined;
    const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d\.\d+)(Z|\+0000)?/.exec(line);
    return m ? Date.parse(`${m[1]}T${m[2]}Z`) : undefined;
  };
  const since = (text: string, at: number) => text.slice(at);

  beforeAll(async () => {
    bed = await startBed(2);
    [A, B] = bed.hosts;
    for (const h of bed.hosts) monitors.push(new EventMonitor(h.uri).start(path.join(h.dir, 'events.log')));
    S = await startSanlockHost(bed, 3, 'node03');
    dom = await defineDomain(bed.dir, 'la-mig-1', { uri: A.uri, memoryMiB: 16, noReboot: true });
  }, 600_000);

  afterAll(async () => {
    for (const m of monitors) m.stop();
    for (const p of extra) p.kill('SIGKILL');
    await stopSanlock(S).catch(() => undefined);
    await stopBed(bed);
  }, 180_000);

  it('host A runs the domain holding its disk lease; host 3 (sanlock) is refused', async () => {
    const r = await hvirsh(A, ['start', dom.name]);
    expect(r.stderr).toBe('');
    expect(await hostDomState(A, dom.name)).toMatch(/^running/);
    expect(await held(A, dom)).toBeDefined();
    expect(leader(dom)).toMatchObject({ ownerId: 1 });
    expect(await host3Tries(dom)).toMatch(/-243/);
  });

  const liveMigration = (title: string, src: () => LibvirtHost, dst: () => LibvirtHost, flags: string[]) => it(title, async () => {
    const from = src();
    const to = dst();
    const lverBefore = leader(dom).lver;
    const at = { src: log(from.agent).length, dst: log(to.agent).length, lv: libvirtdLog(to).length };
    const evAt = monitors[to.id - 1].mark();

    const r = await migrate(from, to, dom, flags);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);

    expect(await hostDomState(to, dom.name)).toMatch(/^running/);
    expect(await hostDomState(from, dom.name)).toMatch(/^(shut off|absent)/);
    expect(hostQemuPid(to, dom.name)).toBeDefined();
    // The destination holds every disk lease (on disk: leader owner = its host_id), the source none.
    await waitFor(`host ${to.id} to hold the lease`, () => held(to, dom), 20_000, 50);
    expect(await held(from, dom)).toBeUndefined();
    const l = leader(dom);
    expect(l.ownerId).toBe(to.id);
    expect(l.timestamp).not.toBe(0);
    expect(l.lver).toBeGreaterThan(lverBefore);

    // Never two holders: the destination's acquire completed after the source's release did.
    // Measured by the agents' log lines, each written when its event loop has processed the
    // completion: the source's line comes after its release is on disk, by however long its
    // event loop takes to get there (several ms on the loaded 2-core CI machine: a run saw the
    // destination's line 5 ms before it). The destination cannot acquire before that write
    // (the lease is held by a live host until then: -243); what this checks is that it did not
    // take the lease while the source still held it, i.e. not long before the source let go.
    const LOG_LAG_MS = 100;
    const srcLog = since(log(from.agent), at.src);
    const dstLog = since(log(to.agent), at.dst);
    const released = timeOf(srcLog, new RegExp(`${dom.name} paused \\(SUSPENDED/MIGRATED\\): released`));
    const acquired = timeOf(dstLog, new RegExp(`acquired exclusive lease ${LS}:${md5(dom.disk)} .* for ${dom.name}`));
    expect(released).toBeDefined();
    expect(acquired).toBeDefined();
    expect(acquired!).toBeGreaterThanOrEqual(released! - LOG_LAG_MS);
    // Who took it — the destination's watch (the source's release seen on disk, usually before its
    // CPUs start) or, when the machine is loaded, the RESUMED/MIGRATED event — is a timing
    // figure, reported below and in docs/libvirt-integration.md; exactly one of the two did.
    const byWatch = new RegExp(`${dom.name}: incoming migration: took its 1 lease\\(s\\)`).test(dstLog);
    const byResume = /resumed after incoming migration: .*\(taken after it resumed\)/.test(dstLog);
    expect(byWatch || byResume).toBe(true);
    const resumed = /resumed after incoming migration: .*\((taken (before|after) it resumed)\)/.exec(dstLog)?.[1];
    // libvirtd's own "CPUs start" moment (libvirt's sanlock driver acquires right there).
    const cpus = timeOf(since(libvirtdLog(to), at.lv), /qemuProcessStartCPUs/);
    const ev = monitors[to.id - 1].find(dom.name, /^Resumed Migrated/, evAt);
    console.log(`migration ${from.id} → ${to.id} ${flags.join(' ') || '(default)'}: source released at +0 ms; destination acquired at +${acquired! - released!} ms; ` +
      `destination CPUs started at ${cpus !== undefined ? `+${cpus - released!} ms` : '?'} (RESUMED event seen at ${ev ? `+${ev.at - released!} ms` : '?'}); ` +
      `window (acquire − CPU start) ${cpus !== undefined ? `${acquired! - cpus} ms` : '?'}; taken by ${byWatch ? 'the watch' : 'RESUMED'}; agent says: ${resumed ?? '?'}`);
    expect(await host3Tries(dom)).toMatch(/-243/);
  });

  liveMigration('virsh migrate --live A → B: running on B, B holds the lease (owner 2), A none, never both', () => A, () => B, []);
  liveMigration('virsh migrate --live --p2p B → A: back on A, A holds the lease (owner 1), B none', () => B, () => A, ['--p2p']);

  it('destination agent down: migration refused (the error says lockagent is not running); the domain keeps running on A with its lease', async () => {
    await stopAgent(B);
    try {
      const r = await migrate(A, B, dom);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/migrate begin[\s\S]*lockagent: lockagent is not running/);
      expect(await hostDomState(A, dom.name)).toMatch(/^running/);
      expect(await hostDomState(B, dom.name)).toMatch(/^(shut off|absent)/);
      expect(await held(A, dom)).toBeDefined();
      expect(leader(dom)).toMatchObject({ ownerId: 1 });
    } finally {
      startAgent(B);
      await waitJoined(B.agent);
    }
  });

  it('destination not joined to the lockspace: migration refused naming the lockspace; the domain keeps running on A', async () => {
    const lsArg = `${LS}:2:${path.join(bed!.leaseDir, LS)}:0`;
    expect((await cli(B.agent, ['client', 'rem_lockspace', '-s', lsArg])).code).toBe(0);
    try {
      const r = await migrate(A, B, dom);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/lockagent: cannot accept the incoming migration of la-mig-1: lockspace __LIBVIRT__DISKS__ is not joined on this host/);
      expect(await hostDomState(A, dom.name)).toMatch(/^running/);
      expect(await held(A, dom)).toBeDefined();
      expect(leader(dom)).toMatchObject({ ownerId: 1 });
    } finally {
      expect((await cli(B.agent, ['client', 'add_lockspace', '-s', lsArg])).code).toBe(0);
      await waitJoined(B.agent);
    }
  });

  it('migration cancelled mid-way (domjobabort): still running on A with its lease; B took nothing and stopped watching', async () => {
    // A guest with 8 MiB of random data in RAM, migrated at 1 MiB/s: it takes seconds, so the abort lands mid-way.
    const blob = path.join(bed!.dir, 'random.bin');
    fs.writeFileSync(blob, Buffer.from(Array.from({ length: 8 << 20 }, () => (Math.random() * 256) | 0)));
    const slow = await defineDomain(bed!.dir, 'la-mig-2', { uri: A.uri, memoryMiB: 32, noReboot: true, qemuArgs: ['-device', `loader,file=${blob},addr=0x1000000`] });
    await hvirshOk(A, ['start', slow.name]);
    await waitFor('A to hold the lease of la-mig-2', () => held(A, slow), 20_000, 50);
    const lver = leader(slow).lver;
    const at = log(B.agent).length;
    const mig = migrate(A, B, slow, ['--bandwidth', '1']);
    await waitFor('the migration to be under way', async () => /Data processed:\s+[1-9]/.test((await hvirsh(A, ['domjobinfo', slow.name])).stdout) || undefined, 30_000, 50);
    await hvirshOk(A, ['domjobabort', slow.name]);
    const r = await mig;
    expect(r.code).toBe(1);
    // libvirt names the cancel, or (the destination QEMU closing first) the broken stream
    expect(r.stderr).toMatch(/cancel|abort|qemu unexpectedly closed the monitor/i);
    expect(await hostDomState(A, slow.name)).toMatch(/^running/);
    expect(await held(A, slow)).toBeDefined();
    expect(leader(slow)).toMatchObject({ ownerId: 1, lver });
    await waitFor('B to drop the incoming domain', async () => /^(shut off|absent)/.test(await hostDomState(B, slow.name)) || undefined, 20_000, 100);
    expect(await held(B, slow)).toBeUndefined();
    const bLog = since(log(B.agent), at);
    expect(bLog).toMatch(/la-mig-2: incoming migration; watching its 1 lease/);
    expect(bLog).not.toMatch(/la-mig-2: incoming migration: took/);
    await hvirshOk(A, ['destroy', slow.name]);
  });

  it('offline migration (--offline --persistent) takes no lease, and a later start on B goes through the start gate', async () => {
    const off = await defineDomain(bed!.dir, 'la-mig-3', { uri: A.uri, memoryMiB: 16, noReboot: true });
    const at = log(B.agent).length;
    const r = await hvirsh(A, ['migrate', '--offline', '--persistent', off.name, B.uri]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await hostDomState(B, off.name)).toMatch(/^shut off/);
    expect(await held(A, off)).toBeUndefined();
    expect(await held(B, off)).toBeUndefined();
    expect(fs.existsSync(leaseFile(off)) ? leader(off).timestamp : 0).toBe(0);
    // A start long after `migrate begin` is a plain start: its lease is taken at `prepare`, before QEMU runs.
    await hvirshOk(B, ['start', off.name]);
    expect(await held(B, off)).toBeDefined();
    const bLog = since(log(B.agent), at);
    expect(bLog).not.toMatch(/la-mig-3: incoming migration/);
    expect(bLog).not.toMatch(/la-mig-3 resumed after incoming migration/);
    await hvirshOk(B, ['destroy', off.name]);
  });
});
