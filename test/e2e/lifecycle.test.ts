/**
 * The remaining lifecycle paths on a REAL libvirtd + QEMU (TCG), hook installed (issue 14 item 4):
 *
 * - a domain with 16 disks — files and block devices (loop devices), two read-only, two
 *   shareable — plus two <lease> elements: every lease is taken (exclusive, shared, none for the
 *   read-only disks), and a refused start names the one disk another host holds and leaves
 *   nothing of the domain held;
 * - `virsh managedsave` releases every lease; the `virsh start` that restores it takes them again
 *   (and is refused, the save kept, while another host holds one);
 * - `virsh reset` and `virsh reboot` keep QEMU and the leases; a reset of a domain whose
 *   <on_reboot> is destroy stops it, and that releases its leases;
 * - libvirtd restarted while domains run, one of them killed while libvirtd is down: the running
 *   one loses nothing (same lease versions), the dead one's leases are released once libvirtd is
 *   back, and events move leases again;
 * - two domains here sharing a shareable disk: one shared acquisition, kept on disk until the
 *   last of them stops.
 *
 * Host 1 = agent A (libvirt, hook); host 2 = agent B, another lockagent on the same lease
 * directory standing for another machine.
 */
import * as fs from 'fs';
import * as path from 'path';
import { startHookBed, stopHookBed } from '../helpers/hookbed';
import { AgentHost, cli, log, status, waitFor } from '../helpers/agentproc';
import { lockagent, readLeaderOf, sparseFile } from '../helpers/cli';
import {
  attachLoop, defineDomain, describeE2E, detachLoop, domState, EventMonitor, ExtraDisk, md5, qemuPid, startServices, stopLibvirtd,
  TestDomain, virsh, virshOk, waitDomState,
} from '../helpers/libvirt';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

interface Planned { disk?: string; resource: string; file: string; mode: 'exclusive' | 'shared' }

