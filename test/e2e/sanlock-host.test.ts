/**
 * The other host is the REAL sanlock daemon (3.8.5), not a lockagent: it joins lockagent's
 * __LIBVIRT__DISKS__ lockspace as host 2 and holds a domain's disk lease for a process
 * (`sanlock client command -r ... -c /bin/sleep 600`, as libvirt's plugin holds it for QEMU).
 * `virsh start` through lockagent's hook is refused naming host 2; once the holder exits (sanlock
 * releases its leases), the start goes through.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { lockagent, makeTempDir, removeTempDir, SANLOCK, sparseFile } from '../helpers/cli';
import {
  defineDomain, describeE2E, domState, installHook, md5, removeDomains, removeHook, sanlockClient, SanlockHost,
  startServices, startSanlock, stopSanlock, suiteLock, TestDomain, URI, virsh,
} from '../helpers/libvirt';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120_000);

describeE2E('e2e: a real sanlock daemon as host 2 against lockagent\'s hook (real libvirtd + QEMU)', () => {
  let unlock: (() => void) | undefined;
  let base = '';
  let leaseDir = '';
  let A: AgentHost | undefined;
  let S: SanlockHost | undefined;
  let holder: ChildProcess | undefined;
  let dom: TestDomain;
  const res = () => `${LS}:${md5(dom.disk)}:${leaseDir}/${md5(dom.disk)}:0`;

  beforeAll(async () => {
    unlock = await suiteLock('sanlock-host');
    await startServices();
    await removeDomains();
    base = makeTempDir('la-e2e-sanlock');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    A = startHost(writeHostConfig(base, 1, { leaseDir, libvirtUri: URI }));
    await waitJoined(A); // A creates __LIBVIRT__DISKS__ with io_timeout 1, so sanlock joins in ~3 s
    await installHook(A.socket);
    S = await startSanlock(base, 'node02');
    const add = await sanlockClient(S, ['add_lockspace', '-o', '1', '-s', `${LS}:2:${path.join(leaseDir, LS)}:0`]);
    expect(add.stdout + add.stderr).toMatch(/add_lockspace(_timeout)? done 0/);
    dom = await defineDomain(base, 'la-e2e-sl');
  }, 600_000);

  afterAll(async () => {
    holder?.kill('SIGKILL');
    await removeDomains().catch(() => undefined);
    await removeHook().catch(() => undefined);
    await stopSanlock(S).catch(() => undefined);
    if (A) await stopHost(A, 'SIGKILL');
    if (!process.env.LOCKAGENT_E2E_KEEP) removeTempDir(base);
    unlock?.();
  }, 120_000);

  it('virsh start is refused while sanlock (host 2) holds the disk lease, and allowed after the holder exits', async () => {
    sparseFile(path.join(leaseDir, md5(dom.disk)), 1048576);
    expect((await lockagent(['direct', 'init', '-r', res()])).code).toBe(0);
    holder = spawn(SANLOCK, ['client', 'command', '-r', res(), '-c', '/bin/sleep', '600'], { env: S!.env, stdio: 'ignore' });
    await waitFor('sanlock to hold the disk lease', async () => {
      const st = await sanlockClient(S!, ['status']);
      return st.stdout.includes(`r ${LS}:${md5(dom.disk)}:`) || undefined;
    }, 20_000, 100);

    const r = await virsh(['start', dom.name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/lockagent: disk .*la-e2e-sl\.qcow2 is leased by host 2 \(node node02\)/);
    expect(await domState(dom.name)).toMatch(/^shut off/);

    holder.kill('SIGKILL'); // the registered process exits: sanlock releases its lease
    await waitFor('sanlock to release the disk lease', async () => {
      const st = await sanlockClient(S!, ['status']);
      return !st.stdout.includes(`r ${LS}:${md5(dom.disk)}:`) || undefined;
    }, 20_000, 100);
    const ok = await virsh(['start', dom.name]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(await domState(dom.name)).toMatch(/^running/);
    const owner = (await status(A!)).owners.find((o) => o.uuid === dom.uuid);
    expect(owner?.leases.map((l) => l.resource)).toEqual([md5(dom.disk)]);

    // and now sanlock is the one refused: -243, SANLK_ACQUIRE_IDLIVE (held by a live host)
    const again = await sanlockClient(S!, ['command', '-r', res(), '-c', '/bin/true']);
    expect(again.code).not.toBe(0);
    expect(again.stdout + again.stderr).toMatch(/-243/);
  });
});
