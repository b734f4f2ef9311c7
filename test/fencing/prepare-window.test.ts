/**
 * The window between libvirt's `prepare` (the hook: the domain's leases are taken, QEMU does not
 * exist yet) and the STARTED event (the agent learns QEMU's pid). If the agent stops in that
 * window, the guard still has the domain: it was armed with libvirt's pid file and the domain's
 * uuid, and at its deadline it kills the process the pid file names, after checking that its
 * command line carries `-uuid <uuid>` — before a real sanlock 3.8.5 host 2 can take the lease at
 * host_dead. No libvirtd here: the test plays libvirt (`domain_prepare` over the control socket,
 * as the hook does, then a process with QEMU's arguments writing its pid file), so no STARTED
 * event ever comes. Before the guard knew pid files, nothing was killed and host 2 took the lease
 * while "QEMU" ran.
 */
import { ChildProcess, spawn } from 'child_process';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { callAgent } from '../../src/control/client';
import { guardLog, log, waitFor } from '../helpers/agentproc';
import { describeSanlockDaemons } from '../helpers/sanlockd';
import { deltaTs, fencing, FencingCluster, GUARD_AT, HOST_DEAD, LS, mono, startCluster, stopCluster, stopHost1UntilHost2Acquires, waitJustRenewed } from './cluster';

jest.setTimeout(200_000);

/** Where the agent looks for QEMU pid files (libvirt's default; the daemon's DomainManager). */
const QEMU_RUN_DIR = '/run/libvirt/qemu';

describeSanlockDaemons('fencing guard: the agent stops between prepare and the STARTED event', () => {
  let c: FencingCluster | undefined;
  let qemu: ChildProcess | undefined;
  let pidFile: string | undefined;
  beforeAll(async () => { c = await startCluster('la-fence-prep-', ['r1']); });
  afterAll(async () => {
    qemu?.kill('SIGKILL');
    if (pidFile) fs.rmSync(pidFile, { force: true });
    await stopCluster(c);
  });

  it('the guard kills the QEMU named by the pid file before host 2 can acquire; host 2 acquires afterwards', async () => {
    const cl = c!;
    const name = `la-fence-prep-${process.pid}`;
    const uuid = randomUUID();
    fs.mkdirSync(QEMU_RUN_DIR, { recursive: true });
    pidFile = path.join(QEMU_RUN_DIR, `${name}.pid`);
    fs.rmSync(pidFile, { force: true });
    const xml = `<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><memory unit='KiB'>65536</memory><vcpu>1</vcpu>` +
      `<os><type arch='x86_64'>hvm</type></os><devices><lease><lockspace>${LS}</lockspace><key>r1</key>` +
      `<target path='${path.join(cl.leaseDir, 'r1')}' offset='0'/></lease></devices></domain>`;
    const r = await callAgent(cl.h1.socket, { op: 'domain_prepare', xml }, 30_000) as { leases: number };
    expect(r.leases).toBe(1);
    // Armed before QEMU exists: by its pid file.
    await waitFor('the guard to arm the domain by its pid file', async () => {
      const f = await fencing(cl.h1);
      return f.guard.state === 'running' && f.guard.lockspaces.some((l) => l.lockspace === LS && l.pending?.includes(uuid));
    }, 10_000, 100);

    // "QEMU" starts as libvirt starts it, ignores SIGTERM, and writes its pid file.
    qemu = spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 1; done', '-name', `guest=${name},debug-threads=on`, '-uuid', uuid], { stdio: 'ignore' });
    let qemuExitedAt: number | undefined;
    qemu.once('exit', () => { qemuExitedAt = mono(); });
    fs.writeFileSync(pidFile, `${qemu.pid}\n`);

    await waitJustRenewed(cl.h1);
    const { acquired, summary: attempts } = await stopHost1UntilHost2Acquires(cl, 'r1');
    const last = deltaTs(cl);
    const summary = attempts(last) +
      `\nQEMU died ${qemuExitedAt !== undefined ? (qemuExitedAt - last).toFixed(1) : 'never'} s after the last renewal\nguard log:\n${guardLog(cl.h1)}`;
    expect({ acquired: !!acquired, summary }).toEqual({ acquired: true, summary });
    expect({ qemuDead: qemuExitedAt !== undefined, summary }).toEqual({ qemuDead: true, summary });
    expect(qemuExitedAt!).toBeLessThan(acquired!.end);
    expect(qemuExitedAt! - last).toBeGreaterThanOrEqual(GUARD_AT - 1);
    expect(acquired!.end - last).toBeGreaterThanOrEqual(HOST_DEAD - 1);
    expect(guardLog(cl.h1)).toMatch(new RegExp(`lockspace ${LS}: SIGKILL pid ${qemu.pid} \\(QEMU of domain ${uuid}, from ${pidFile.replace(/[.]/g, '\\.')}\\)`));
    // The continued agent hears of the kill from the guard.
    await waitFor('the agent to report the kill', async () => (await fencing(cl.h1)).guard.kills.some((k) => k.pid === qemu!.pid && k.what === 'killed'), 30_000, 200);
    expect(log(cl.h1)).toMatch(new RegExp(`fencing guard SIGKILLed pid ${qemu.pid}`));
  });
});
