/**
 * The lock-driver plugin (native/lockdriver, lockagent.so) inside real libvirtd 9.0, end to end:
 * two libvirt hosts of the test bed (test/helpers/libvirthosts.ts) with `lock_manager =
 * "lockagent"` and no hook installed, one lease directory, and a real sanlock 3.8.5 daemon as
 * host 3. libvirtd calls the plugin where it calls its own sanlock driver: register in its child
 * before QEMU is exec'd, acquire before the CPUs start (start, resume, migration's finish),
 * release after a pause, inquire at a migration's begin.
 *
 * Covered: a start holds the disk lease and runs no hook process; a start while sanlock holds a
 * disk lease is refused with the agent's reason and leaves the domain shut off, and so is a start
 * on a host not joined to the lockspace (refused at registration, before QEMU runs); pause releases and
 * resume re-takes with the lver check (a stale lease keeps the guest paused, with the reason in
 * virsh's error); live migration A → B (and back with --p2p) moves the lease, never two holders;
 * a disk hot-plugged into a running domain gets its lease first, or is refused; a stop releases
 * every lease (no lock call from libvirt: the STOPPED event or QEMU's exit).
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cli, log, status, waitFor, waitJoined } from '../helpers/agentproc';
import { lockagent, readLeaderOf, SANLOCK, sparseFile } from '../helpers/cli';
import { defineDomain, md5, SanlockHost, sanlockClient, stopSanlock, TestDomain } from '../helpers/libvirt';
import {
  Bed, describeBed, diskLease, freePort, hostDomState, hostHolds, hvirsh, hvirshOk, LibvirtHost, libvirtdLog, sanlockTries, startBed, startSanlockHost, stopBed,
} from '../helpers/libvirthosts';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(180_000);

describeBed('lock-driver plugin: libvirtd calls lockagent.so, no hook', () => {
  let bed: Bed | undefined;
  let A: LibvirtHost;
  let B: LibvirtHost;
  let S: SanlockHost | undefined;
  let dom: TestDomain;

  const leaseFile = (d: TestDomain) => diskLease(bed!, d.disk).file;
  const res = (d: TestDomain) => diskLease(bed!, d.disk).res;
  /** The disk lease's leader on disk: owner host_id and timestamp (0 = free). */
  const leader = (d: TestDomain) => diskLease(bed!, d.disk).leader();
  const held = hostHolds;
  /** Host 3 (sanlock) tries the disk lease: it must be refused while a live host holds it. */
  const host3Tries = (d: TestDomain) => sanlockTries(S!, res(d));

  beforeAll(async () => {
    bed = await startBed(2, { lockDriver: true });
    [A, B] = bed.hosts;
    S = await startSanlockHost(bed, 3, 'node03');
    // ACPI: PCI hot-plug (the attach test) needs it
    dom = await defineDomain(bed.dir, 'la-ld-1', { uri: A.uri, memoryMiB: 16, noReboot: true, acpi: true });
  }, 600_000);

  afterAll(async () => {
    await stopSanlock(S).catch(() => undefined);
    await stopBed(bed);
  }, 180_000);

  it('a start on A holds the disk lease before the guest runs, with no hook process; sanlock (host 3) is refused', async () => {
    expect(fs.existsSync(path.join(A.dir, 'priv', 'etc', 'libvirt', 'hooks', 'qemu.d', '50-lockagent'))).toBe(false);
    const at = log(A.agent).length;
    const r = await hvirsh(A, ['start', dom.name]);
    expect(r.stderr).toBe('');
    expect(await hostDomState(A, dom.name)).toMatch(/^running/);
    expect(await held(A, dom)).toBeDefined();
    expect(leader(dom)).toMatchObject({ ownerId: 1 });
    expect(await host3Tries(dom)).toMatch(/-243/);
    expect(libvirtdLog(A)).not.toMatch(/Calling hook/);
    // taken by the plugin's acquire (before the CPUs started), not after the fact by an event
    expect(log(A.agent).slice(at)).not.toMatch(/was .* without all its leases/);
    // the owner is QEMU's process, as the plugin registered it
    const owner = (await cli(A.agent, ['status', '--json'])).stdout;
    expect((JSON.parse(owner) as { owners: Array<{ uuid: string; pid?: number }> }).owners.find((o) => o.uuid === dom.uuid)?.pid).toBeGreaterThan(1);
  });

  it('a start while sanlock (host 3) holds a disk lease is refused with the agent\'s reason and stays shut off; the start after its release works', async () => {
    const other = await defineDomain(bed!.dir, 'la-ld-2', { uri: B.uri, memoryMiB: 16, noReboot: true });
    sparseFile(leaseFile(other), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res(other)])).code).toBe(0);
    const holder = spawn(SANLOCK, ['client', 'command', '-r', res(other), '-c', '/bin/sleep', '600'], { env: S!.env, stdio: 'ignore' });
    try {
      await waitFor('sanlock to hold the disk lease', async () => (await sanlockClient(S!, ['status'])).stdout.includes(`r ${LS}:${md5(other.disk)}:`) || undefined, 20_000, 100);
      const r = await hvirsh(B, ['start', other.name]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/lockagent: disk .*la-ld-2\.qcow2 is leased by host 3 \(node node03\)/);
      console.log(`refused start, as virsh says it:\n${r.stderr}`);
      expect(await hostDomState(B, other.name)).toMatch(/^shut off/);
      expect((await status(B.agent)).owners.find((o) => o.uuid === other.uuid)?.leases ?? []).toHaveLength(0);
    } finally {
      holder.kill('SIGKILL');
    }
    await waitFor('sanlock to release the disk lease', async () => !(await sanlockClient(S!, ['status'])).stdout.includes(`r ${LS}:${md5(other.disk)}:`) || undefined, 20_000, 100);
    await hvirshOk(B, ['start', other.name]);
    expect(leader(other)).toMatchObject({ ownerId: 2 });
    await hvirshOk(B, ['destroy', other.name]);
  });

  it('a start on a host not joined to the lockspace is refused in libvirtd\'s child, before QEMU runs, naming the lockspace', async () => {
    const other = await defineDomain(bed!.dir, 'la-ld-3', { uri: B.uri, memoryMiB: 16, noReboot: true });
    const lsArg = `${LS}:2:${path.join(bed!.leaseDir, LS)}:0`;
    expect((await cli(B.agent, ['client', 'rem_lockspace', '-s', lsArg])).code).toBe(0);
    try {
      const r = await hvirsh(B, ['start', other.name]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/Lock Driver error : .*lockagent: cannot start la-ld-3: lockspace __LIBVIRT__DISKS__ is not joined on this host/);
      console.log(`refused registration, as virsh says it:\n${r.stderr}`);
      expect(await hostDomState(B, other.name)).toMatch(/^shut off/);
    } finally {
      expect((await cli(B.agent, ['client', 'add_lockspace', '-s', lsArg])).code).toBe(0);
    }
    await waitJoined(B.agent);
  });

  it('virsh start --paused takes no lease until the resume, which takes it before the CPUs run', async () => {
    const p = await defineDomain(bed!.dir, 'la-ld-4', { uri: B.uri, memoryMiB: 16, noReboot: true });
    await hvirshOk(B, ['start', '--paused', p.name]);
    expect(await hostDomState(B, p.name)).toMatch(/^paused/);
    await new Promise((r) => setTimeout(r, 500)); // its STARTED event handled
    expect(await held(B, p)).toBeUndefined();
    await hvirshOk(B, ['resume', p.name]);
    expect(await held(B, p)).toBeDefined();
    expect(diskLease(bed!, p.disk).leader()).toMatchObject({ ownerId: 2 });
    await hvirshOk(B, ['destroy', p.name]);
  });

  it('pause releases the lease, resume takes it again with the same lver', async () => {
    const lver = leader(dom).lver;
    await hvirshOk(A, ['suspend', dom.name]);
    await waitFor('the lease to be released on disk', async () => leader(dom).timestamp === 0 || undefined, 10_000, 50);
    expect(await held(A, dom)).toBeUndefined();
    await hvirshOk(A, ['resume', dom.name]);
    expect(await hostDomState(A, dom.name)).toMatch(/^running/);
    expect(await held(A, dom)).toBeDefined();
    expect(leader(dom)).toMatchObject({ ownerId: 1 });
    expect(leader(dom).lver).toBe(lver + 1);
  });

  it('a stale lease refuses the resume: the guest stays paused, virsh says why', async () => {
    await hvirshOk(A, ['suspend', dom.name]);
    await waitFor('the lease to be released on disk', async () => leader(dom).timestamp === 0 || undefined, 10_000, 50);
    // host 3 takes the disk and lets it go while the guest is paused on A
    expect(await host3Tries(dom)).toMatch(/^0 /);
    const r = await hvirsh(A, ['resume', dom.name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/lockagent: .*(lver|version)/i);
    console.log(`refused resume, as virsh says it:\n${r.stderr}`);
    expect(await hostDomState(A, dom.name)).toMatch(/^paused/);
    expect(await held(A, dom)).toBeUndefined();
    expect((await cli(A.agent, ['status'])).stdout).toMatch(/paused: stale lease/);
    await hvirshOk(A, ['destroy', dom.name]);
  });

  it('live migration A → B and back (--p2p) moves the lease, never two holders', async () => {
    await hvirshOk(A, ['start', dom.name]);
    expect(leader(dom)).toMatchObject({ ownerId: 1 });
    for (const [from, to, flags] of [[A, B, []], [B, A, ['--p2p']]] as Array<[LibvirtHost, LibvirtHost, string[]]>) {
      const lver = leader(dom).lver;
      const r = await hvirsh(from, ['migrate', '--live', '--unsafe', ...flags, dom.name, to.uri, '--migrateuri', `tcp://127.0.0.1:${await freePort(to)}`], 120_000);
      expect(r.stderr).toBe('');
      expect(await hostDomState(to, dom.name)).toMatch(/^running/);
      expect(await hostDomState(from, dom.name)).toMatch(/^(shut off|absent)/);
      expect(await held(to, dom)).toBeDefined();
      await waitFor(`host ${from.id} to forget the lease`, async () => (await held(from, dom)) === undefined || undefined, 10_000, 50);
      expect(leader(dom)).toMatchObject({ ownerId: to.id });
      expect(leader(dom).lver).toBeGreaterThan(lver);
      expect(await host3Tries(dom)).toMatch(/-243/);
    }
  });

  it('a disk hot-plugged into the running domain gets its lease before QEMU opens it; one whose lease sanlock holds is refused', async () => {
    const hot = path.join(bed!.dir, 'la-ld-hot.img');
    const busy = path.join(bed!.dir, 'la-ld-busy.img');
    for (const f of [hot, busy]) sparseFile(f, 1048576);
    const lease = (f: string) => path.join(bed!.leaseDir, md5(f));
    // host 3 holds the lease of `busy` (its lease file initialised as the agent would)
    sparseFile(lease(busy), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:${md5(busy)}:${lease(busy)}:0`])).code).toBe(0);
    const holder = spawn(SANLOCK, ['client', 'command', '-r', `${LS}:${md5(busy)}:${lease(busy)}:0`, '-c', '/bin/sleep', '600'], { env: S!.env, stdio: 'ignore' });
    try {
      await waitFor('sanlock to hold the lease', async () => (await sanlockClient(S!, ['status'])).stdout.includes(`r ${LS}:${md5(busy)}:`) || undefined, 20_000, 100);
      await hvirshOk(A, ['attach-disk', dom.name, hot, 'vdb', '--targetbus', 'virtio', '--live']);
      const owner = (await status(A.agent)).owners.find((o) => o.uuid === dom.uuid);
      expect(owner?.leases.map((l) => l.resource).sort()).toEqual([md5(dom.disk), md5(hot)].sort());
      expect(readLeaderOf(lease(hot))).toMatchObject({ ownerId: 1 });
      // the same disk again: QEMU refuses it (its image lock) and libvirt undoes the attach with a
      // release, which must leave the lease the first attach holds
      const again = await hvirsh(A, ['attach-disk', dom.name, hot, 'vdd', '--targetbus', 'virtio', '--live']);
      expect(again.code).toBe(1);
      expect((await status(A.agent)).owners.find((o) => o.uuid === dom.uuid)?.leases.map((l) => l.resource)).toContain(md5(hot));
      expect(readLeaderOf(lease(hot))).toMatchObject({ ownerId: 1 });
      const r = await hvirsh(A, ['attach-disk', dom.name, busy, 'vdc', '--targetbus', 'virtio', '--live']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/lockagent: disk .*la-ld-busy\.img is leased by host 3 \(node node03\)/);
      expect((await hvirshOk(A, ['domblklist', dom.name]))).not.toMatch(/vdc/);
      expect(await hostDomState(A, dom.name)).toMatch(/^running/);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a stop releases every lease, the hot-plugged disk\'s too (libvirt makes no lock call at a stop)', async () => {
    await hvirshOk(A, ['destroy', dom.name]);
    await waitFor('the lease to be released on disk', async () => leader(dom).timestamp === 0 || undefined, 10_000, 50);
    expect(await held(A, dom)).toBeUndefined();
    expect(readLeaderOf(path.join(bed!.leaseDir, md5(path.join(bed!.dir, 'la-ld-hot.img'))))).toMatchObject({ timestamp: 0 });
    expect((await status(A.agent)).owners.find((o) => o.uuid === dom.uuid)?.leases ?? []).toHaveLength(0);
    expect(await host3Tries(dom)).toMatch(/^0 /);
  });
});
