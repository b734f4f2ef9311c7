/**
 * Hot-plug with the hook, on a real libvirtd + QEMU (TCG): libvirt runs no hook for an attach or
 * a detach, so agent A follows them after the fact, through libvirt's device-added and
 * device-removed events. Host 1 = agent A (hook, libvirt events); host 2 = agent B, a second
 * lockagent on the same lease directory standing for another machine.
 *
 * Covered: a disk attached to the running domain gets its lease (the domain's other lease stays);
 * detached (SCSI: QEMU unplugs it without the guest's help) its lease is released; a disk whose
 * lease host 2 holds is attached all the same (nothing gates it), and then refused after the
 * fact: the domain's <on_lockfailure>pause</on_lockfailure> pauses it, and the log names host 2.
 */
import * as fs from 'fs';
import * as path from 'path';
import { startHookBed, stopHookBed } from '../helpers/hookbed';
import { AgentHost, cli, log, status, waitFor } from '../helpers/agentproc';
import { lockagent, sparseFile } from '../helpers/cli';
import { defineDomain, describeE2E, EventMonitor, md5, TestDomain, virshOk, waitDomState } from '../helpers/libvirt';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

describeE2E('e2e: hot-plug with the hook, followed after the fact (real libvirtd + QEMU)', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let leaseDir = '';
  let A: AgentHost | undefined;
  let B: AgentHost | undefined;
  const monitor = new EventMonitor();
  let dom: TestDomain;

  const heldByA = async (file: string) => (await status(A!)).owners.find((o) => o.uuid === dom.uuid)?.leases.find((l) => l.resource === md5(file));

  beforeAll(async () => {
    ({ unlock, base, leaseDir, A, B } = await startHookBed('hotplug', monitor));
    // ACPI: PCI hot-plug of the SCSI controller needs it
    dom = await defineDomain(base, 'la-e2e-hp', { onLockFailure: 'pause', acpi: true, noReboot: true });
    await virshOk(['start', dom.name]);
    await waitFor('A to hold the lease of the first disk', () => heldByA(dom.disk), 20_000, 100);
    // SCSI disks are unplugged by QEMU at once; a virtio-blk unplug would wait for a guest OS
    const ctl = path.join(base, 'scsi.xml');
    fs.writeFileSync(ctl, "<controller type='scsi' index='0' model='virtio-scsi'/>\n");
    await virshOk(['attach-device', dom.name, ctl, '--live']);
  }, 600_000);

  afterAll(async () => {
    await stopHookBed({ unlock, base, A, B }, monitor);
  }, 120_000);

  it('an attached disk gets its lease after the fact; detached, its lease is released; the first disk keeps its lease throughout', async () => {
    const hot = sparseFile(path.join(base, 'la-e2e-hp-hot.img'), 1048576);
    const first = (await heldByA(dom.disk))!;
    const at = log(A!).length;
    await virshOk(['attach-disk', dom.name, hot, 'sda', '--targetbus', 'scsi', '--live']);
    const attached = Date.now();
    await waitFor('A to hold the hot-plugged disk\'s lease', () => heldByA(hot), 20_000, 100);
    const took = /^(\S+) warning la-e2e-hp: device \S+ hot-plugged: took 1 lease\(s\) after the fact/m.exec(log(A!).slice(at));
    expect(took).not.toBeNull();
    // the window with the hook: from the attach's return (QEMU has the disk by then) to the lease taken
    console.log(`hot-plugged disk leased ${Date.parse(took![1]) - attached} ms after virsh attach-disk returned`);
    // host 2 is refused it now
    const b = await cli(B!, ['client', 'acquire', '-r', `${LS}:${md5(hot)}:${leaseDir}/${md5(hot)}:0`, '--owner', 'holder-b', '--name', 'holderB']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/leased by host 1 \(node node01\)/);

    await virshOk(['detach-disk', dom.name, 'sda', '--live']);
    await waitFor('A to release the detached disk\'s lease', async () => !(await heldByA(hot)) || undefined, 20_000, 100);
    expect(log(A!).slice(at)).toMatch(/la-e2e-hp: device \S+ unplugged: released 1 lease\(s\) it no longer uses/);
    expect((await heldByA(dom.disk))?.lver).toBe(first.lver);
    expect((await cli(B!, ['client', 'acquire', '-r', `${LS}:${md5(hot)}:${leaseDir}/${md5(hot)}:0`, '--owner', 'holder-b', '--name', 'holderB'])).code).toBe(0);
    expect((await cli(B!, ['client', 'release', '--owner', 'holder-b'])).code).toBe(0);
  });

  it('a disk whose lease host 2 holds is attached (nothing gates it with the hook), then refused after the fact: on_lockfailure=pause pauses the domain, naming host 2', async () => {
    const busy = sparseFile(path.join(base, 'la-e2e-hp-busy.img'), 1048576);
    const res = `${LS}:${md5(busy)}:${leaseDir}/${md5(busy)}:0`;
    sparseFile(path.join(leaseDir, md5(busy)), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res])).code).toBe(0);
    expect((await cli(B!, ['client', 'acquire', '-r', res, '--owner', 'holder-b', '--name', 'holderB'])).code).toBe(0);

    await virshOk(['attach-disk', dom.name, busy, 'sdb', '--targetbus', 'scsi', '--live']);
    expect(await waitDomState(dom.name, /^paused/)).toBeTruthy();
    const text = log(A!);
    expect(text).toMatch(/lease lost for la-e2e-hp \(.*\): device \S+ hot-plugged, and its lease is refused \(after the fact\): disk .*la-e2e-hp-busy\.img is leased by host 2 \(node node02\).*; on_lockfailure=pause: pausing it/);
    // paused: it holds no lease now (SUSPENDED released its first disk's); host 2 kept its own
    await waitFor('A to release the paused domain\'s leases', async () => !(await status(A!)).owners.find((o) => o.uuid === dom.uuid)?.leases.length || undefined, 10_000, 100);
    expect((await cli(B!, ['client', 'inquire', '--owner', 'holder-b'])).stdout).toContain(md5(busy));
  });
});
