/**
 * <on_lockfailure> on real domains: five TCG domains, each with an explicit <lease> in lockspace
 * LSLOOP1 on a loop device, plus its automatic disk lease. The loop device then fails every I/O
 * (backing file truncated, `losetup -c`): renewals fail, the agent declares LSLOOP1 lost at
 * 8 x io_timeout (8 s) and applies each domain's action:
 *   poweroff -> destroyed;  pause -> paused;  ignore -> not even started (as libvirt's sanlock
 *   driver refuses it: the guest would run on without its leases);
 *   no element -> the default, lease_failure_action "kill": SIGTERM to QEMU, SIGKILL after
 *   kill_grace_seconds (3 s here; QEMU is SIGSTOPped first so that the SIGKILL step shows);
 *   restart -> destroyed and started again once LSLOOP1 is joined again (the agent waits for it,
 *   not the start's hook), at host_dead after its last renewal; the storage is repaired meanwhile
 *   (its contents written back), so the domain runs again, holding both leases, new generation;
 *   restart of a transient domain (undefined while it runs) -> destroyed (libvirt forgets it),
 *   then started again from its configuration read before the destroy (virDomainCreateXML, as
 *   libvirt's sanlock helper does) once LSLOOP1 is back; it runs again, transient,
 *   with both leases.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import {
  attachLoop, breakLoop, defineDomain, describeE2E, detachLoop, domState, installHook, md5, qemuPid, removeDomains, removeHook, repairLoop,
  startServices, suiteLock, TestDomain, URI, virsh, virshOk, waitDomState,
} from '../helpers/libvirt';

const LS = 'LSLOOP1';
const ACTIONS = ['poweroff', 'pause', 'default', 'restart'] as const;
type Action = (typeof ACTIONS)[number];
jest.setTimeout(120_000);

describeE2E('e2e: on_lockfailure actions when lockspace storage fails (real libvirtd + QEMU, loop device)', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let dev = '';
  let backing = '';
  let A: AgentHost | undefined;
  const doms = {} as Record<Action, TestDomain>;
  let transient: TestDomain;
  let stoppedPid: number | undefined;
  /** the lockspace device's contents before it broke, to repair it */
  let saved: Buffer | undefined;
  let generation = 0;

  beforeAll(async () => {
    unlock = await suiteLock('lockfailure');
    await startServices();
    await removeDomains();
    base = makeTempDir('la-e2e-lockfailure');
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    backing = sparseFile(path.join(base, 'lockspace.img'), 1048576);
    dev = await attachLoop(backing);
    expect((await lockagent(['direct', 'init', '-s', `${LS}:0:${dev}:0`, '-o', '1'])).code).toBe(0);
    A = startHost(writeHostConfig(base, 1, { leaseDir, libvirtUri: URI, extra: `lockspaces = [ "${LS}:1:${dev}:0" ]` }));
    [, generation] = await Promise.all([waitJoined(A), waitJoined(A, LS)]);
    await installHook(A.socket);
    for (const a of ACTIONS) {
      const resFile = sparseFile(path.join(base, `res-${a}`), 1048576);
      expect((await lockagent(['direct', 'init', '-r', `${LS}:k-${a}:${resFile}:0`])).code).toBe(0);
      doms[a] = await defineDomain(base, `la-e2e-lf-${a}`, {
        leases: [{ lockspace: LS, key: `k-${a}`, path: resFile }],
        onLockFailure: a === 'default' ? undefined : a,
      });
      await virshOk(['start', doms[a].name]);
    }
    const resFile = sparseFile(path.join(base, 'res-transient'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:k-transient:${resFile}:0`])).code).toBe(0);
    transient = await defineDomain(base, 'la-e2e-lf-transient', { leases: [{ lockspace: LS, key: 'k-transient', path: resFile }], onLockFailure: 'restart' });
    await virshOk(['start', transient.name]);
    await virshOk(['undefine', transient.name]); // still running, now transient (as if started with virsh create)
  }, 600_000);

  afterAll(async () => {
    if (stoppedPid) {
      try {
        process.kill(stoppedPid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    await removeDomains().catch(() => undefined);
    await removeHook().catch(() => undefined);
    if (A) await stopHost(A, 'SIGKILL');
    await detachLoop(dev).catch(() => undefined);
    if (!process.env.LOCKAGENT_E2E_KEEP) removeTempDir(base);
    unlock?.();
  }, 120_000);

  it('each running domain holds its <lease> in LSLOOP1 and its disk lease', async () => {
    const s = await status(A!);
    for (const a of ACTIONS) {
      const o = s.owners.find((x) => x.uuid === doms[a].uuid);
      expect(o?.leases.map((l) => l.resource).sort()).toEqual([md5(doms[a].disk), `k-${a}`].sort());
      expect(await domState(doms[a].name)).toMatch(/^running/);
    }
  });

  it('ignore: the start is refused, naming the element and what to use instead; nothing is held for it', async () => {
    const resFile = sparseFile(path.join(base, 'res-ignore'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:k-ignore:${resFile}:0`])).code).toBe(0);
    const d = await defineDomain(base, 'la-e2e-lf-ignore', { leases: [{ lockspace: LS, key: 'k-ignore', path: resFile }], onLockFailure: 'ignore' });
    const r = await virsh(['start', d.name]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/<on_lockfailure>ignore<\/on_lockfailure> is not supported .*Use pause, poweroff or restart/);
    expect(await domState(d.name)).toMatch(/^shut off/);
    expect((await status(A!)).owners.find((o) => o.uuid === d.uuid)?.leases ?? []).toEqual([]);
  });

  it('storage failure: poweroff destroys, pause pauses, the default SIGTERMs then SIGKILLs QEMU', async () => {
    // QEMU stopped: SIGTERM stays pending, so the default action must go on to SIGKILL.
    stoppedPid = qemuPid(doms.default.name);
    expect(stoppedPid).toBeGreaterThan(0);
    process.kill(stoppedPid!, 'SIGSTOP');

    const t0 = Date.now();
    saved = fs.readFileSync(backing);
    await breakLoop(dev, backing);

    await waitFor(`${LS} declared lost`, async () => /lockspace LSLOOP1 lost: renewals failed for 8 s/.test(log(A!)) || undefined, 30_000, 100);
    const lostAfter = (Date.now() - t0) / 1000;
    // Lost 8 s after the last successful renewal began (the line matched above): that one began
    // at most a renewal interval (2·io + 0.5 s) plus one renewal's I/O (≤ io) before the break,
    // its time in whole seconds (up to 1 s earlier): never sooner than 3.5 s after the break
    // (the same bound as test/agent/leaseloss.test.ts; 4.7 s was seen).
    expect(lostAfter).toBeGreaterThanOrEqual(8 - (2 + 0.5) - 1 - 1);
    expect(lostAfter).toBeLessThan(15);

    expect(await waitDomState(doms.poweroff.name, /^shut off \(destroyed\)/)).toBeTruthy();
    expect(await waitDomState(doms.pause.name, /^paused/)).toBeTruthy();
    expect(await waitDomState(doms.default.name, /^shut off/, 20_000)).toBeTruthy();
    stoppedPid = undefined;

    const text = log(A!);
    expect(text).toMatch(/lease lost for la-e2e-lf-poweroff .*lockspace LSLOOP1 lost.*on_lockfailure=poweroff: destroying it/);
    expect(text).toMatch(/lease lost for la-e2e-lf-pause .*on_lockfailure=pause: pausing it/);
    expect(text).toMatch(/lease lost for la-e2e-lf-default \(.*pid \d+\).*sending SIGTERM, SIGKILL in 3 s/);
    expect(text).toMatch(/la-e2e-lf-default .* ignored SIGTERM for 3 s; sending SIGKILL/);
    expect(text).toMatch(/lease lost for la-e2e-lf-restart .*on_lockfailure=restart: destroying it and starting it again/);
    // restart: destroyed (STOPPED released its disk lease); the agent waits for LSLOOP1 (lost)
    // to join again before it starts the domain, so libvirtd does not hold it in a hook meanwhile.
    await waitFor('the restart\'s destroy', async () => /released 1 lease\(s\) of la-e2e-lf-restart: libvirt stopped it/.test(log(A!)) || undefined, 10_000, 100);
    await waitFor('the restart to wait for LSLOOP1', async () => /restart of la-e2e-lf-restart \(.*\) waits for lockspace LSLOOP1 to join/.test(log(A!)) || undefined, 10_000, 100);
    expect(await domState(doms.restart.name)).toMatch(/^shut off/);
    // restart of the transient domain: destroyed, gone from libvirt, waiting for LSLOOP1 too
    expect(log(A!)).toMatch(/lease lost for la-e2e-lf-transient .*on_lockfailure=restart: destroying it and starting it again/);
    await waitFor('the transient domain\'s destroy', async () => /released 1 lease\(s\) of la-e2e-lf-transient: libvirt stopped it/.test(log(A!)) || undefined, 10_000, 100);
    await waitFor('the transient restart to wait for LSLOOP1', async () => /restart of la-e2e-lf-transient \(.*\) waits for lockspace LSLOOP1 to join/.test(log(A!)) || undefined, 10_000, 100);
    expect((await virsh(['domstate', transient.name])).stderr).toMatch(/failed to get domain/);

    // The others gave up their disk leases too (stopped, or paused).
    for (const a of ['poweroff', 'pause', 'default'] as const) {
      await waitFor(`${a}: disk lease released`, async () => !(await status(A!)).owners.find((o) => o.uuid === doms[a].uuid)?.leases.length || undefined, 10_000, 100);
    }
  });

  it('restart: once the storage is back and LSLOOP1 rejoined (at host_dead), the waiting restarts start both domains (the transient one from its XML), each running with both leases', async () => {
    await repairLoop(dev, backing, saved!);
    await waitFor('LSLOOP1 rejoined', async () => (/joined lockspace LSLOOP1 as host_id 1 generation (\d+)/.exec(log(A!).split('rejoining in').pop()!) ?? undefined), 90_000, 200);
    expect(await waitDomState(doms.restart.name, /^running/, 30_000)).toBeTruthy();
    await waitFor('the restarted domain to hold both leases', async () => {
      const o = (await status(A!)).owners.find((x) => x.uuid === doms.restart.uuid);
      return o?.leases.map((l) => l.resource).sort().join(' ') === [md5(doms.restart.disk), 'k-restart'].sort().join(' ') || undefined;
    }, 20_000, 100);
    const ls = (await status(A!)).lockspaces.find((l) => l.name === LS)!;
    expect(ls.state).toBe('joined');
    expect(ls.generation).toBeGreaterThan(generation);
    // and the transient domain, from the configuration read before its destroy
    expect(await waitDomState(transient.name, /^running/, 30_000)).toBeTruthy();
    await waitFor('the restarted transient domain to hold both leases', async () => {
      const o = (await status(A!)).owners.find((x) => x.uuid === transient.uuid);
      return o?.leases.map((l) => l.resource).sort().join(' ') === [md5(transient.disk), 'k-transient'].sort().join(' ') || undefined;
    }, 20_000, 100);
    expect(log(A!)).toMatch(/restarted la-e2e-lf-transient \(.*\) from its configuration \(a transient domain\)/);
    expect((await virshOk(['dominfo', transient.name]))).toMatch(/Persistent:\s+no/);
  }, 150_000);
});