describeE2E('e2e: 16 disks, managedsave, reboot, libvirtd restart (real libvirtd + QEMU)', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let leaseDir = '';
  let A: AgentHost | undefined;
  let B: AgentHost | undefined;
  const loops: string[] = [];
  const monitor = new EventMonitor();
  let big: TestDomain; // 16 disks + 2 <lease>
  let small: TestDomain; // on_reboot destroy
  let victim: TestDomain; // killed while libvirtd is down
  let disks: ExtraDisk[] = [];
  /** every lease the big domain needs, in plan order */
  let planned: Planned[] = [];
  let readonlyDisks: string[] = [];

  const leaderOf = (file: string) => readLeaderOf(file);
  const resString = (p: Planned, sh = false) => `${LS}:${p.resource}:${p.file}:0${sh ? ':SH' : ''}`;
  const ownerOf = async (d: TestDomain) => (await status(A!)).owners.find((o) => o.uuid === d.uuid);
  const heldSet = async (d: TestDomain) => ((await ownerOf(d))?.leases ?? []).map((l) => l.resource).sort();
  const lvers = async (d: TestDomain) => new Map(((await ownerOf(d))?.leases ?? []).map((l) => [l.resource, l.lver]));
  const waitAllHeld = (d: TestDomain, want: string[]) => waitFor(`A to hold the ${want.length} leases of ${d.name}`, async () => {
    const got = await heldSet(d);
    return got.length === want.length && got.every((r, i) => r === [...want].sort()[i]) ? got : undefined;
  }, 30_000, 100);
  const waitNoneHeld = (d: TestDomain) => waitFor(`A to hold nothing of ${d.name}`, async () => !(await ownerOf(d))?.leases.length || undefined, 30_000, 100);
  const bAcquire = (res: string) => cli(B!, ['client', 'acquire', '-r', res, '--owner', 'holder-b', '--name', 'holderB']);
  const bRelease = () => cli(B!, ['client', 'release', '--owner', 'holder-b']);

  beforeAll(async () => {
    ({ unlock, base, leaseDir, A, B } = await startHookBed('lifecycle', monitor));

    // 15 disks after vda: 7 raw files, then 8 loop devices; in each group one read-only, one shareable.
    disks = [];
    for (let i = 0; i < 7; i++) disks.push({ kind: 'file', path: sparseFile(path.join(base, `f${i}.img`), 1048576), readonly: i === 2, shareable: i === 4 });
    for (let i = 0; i < 8; i++) {
      const dev = await attachLoop(sparseFile(path.join(base, `b${i}.img`), 1048576));
      loops.push(dev);
      disks.push({ kind: 'block', path: dev, readonly: i === 1, shareable: i === 3 });
    }
    const keyFiles = ['key1', 'key2'].map((k) => sparseFile(path.join(base, `lease-${k}`), 1048576));
    for (const [i, f] of keyFiles.entries()) expect((await lockagent(['direct', 'init', '-r', `${LS}:lc-key${i + 1}:${f}:0`])).code).toBe(0);
    big = await defineDomain(base, 'la-e2e-lc-16', {
      memoryMiB: 16, disks,
      leases: keyFiles.map((f, i) => ({ lockspace: LS, key: `lc-key${i + 1}`, path: f })),
    });
    readonlyDisks = disks.filter((d) => d.readonly).map((d) => d.path);
    planned = [
      ...keyFiles.map((f, i) => ({ resource: `lc-key${i + 1}`, file: f, mode: 'exclusive' as const })),
      ...[{ path: big.disk } as ExtraDisk, ...disks].filter((d) => !d.readonly).map((d) => ({
        disk: d.path, resource: md5(d.path), file: path.join(leaseDir, md5(d.path)), mode: d.shareable ? 'shared' as const : 'exclusive' as const,
      })),
    ];
    small = await defineDomain(base, 'la-e2e-lc-noreboot', { memoryMiB: 16, noReboot: true });
    victim = await defineDomain(base, 'la-e2e-lc-victim', { memoryMiB: 16 });
  }, 600_000);

  afterAll(async () => {
    await stopHookBed({ unlock, base, A, B }, monitor, async () => {
      for (const dev of loops) await detachLoop(dev).catch(() => undefined);
    });
  }, 120_000);

  it('16 disks: a start refused names the one disk host 2 holds, and leaves nothing of the domain held', async () => {
    expect(planned).toHaveLength(16); // 14 disks with a lease (2 of them shared) + 2 <lease>
    // Create the disk lease files first: B needs the one it takes (A creates the rest at prepare too).
    const target = planned.find((p) => p.disk === loops[5])!; // a read/write, unshared block disk
    sparseFile(target.file, 1048576);
    expect((await lockagent(['direct', 'init', '-r', resString(target)])).code).toBe(0);
    expect((await bAcquire(resString(target))).code).toBe(0);

    const r = await virsh(['start', big.name]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`lockagent: disk ${target.disk} is leased by host 2 \\(node node02\\)`));
    expect(r.stderr.match(/is leased by/g)).toHaveLength(1);
    expect(await domState(big.name)).toMatch(/^shut off/);
    // All or nothing: whatever the prepare took before the refusal was given back.
    await waitNoneHeld(big);
    for (const p of planned.filter((x) => x.mode === 'exclusive' && x !== target && fs.existsSync(x.file))) {
      expect({ resource: p.resource, timestamp: leaderOf(p.file).timestamp }).toEqual({ resource: p.resource, timestamp: 0 });
    }
    expect(leaderOf(target.file)).toMatchObject({ ownerId: 2 });
    expect((await bRelease()).code).toBe(0);
  });

  it('16 disks: the start takes every lease — 12 exclusive disks, 2 shared, 2 <lease> — and none for the read-only disks', async () => {
    await virshOk(['start', big.name]);
    await waitAllHeld(big, planned.map((p) => p.resource));
    for (const ro of readonlyDisks) expect(await heldSet(big)).not.toContain(md5(ro));
    for (const p of planned.filter((x) => x.mode === 'exclusive')) expect(leaderOf(p.file)).toMatchObject({ ownerId: 1 });
    for (const p of planned.filter((x) => x.mode === 'exclusive')) expect(leaderOf(p.file).timestamp).not.toBe(0);
    // A shareable disk: host 2 may share it, never take it exclusively.
    const shared = planned.find((p) => p.mode === 'shared')!;
    expect((await bAcquire(resString(shared))).code).toBe(1);
    expect((await bAcquire(resString(shared, true))).code).toBe(0);
    expect((await bRelease()).code).toBe(0);
    expect((await bAcquire(resString(planned.find((p) => p.disk === loops[6])!))).stderr).toMatch(/leased by host 1 \(node node01\)/);
    expect((await bAcquire(resString(planned[0]))).stderr).toMatch(/leased by host 1 \(node node01\)/);
  });

  it('managedsave releases every lease; the restoring start takes them again, and is refused (save kept) while host 2 holds one', async () => {
    if (!/^running/.test(await domState(big.name))) await virshOk(['start', big.name]);
    await waitAllHeld(big, planned.map((p) => p.resource));
    const before = await lvers(big);
    const from = monitor.mark();
    await virshOk(['managedsave', big.name], 120_000);
    await monitor.waitSequence(big.name, [/^Stopped Saved/], from);
    await waitNoneHeld(big);

    const taken = planned.find((p) => p.disk === disks[0].path)!;
    expect((await bAcquire(resString(taken))).code).toBe(0);
    try {
      const refused = await virsh(['start', big.name]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(new RegExp(`lockagent: disk ${taken.disk} is leased by host 2`));
      // libvirt keeps the save image after a failed restore (the state reads "shut off (failed)").
      expect(await domState(big.name)).toMatch(/^shut off/);
      expect(await virshOk(['dominfo', big.name])).toMatch(/Managed save:\s+yes/);
      await waitNoneHeld(big);
    } finally {
      expect((await bRelease()).code).toBe(0);
    }

    const at = monitor.mark();
    await virshOk(['start', big.name], 120_000);
    await monitor.waitSequence(big.name, [/^Started Restored/], at);
    expect(await domState(big.name)).toMatch(/^running \(restored\)/);
    await waitAllHeld(big, planned.map((p) => p.resource));
    const after = await lvers(big);
    for (const p of planned.filter((x) => x.mode === 'exclusive')) {
      // re-taken, not kept (the refused start took and gave back some of them too)
      expect({ r: p.resource, newer: after.get(p.resource)! > before.get(p.resource)! }).toEqual({ r: p.resource, newer: true });
    }
    expect(await virshOk(['dominfo', big.name])).toMatch(/Managed save:\s+no/);
  });

  it('virsh reset and virsh reboot keep QEMU and every lease (same lease versions)', async () => {
    await waitAllHeld(big, planned.map((p) => p.resource));
    const pid = qemuPid(big.name);
    const before = await lvers(big);
    const logAt = log(A!).length;
    await virshOk(['reset', big.name]);
    // No OS in the guest: the ACPI reboot request reaches nobody, libvirt reports success.
    const reboot = await virsh(['reboot', big.name]);
    expect(reboot.code).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await domState(big.name)).toMatch(/^running/);
    expect(qemuPid(big.name)).toBe(pid);
    expect(await lvers(big)).toEqual(before);
    expect(log(A!).slice(logAt)).not.toMatch(/released .*of la-e2e-lc-16|lease lost|sending SIGTERM/);
  });

  it('virsh reset of a domain with <on_reboot>destroy</on_reboot> stops it; its lease is released', async () => {
    await virshOk(['start', small.name]);
    await waitAllHeld(small, [md5(small.disk)]);
    const from = monitor.mark();
    await virshOk(['reset', small.name]);
    await waitDomState(small.name, /^shut off/);
    await monitor.waitSequence(small.name, [/^Stopped/], from);
    await waitNoneHeld(small);
    expect(leaderOf(path.join(leaseDir, md5(small.disk))).timestamp).toBe(0);
  });

  it('libvirtd restart with domains running, one killed while libvirtd is down: the running one keeps every lease, the dead one\'s is released', async () => {
    if (!/^running/.test(await domState(big.name))) await virshOk(['start', big.name]);
    await virshOk(['start', victim.name]);
    await waitAllHeld(big, planned.map((p) => p.resource));
    await waitAllHeld(victim, [md5(victim.disk)]);
    const before = await lvers(big);
    const logAt = log(A!).length;
    const victimPid = qemuPid(victim.name)!;
    expect(victimPid).toBeGreaterThan(0);

    monitor.stop();
    await stopLibvirtd();
    process.kill(victimPid, 'SIGKILL');
    await waitFor('the victim\'s QEMU to exit', async () => !fs.existsSync(`/proc/${victimPid}`) || undefined, 10_000, 50);
    // libvirtd is down: nobody has told the agent yet; the victim's lease is still held.
    expect(await heldSet(victim)).toEqual([md5(victim.disk)]);
    await startServices();
    monitor.start(path.join(base, 'events.log'));

    expect(await domState(victim.name)).toMatch(/^shut off/);
    await waitFor('A to reconnect to libvirt', async () => /libvirt connection back after/.test(log(A!).slice(logAt)) || undefined, 40_000, 100);
    await waitNoneHeld(victim);
    expect(leaderOf(path.join(leaseDir, md5(victim.disk))).timestamp).toBe(0);
    expect((await bAcquire(`${LS}:${md5(victim.disk)}:${path.join(leaseDir, md5(victim.disk))}:0`)).code).toBe(0);
    expect((await bRelease()).code).toBe(0);

    expect(await domState(big.name)).toMatch(/^running/);
    expect(await lvers(big)).toEqual(before); // nothing released or re-taken
    expect(log(A!).slice(logAt)).not.toMatch(/released .*of la-e2e-lc-16|lease lost|sending SIGTERM/);

    // Events after the reconnect move the leases again.
    const from = monitor.mark();
    await virshOk(['destroy', big.name]);
    await monitor.waitSequence(big.name, [/^Stopped Destroyed/], from);
    await waitNoneHeld(big);
  });

  it('two domains here sharing a shareable disk: the first to stop leaves it SHARED on disk (host 2 is refused it exclusive); free once the second stops', async () => {
    const shared: ExtraDisk = { kind: 'file', path: sparseFile(path.join(base, 'shared.img'), 1048576), shareable: true };
    const [d1, d2] = [await defineDomain(base, 'la-e2e-lc-sh1', { memoryMiB: 16, disks: [shared] }), await defineDomain(base, 'la-e2e-lc-sh2', { memoryMiB: 16, disks: [shared] })];
    const res = `${LS}:${md5(shared.path)}:${path.join(leaseDir, md5(shared.path))}:0`;
    // Started together: the second start waits for the first's acquire of the shared disk, then shares it.
    await Promise.all([virshOk(['start', d1.name]), virshOk(['start', d2.name])]);
    for (const d of [d1, d2]) await waitAllHeld(d, [md5(d.disk), md5(shared.path)]);
    expect((await bAcquire(res)).code).toBe(1);

    const from = monitor.mark();
    await virshOk(['destroy', d1.name]);
    await monitor.waitSequence(d1.name, [/^Stopped Destroyed/], from);
    await waitNoneHeld(d1);
    expect(await heldSet(d2)).toEqual([md5(d2.disk), md5(shared.path)].sort());
    const refused = await bAcquire(res);
    expect(refused.code).toBe(1); // d2 still runs on it: host 1's SHARED mode block stays
    expect(log(A!)).toMatch(new RegExp(`released shared lease ${LS}:${md5(shared.path)} of la-e2e-lc-sh1; other owners on this host still hold it`));

    await virshOk(['destroy', d2.name]);
    await waitNoneHeld(d2);
    expect((await bAcquire(res)).code).toBe(0);
    expect((await bRelease()).code).toBe(0);
  });
});
