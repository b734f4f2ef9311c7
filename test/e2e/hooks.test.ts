/**
 * lockagent beside a REAL libvirtd + QEMU (TCG), with its hook installed in
 * /etc/libvirt/hooks/qemu.d: the start gate (virsh start refused while another host holds the
 * disk, naming it), leases following suspend/resume/destroy through libvirt's lifecycle events,
 * and agent restarts with a domain running.
 *
 * Host 1 = agent A (libvirt_uri qemu:///system, the hook talks to it); host 2 = agent B, a second
 * lockagent on the same lease directory standing for another machine.
 */
import * as fs from 'fs';
import * as path from 'path';
import { startHookBed, stopHookBed } from '../helpers/hookbed';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined } from '../helpers/agentproc';
import { lockagent, sparseFile } from '../helpers/cli';
import {
  defineDomain, describeE2E, domState, E2E_DIR, EventMonitor, HOOK_FILE, hookClient, md5, restartLibvirtd, TestDomain, virsh, virshOk,
} from '../helpers/libvirt';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

describeE2E('e2e: hook and lifecycle events on real libvirtd + QEMU', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let leaseDir = '';
  let A: AgentHost | undefined;
  let B: AgentHost | undefined;
  const monitor = new EventMonitor();
  let d1: TestDomain; // no <on_lockfailure>: the default action
  let d2: TestDomain; // <on_lockfailure>pause</on_lockfailure>

  const res = (d: TestDomain) => `${LS}:${md5(d.disk)}:${leaseDir}/${md5(d.disk)}:0`;
  const leaseFile = (d: TestDomain) => path.join(leaseDir, md5(d.disk));
  /** A's lease on the domain's disk, if held. */
  const heldByA = async (d: TestDomain) => (await status(A!)).owners.find((o) => o.uuid === d.uuid)?.leases.find((l) => l.resource === md5(d.disk));
  const waitHeld = (d: TestDomain) => waitFor(`A to hold the lease of ${d.name}`, () => heldByA(d), 20_000, 100);
  const waitReleased = (d: TestDomain) => waitFor(`A to release the lease of ${d.name}`, async () => !(await heldByA(d)) || undefined, 20_000, 100);
  const bAcquire = (d: TestDomain, extra: string[] = []) => cli(B!, ['client', 'acquire', '-r', res(d), '--owner', 'holder-b', '--name', 'holderB', ...extra]);
  const bRelease = () => cli(B!, ['client', 'release', '--owner', 'holder-b']);
  const libvirtdLog = path.join(E2E_DIR, 'logs', 'libvirtd.log'); // services.sh's libvirtd logs hook calls
  const libvirtdLogSize = () => (fs.existsSync(libvirtdLog) ? fs.statSync(libvirtdLog).size : -1);
  const libvirtdLogFrom = (at: number) => fs.readFileSync(libvirtdLog).subarray(at).toString('utf8');

  beforeAll(async () => {
    ({ unlock, base, leaseDir, A, B } = await startHookBed('hooks', monitor));
    // the compiled client when built (the shipped configuration), else node with hook.js
    const client = hookClient();
    if (client !== 'node') expect(fs.readFileSync(HOOK_FILE).equals(fs.readFileSync(client))).toBe(true);
    d1 = await defineDomain(base, 'la-e2e-h1');
    d2 = await defineDomain(base, 'la-e2e-h2', { onLockFailure: 'pause' });
  }, 600_000);

  afterAll(async () => {
    await stopHookBed({ unlock, base, A, B }, monitor);
  }, 120_000);

  it('refuses virsh start while host 2 holds the disk lease, naming the holder; the domain stays shut off', async () => {
    sparseFile(leaseFile(d1), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res(d1)])).code).toBe(0);
    expect((await bAcquire(d1)).code).toBe(0);

    const from = monitor.mark();
    const logAt = libvirtdLogSize();
    const r = await virsh(['start', d1.name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(`Failed to start domain '${d1.name}'`);
    expect(r.stderr).toMatch(/Hook script execution failed: .*prepare begin[\s\S]*lockagent: disk .*la-e2e-h1\.qcow2 is leased by host 2 \(node node02\)/);
    expect(await domState(d1.name)).toMatch(/^shut off/);

    // libvirt still runs `stopped` and `release` after a vetoed start; they change nothing.
    if (logAt >= 0) await waitFor('the stopped and release hooks', async () => {
      const text = libvirtdLogFrom(logAt);
      return /50-lockagent id=la-e2e-h1 op=stopped/.test(text) && /50-lockagent id=la-e2e-h1 op=release/.test(text) || undefined;
    }, 10_000, 100);
    expect(await heldByA(d1)).toBeUndefined();
    const inq = await cli(B!, ['client', 'inquire', '--owner', 'holder-b']);
    expect(inq.stdout).toContain(md5(d1.disk));
    const dump = await lockagent(['direct', 'dump', leaseFile(d1)]);
    expect(dump.stdout).toMatch(new RegExp(`${md5(d1.disk)} \\d{10} 0002 `)); // owner host 2
    expect(monitor.of(d1.name, from)).toEqual([]); // a vetoed start emits no lifecycle event
  });

  it('allows the start once host 2 released; A\'s status shows the lease and host 2 is refused', async () => {
    expect((await bRelease()).code).toBe(0);
    const r = await virsh(['start', d1.name]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(await domState(d1.name)).toMatch(/^running/);

    const st = await cli(A!, ['status', '--json']);
    expect(st.code).toBe(0);
    const owner = (JSON.parse(st.stdout) as { owners: Array<{ uuid: string; name: string; pid: number; leases: Array<{ lockspace: string; resource: string; path: string; mode: string }> }> })
      .owners.find((o) => o.uuid === d1.uuid);
    expect(owner).toMatchObject({ name: d1.name, leases: [{ lockspace: LS, resource: md5(d1.disk), path: leaseFile(d1), mode: 'exclusive' }] });
    expect(fs.readFileSync(`/proc/${owner!.pid}/cmdline`, 'latin1')).toContain(`guest=${d1.name}`); // QEMU's pid

    const b = await bAcquire(d1);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/leased by host 1 \(node node01\)/);
  });

  it('suspend releases the lease and resume takes it again (nobody took it meanwhile): lver + 1', async () => {
    const before = await waitHeld(d1);
    await virshOk(['suspend', d1.name]);
    await waitReleased(d1);
    await virshOk(['resume', d1.name]);
    const after = await waitHeld(d1);
    expect(after.lver).toBe(before.lver + 1);
    expect(await domState(d1.name)).toMatch(/^running/);
  });

  it('suspend lets host 2 take the disk; a resume then is paused again at once and stays paused (a stale lease is never killed by the default action)', async () => {
    await virshOk(['suspend', d1.name]);
    await waitReleased(d1);
    expect((await bAcquire(d1)).code).toBe(0); // host 2 can take it while the domain is paused

    const from = monitor.mark();
    expect((await virsh(['resume', d1.name])).code).toBe(0); // libvirt itself does not know
    await monitor.waitSequence(d1.name, [/^Resumed/, /^Suspended/], from);
    // "at once": the guest ran only until the RESUMED event was handled (~0.1-0.5 s; generous bound for loaded CI)
    const ran = monitor.find(d1.name, /^Suspended/, from)!.at - monitor.find(d1.name, /^Resumed/, from)!.at;
    expect(ran).toBeLessThan(5000);
    await waitFor('A to keep it paused', async () => /la-e2e-h1 stays paused: stale lease/.test(log(A!)) || undefined, 10_000, 100);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await domState(d1.name)).toMatch(/^paused/);
    const text = log(A!);
    expect(text).toMatch(/la-e2e-h1 resumed but its leases cannot be taken: .*(leased by host 2 \(node node02\)|changed hands.*last held by host 2 \(node node02\)).*; pausing it again/);
    expect(text).toMatch(/la-e2e-h1 stays paused: stale lease, its disk was held by host 2 \(node node02\)/);
    expect(text).not.toMatch(/lease lost for la-e2e-h1 .*resumed without its leases/);
    // host 2 kept its lease throughout
    expect((await cli(B!, ['client', 'inquire', '--owner', 'holder-b'])).stdout).toContain(md5(d1.disk));
    expect((await bRelease()).code).toBe(0);
    await virshOk(['destroy', d1.name]);
    await waitFor('A to forget la-e2e-h1', async () => !(await status(A!)).owners.some((o) => o.uuid === d1.uuid) || undefined, 10_000, 100);
  });

  it('with <on_lockfailure>pause</on_lockfailure> the domain stays paused, and later resumes stay refused: the disk changed hands', async () => {
    await virshOk(['start', d2.name]);
    await waitHeld(d2);
    await virshOk(['suspend', d2.name]);
    await waitReleased(d2);
    expect((await bAcquire(d2)).code).toBe(0);

    const from = monitor.mark();
    await virshOk(['resume', d2.name]);
    await monitor.waitSequence(d2.name, [/^Resumed/, /^Suspended/], from);
    await waitFor('A to keep it paused', async () => /la-e2e-h2 stays paused: stale lease.*on_lockfailure=pause/.test(log(A!)) || undefined, 10_000, 100);
    expect(await domState(d2.name)).toMatch(/^paused/);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await domState(d2.name)).toMatch(/^paused/); // no kill follows

    // Even after host 2 let go, its lver moved on: the guest must not resume on that disk.
    expect((await bRelease()).code).toBe(0);
    const from2 = monitor.mark();
    await virshOk(['resume', d2.name]);
    await monitor.waitSequence(d2.name, [/^Resumed/, /^Suspended/], from2);
    expect(log(A!)).toMatch(/la-e2e-h2 resumed but its leases cannot be taken: .*changed hands since it was released here/);
    expect(await domState(d2.name)).toMatch(/^paused/);
    await virshOk(['destroy', d2.name]);
    await waitFor('A to forget la-e2e-h2', async () => !(await status(A!)).owners.some((o) => o.uuid === d2.uuid) || undefined, 10_000, 100);
  });

  it('destroy releases the lease: host 2 can take it', async () => {
    await virshOk(['start', d1.name]);
    await waitHeld(d1);
    await virshOk(['destroy', d1.name]);
    await waitFor('A to forget la-e2e-h1', async () => !(await status(A!)).owners.some((o) => o.uuid === d1.uuid) || undefined, 10_000, 100);
    expect((await bAcquire(d1)).code).toBe(0);
    expect((await bRelease()).code).toBe(0);
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)('agent restart (%s) with the domain running changes nothing: lease kept by host 1', async (sig) => {
    if (!/^running/.test(await domState(d1.name))) await virshOk(['start', d1.name]);
    await waitHeld(d1);
    const genBefore = (await status(A!)).lockspaces.find((l) => l.name === LS)!.generation!;
    const logAt = log(A!).length;

    await stopHost(A!, sig);
    const during = await bAcquire(d1, ['--timeout', '3']);
    expect(during.code).toBe(1);
    expect(during.stderr).toMatch(/host 1 \(node node01\)/);
    expect(await domState(d1.name)).toMatch(/^running/);

    startHost(A!);
    const gen = await waitJoined(A!);
    // Back within 8 x io_timeout on the same boot: the delta lease is continued (same generation),
    // so hosts waiting for our leases never see them as free; later than that, a new generation.
    expect([genBefore, genBefore + 1]).toContain(gen);
    await waitHeld(d1);
    const dump = await lockagent(['direct', 'dump', leaseFile(d1)]);
    expect(dump.stdout).toMatch(new RegExp(`${md5(d1.disk)} \\d{10} 0001 ${String(gen).padStart(4, '0')}`));
    const after = await bAcquire(d1);
    expect(after.code).toBe(1);
    expect(after.stderr).toMatch(/leased by host 1 \(node node01\)/);
    expect(await domState(d1.name)).toMatch(/^running/);
    const since = log(A!).slice(logAt);
    expect(since).not.toMatch(new RegExp(`released .*${md5(d1.disk)}`));
    expect(since).not.toMatch(/lease lost|SIGTERM to|sending SIGTERM/);
  });

  it('libvirtd restart with the domain running: the reconnect hook keeps the lease, and events move it again after the reconnect', async () => {
    if (!/^running/.test(await domState(d1.name))) await virshOk(['start', d1.name]);
    const held = await waitHeld(d1);
    const logAt = log(A!).length;
    const lvAt = libvirtdLogSize();
    monitor.stop();
    await restartLibvirtd();
    monitor.start(path.join(base, 'events.log'));
    expect(await domState(d1.name)).toMatch(/^running/);
    if (lvAt >= 0) {
      await waitFor('the reconnect hook', async () => /50-lockagent id=la-e2e-h1 op=reconnect/.test(libvirtdLogFrom(lvAt)) || undefined, 10_000, 100);
    }
    await waitFor('A to reconnect to libvirt', async () => /libvirt connection back after/.test(log(A!).slice(logAt)) || undefined, 30_000, 100);
    expect((await heldByA(d1))?.lver).toBe(held.lver); // nothing was released or re-taken
    expect((await bAcquire(d1)).code).toBe(1);

    await virshOk(['suspend', d1.name]);
    await waitReleased(d1);
    await virshOk(['resume', d1.name]);
    expect((await waitHeld(d1)).lver).toBe(held.lver + 1);
    expect(log(A!).slice(logAt)).not.toMatch(/lease lost|sending SIGTERM|without all its leases/);
  });
});
