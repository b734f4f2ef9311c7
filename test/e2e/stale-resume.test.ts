/**
 * The stale resume stays paused (issue 12 item 6), on a real libvirtd + QEMU: a domain paused on
 * host 1 gives its disk lease up; host 2 (a second agent on the same lease directory) takes the
 * lease and lets it go again, so its lver moves on. A resume on host 1 must not run the guest on
 * that disk: it is paused again, stays paused (also after another resume), status and the log
 * name host 2 — and nothing kills it unless <on_lockfailure> says poweroff.
 */
import { startHookBed, stopHookBed } from '../helpers/hookbed';
import { AgentHost, cli, log, status, waitFor } from '../helpers/agentproc';
import { defineDomain, describeE2E, domState, EventMonitor, md5, TestDomain, virshOk, waitDomState } from '../helpers/libvirt';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(180_000);

describeE2E('e2e: a resume after another host held the disk stays paused (real libvirtd + QEMU)', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let leaseDir = '';
  let A: AgentHost | undefined;
  let B: AgentHost | undefined;
  const monitor = new EventMonitor();
  let dDefault: TestDomain; // no <on_lockfailure>: lease_failure_action "kill" would apply
  let dPoweroff: TestDomain;

  const res = (d: TestDomain) => `${LS}:${md5(d.disk)}:${leaseDir}/${md5(d.disk)}:0`;
  const heldByA = async (d: TestDomain) => (await status(A!)).owners.find((o) => o.uuid === d.uuid)?.leases.find((l) => l.resource === md5(d.disk));
  const waitHeld = (d: TestDomain) => waitFor(`A to hold the lease of ${d.name}`, () => heldByA(d), 20_000, 100);
  const waitReleased = (d: TestDomain) => waitFor(`A to release the lease of ${d.name}`, async () => !(await heldByA(d)) || undefined, 20_000, 100);

  /** Host 2 takes the paused domain's disk lease and lets it go: the lease's lver moves on. */
  async function host2TakesAndReleases(d: TestDomain): Promise<void> {
    const a = await cli(B!, ['client', 'acquire', '-r', res(d), '--owner', 'holder-b', '--name', 'holderB']);
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect((await cli(B!, ['client', 'release', '--owner', 'holder-b'])).code).toBe(0);
  }

  beforeAll(async () => {
    ({ unlock, base, leaseDir, A, B } = await startHookBed('stale-resume', monitor));
    dDefault = await defineDomain(base, 'la-e2e-stale-default');
    dPoweroff = await defineDomain(base, 'la-e2e-stale-poweroff', { onLockFailure: 'poweroff' });
  }, 600_000);

  afterAll(async () => {
    await stopHookBed({ unlock, base, A, B }, monitor);
  }, 120_000);

  it('default action: paused again at once, stays paused (also after a second resume); status and log name host 2; QEMU is not killed', async () => {
    const d = dDefault;
    await virshOk(['start', d.name]);
    await waitHeld(d);
    await virshOk(['suspend', d.name]);
    await waitReleased(d);
    await host2TakesAndReleases(d);

    const from = monitor.mark();
    await virshOk(['resume', d.name]); // libvirt itself does not know
    await monitor.waitSequence(d.name, [/^Resumed/, /^Suspended/], from);
    await waitFor('A to keep it paused', async () => /la-e2e-stale-default stays paused: stale lease/.test(log(A!)) || undefined, 10_000, 100);
    expect(await domState(d.name)).toMatch(/^paused/);
    const text = log(A!);
    expect(text).toMatch(/la-e2e-stale-default resumed but its leases cannot be taken: .*changed hands since it was released here.*last held by host 2 \(node node02\)/);
    expect(text).toMatch(/la-e2e-stale-default stays paused: stale lease, its disk was held by host 2 \(node node02\)/);
    expect(text).not.toMatch(/lease lost for la-e2e-stale-default/); // no kill policy ran

    const st = JSON.parse((await cli(A!, ['status', '--json'])).stdout) as { domains: Array<{ uuid: string; state: string }> };
    expect(st.domains.find((x) => x.uuid === d.uuid)?.state).toMatch(/^paused: stale lease \(held by host 2 \(node node02\) since it was paused; kept paused since \d{4}-/);
    expect((await cli(A!, ['status'])).stdout).toMatch(/^domain la-e2e-stale-default \(.*\): paused: stale lease \(held by host 2/m);

    // Still paused a few seconds later: nothing follows the pause.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await domState(d.name)).toMatch(/^paused/);

    // A second resume is paused again the same way.
    const from2 = monitor.mark();
    await virshOk(['resume', d.name]);
    await monitor.waitSequence(d.name, [/^Resumed/, /^Suspended/], from2);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await domState(d.name)).toMatch(/^paused/);
    expect(monitor.of(d.name, from).some((e) => /^(Stopped|Shutdown)/.test(e))).toBe(false);
    expect(await heldByA(d)).toBeUndefined(); // and host 1 never took the lease

    await virshOk(['destroy', d.name]);
    await waitFor('A to forget the stale domain', async () => !((JSON.parse((await cli(A!, ['status', '--json'])).stdout) as { domains: Array<{ uuid: string }> })
      .domains.some((x) => x.uuid === d.uuid)) || undefined, 10_000, 100);
  });

  it('<on_lockfailure>poweroff</on_lockfailure>: the stale resume is destroyed', async () => {
    const d = dPoweroff;
    await virshOk(['start', d.name]);
    await waitHeld(d);
    await virshOk(['suspend', d.name]);
    await waitReleased(d);
    await host2TakesAndReleases(d);
    await virshOk(['resume', d.name]);
    expect(await waitDomState(d.name, /^shut off \(destroyed\)/)).toBeTruthy();
    expect(log(A!)).toMatch(/lease lost for la-e2e-stale-poweroff .*resumed without its leases.*on_lockfailure=poweroff: destroying it/);
  });
});
