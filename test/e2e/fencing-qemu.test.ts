/**
 * Issue 12 (a) and (c) with a real QEMU domain under the real libvirtd and the installed hook:
 * the disk lease is taken through the hook, the agent learns QEMU's pid from the STARTED event and
 * registers it (with its start time) with the fencing guard (docs/fencing.md). Host 2 is a real
 * sanlock 3.8.5 daemon in __LIBVIRT__DISKS__ asking for the disk's lease over and over (io_timeout
 * 1: host_dead 68 s after host 1's last renewal, the guard's deadline 63 s).
 *  (c) The agent is killed -9 and restarted 5 s later: QEMU is untouched, nothing is killed, and
 *      host 2 is refused throughout, past the moment the old guard deadline would have fired.
 *  (a) The agent is stopped (kill -STOP): the guard SIGKILLs QEMU, and QEMU is dead before host 2
 *      gets the lease; host 2 gets it afterwards.
 */
import * as fs from 'fs';
import * as path from 'path';
import { identify, isSame, ProcessId } from '../../src/agent/process';
import { guardLog, guardPids, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { makeTempDir } from '../helpers/cli';
import {
  defineDomain, describeE2E, domState, installHook, md5, qemuPid, removeDomains, removeHook, startServices, suiteLock, TestDomain, URI,
  virshOk, waitDomState,
} from '../helpers/libvirt';
import { addLockspace, startSanlockDaemon } from '../helpers/sanlockd';
import {
  deltaTs, fencing, FencingCluster, GUARD_AT, host2Poller, LS, mono, sleep, stopCluster, waitArmed, waitJustRenewed,
} from '../fencing/cluster';

jest.setTimeout(240_000);

/** Polls /proc for QEMU (pid + start time): when it stopped being that running process. */
function watchDeath(id: ProcessId) {
  const w: { diedAtMs?: number; stop(): void } = { stop: () => clearInterval(t) };
  const t = setInterval(() => {
    if (w.diedAtMs === undefined && !isSame(id)) w.diedAtMs = Date.now();
  }, 50);
  return w;
}

describeE2E('e2e: the fencing guard and a real QEMU domain (real libvirtd, installed hook, sanlock 3.8.5 as host 2)', () => {
  let unlock: (() => void) | undefined;
  let c: FencingCluster | undefined;
  let dom: TestDomain;
  let stoppedAgent: number | undefined;
  const watchers: Array<{ stop(): void }> = [];

  beforeAll(async () => {
    unlock = await suiteLock('fencing-qemu');
    await startServices();
    await removeDomains();
    const base = makeTempDir('la-e2e-fence-');
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    c = {
      base, leaseDir, lsPath: path.join(leaseDir, LS), owners: [], holders: [],
      h1: writeHostConfig(base, 1, { leaseDir, libvirtUri: URI }),
      res: (r) => `${LS}:${r}:${path.join(leaseDir, r)}:0`,
    };
    startHost(c.h1);
    await waitJoined(c.h1, LS, 60_000); // host 1 creates __LIBVIRT__DISKS__ with io_timeout 1
    await installHook(c.h1.socket);
    c.sl = await startSanlockDaemon(base, 'node02');
    await addLockspace(c.sl, `${LS}:2:${c.lsPath}:0`, 1);
    dom = await defineDomain(base, 'la-e2e-fence');
  }, 600_000);

  afterAll(async () => {
    for (const w of watchers) w.stop();
    if (stoppedAgent) {
      try { process.kill(stoppedAgent, 'SIGCONT'); } catch { /* gone */ }
    }
    await removeDomains().catch(() => undefined);
    await removeHook().catch(() => undefined);
    await stopCluster(c); // agent, guard, host 2's holders and daemon, the temp dir
    unlock?.();
  }, 180_000);

  /** Start the domain through the hook; resolves with QEMU once the guard has it armed. */
  async function startDomain(): Promise<{ id: ProcessId; guardPid: number }> {
    // A case that failed half-way may have left the domain running: each case starts afresh.
    if (/^running|^paused/.test(await domState(dom.name))) {
      await virshOk(['destroy', dom.name]);
      await waitFor('the disk lease to be released', async () => !(await status(c!.h1)).owners.find((o) => o.uuid === dom.uuid)?.leases.length || undefined, 20_000, 100);
    }
    await virshOk(['start', dom.name]);
    const pid = qemuPid(dom.name);
    expect(pid).toBeGreaterThan(0);
    const id = identify(pid!)!;
    expect(id).toBeDefined();
    const g = await waitArmed(c!.h1, id.pid, 20_000);
    const owner = (await status(c!.h1)).owners.find((o) => o.uuid === dom.uuid);
    expect(owner?.leases.map((l) => l.resource)).toEqual([md5(dom.disk)]);
    return { id, guardPid: g.pid! };
  }

  it('(c) kill -9 and a restart after 5 s: QEMU is untouched, nothing is killed, host 2 is refused throughout', async () => {
    const cl = c!;
    const { id, guardPid } = await startDomain();
    const death = watchDeath(id);
    watchers.push(death);
    const genBefore = (await status(cl.h1)).lockspaces.find((l) => l.name === LS)!.generation;
    await waitJustRenewed(cl.h1);
    const poll = host2Poller(cl, md5(dom.disk));
    await stopHost(cl.h1, 'SIGKILL');
    const last = deltaTs(cl);
    await sleep(5000);
    startHost(cl.h1);
    const genAfter = await waitJoined(cl.h1, LS, 30_000);
    // The restarted agent re-adopts the lease and registers QEMU again with the guard that outlived it.
    const after = await waitArmed(cl.h1, id.pid, 20_000);
    // Past the deadline the guard had when the agent died, with a few seconds to spare.
    while (mono() < last + GUARD_AT + 4) await sleep(500);
    await poll.stop();
    death.stop();
    const summary = poll.attempts.map((a) => `${(a.start - last).toFixed(1)}..${(a.end - last).toFixed(1)} s: rc ${a.code} ${a.output.trim().split('\n').pop()}`).join('\n');
    expect({ acquiredByHost2: poll.attempts.filter((a) => a.code === 0).length, summary }).toEqual({ acquiredByHost2: 0, summary });
    expect(poll.attempts.length).toBeGreaterThan(5);
    expect(death.diedAtMs).toBeUndefined();
    expect(isSame(id)).toBe(true);
    expect(await domState(dom.name)).toMatch(/^running/);
    expect(genAfter).toBe(genBefore);
    expect(after.pid).toBe(guardPid);
    expect(guardPids(cl.h1)).toEqual([guardPid]);
    expect(guardLog(cl.h1)).not.toMatch(/SIGKILL/);
    expect((await fencing(cl.h1)).guard.kills).toEqual([]);
    expect(log(cl.h1)).not.toMatch(/sending SIGTERM|sending SIGKILL|lease lost for/);

    // Done with this QEMU: the next case starts the domain afresh.
    await virshOk(['destroy', dom.name]);
    await waitFor('the disk lease to be released', async () => !(await status(cl.h1)).owners.find((o) => o.uuid === dom.uuid)?.leases.length || undefined, 20_000, 100);
  });

  it('(a) kill -STOP: the guard kills QEMU before host 2 can acquire the disk lease; host 2 acquires afterwards', async () => {
    const cl = c!;
    const { id } = await startDomain();
    const death = watchDeath(id);
    watchers.push(death);
    await waitJustRenewed(cl.h1);
    // What host 2 runs once it holds the lease: the time it got it.
    const poll = host2Poller(cl, md5(dom.disk), ['/bin/sh', '-c', 'echo "host 2 holds the lease at $(date +%s%N)"']);
    stoppedAgent = cl.h1.proc!.pid!;
    process.kill(stoppedAgent, 'SIGSTOP');
    let acquired;
    try {
      acquired = await Promise.race([poll.acquired, new Promise<undefined>((r) => setTimeout(() => r(undefined), 130_000).unref())]);
    } finally {
      await poll.stop();
      death.stop();
      process.kill(stoppedAgent, 'SIGCONT');
      stoppedAgent = undefined;
    }
    const last = deltaTs(cl);
    const m = acquired ? /host 2 holds the lease at (\d+)/.exec(acquired.output) : null;
    const acquiredAtMs = m ? Number(m[1]) / 1e6 : undefined;
    const monoOfWall = mono() - Date.now() / 1000;
    const rel = (ms?: number) => (ms === undefined ? 'never' : `${(ms / 1000 + monoOfWall - last).toFixed(1)} s`);
    const summary = poll.attempts.map((a) => `${(a.start - last).toFixed(1)}..${(a.end - last).toFixed(1)} s: rc ${a.code}`).join('\n') +
      `\nafter the last renewal: QEMU ${id.pid} died ${rel(death.diedAtMs)}, host 2 got the lease ${rel(acquiredAtMs)}` +
      `\nguard log:\n${guardLog(cl.h1)}`;
    // Host 2 got the lease, once, and only after QEMU was dead.
    expect({ acquired: acquiredAtMs !== undefined, summary }).toEqual({ acquired: true, summary });
    expect({ qemuDead: death.diedAtMs !== undefined, summary }).toEqual({ qemuDead: true, summary });
    expect({ qemuDiedFirst: death.diedAtMs! < acquiredAtMs!, summary }).toEqual({ qemuDiedFirst: true, summary });
    expect(poll.attempts.filter((a) => a.code === 0)).toHaveLength(1);
    // It was the guard (the agent was stopped), checking QEMU's start time first.
    expect(guardLog(cl.h1)).toMatch(new RegExp(`lockspace ${LS}: SIGKILL pid ${id.pid}: no lease renewal reached the guard`));
    // The continued agent hears of the kill, and libvirt of QEMU's end.
    await waitFor('the agent to report the guard\'s kill', async () =>
      (await fencing(cl.h1)).guard.kills.some((k) => k.pid === id.pid && k.what === 'killed') || undefined, 20_000, 200);
    expect(await waitDomState(dom.name, /^shut off/, 60_000)).toBeTruthy();
  });
});
