/**
 * Issue 12 (c), (d): what the guard must not do, and its own death.
 *  (c) The agent is killed -9 and restarted 5 s later: it continues its delta lease (same
 *      generation), re-registers with the guard that outlived it, and the deadline moves on —
 *      the owner is untouched, nothing is killed, and sanlock host 2 is refused throughout,
 *      past the moment the old deadline would have fired.
 *  (d) The guard is killed -9 while leases are held: the agent notices within 2·io_timeout,
 *      starts a new one, re-registers the leases, and status shows the gap.
 * And while no guard runs, an acquire for an owner with a pid is refused, naming the guard.
 */
import * as path from 'path';
import { cli, guardLog, guardPids, log, startHost, status, stopGuard, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { describeSanlockDaemons } from '../helpers/sanlockd';
import {
  acquireFor, deltaTs, fencing, FencingCluster, GUARD_AT, host2Poller, LS, mono, sleep, spawnOwner, startCluster, stopCluster, waitArmed, waitJustRenewed,
} from './cluster';

jest.setTimeout(200_000);

describeSanlockDaemons('fencing guard: agent restart and guard death', () => {
  let c: FencingCluster | undefined;
  beforeAll(async () => { c = await startCluster('la-fence-restart-', ['r1', 'r2']); });
  afterAll(() => stopCluster(c));

  it('(c) kill -9 and a restart after 5 s: the owner is untouched, nothing is killed, host 2 is refused throughout', async () => {
    const cl = c!;
    const owner = spawnOwner(cl);
    await acquireFor(cl, 'r1', 'vm-c', owner.pid);
    const before = await waitArmed(cl.h1, owner.pid);
    const genBefore = (await status(cl.h1)).lockspaces[0].generation;
    await waitJustRenewed(cl.h1);
    const poll = host2Poller(cl, 'r1');
    await stopHost(cl.h1, 'SIGKILL');
    const last = deltaTs(cl);
    await sleep(5000);
    startHost(cl.h1);
    const genAfter = await waitJoined(cl.h1, LS, 30_000);
    // The guard the first agent started is still the one, and has the owner again.
    const after = await waitArmed(cl.h1, owner.pid, 20_000);
    // Past the deadline the guard had when the agent died, with a few seconds to spare.
    while (mono() < last + GUARD_AT + 4) await sleep(500);
    await poll.stop();
    const summary = poll.attempts.map((a) => `${(a.start - last).toFixed(1)}..${(a.end - last).toFixed(1)} s: rc ${a.code} ${a.output.trim().split('\n').pop()}`).join('\n');
    expect({ acquiredByHost2: poll.attempts.filter((a) => a.code === 0).length, summary }).toEqual({ acquiredByHost2: 0, summary });
    expect(poll.attempts.length).toBeGreaterThan(5);
    expect(owner.alive()).toBe(true);
    expect(genAfter).toBe(genBefore);
    expect(after.pid).toBe(before.pid);
    expect(guardPids(cl.h1)).toEqual([before.pid]);
    expect(guardLog(cl.h1)).not.toMatch(/SIGKILL/);
    expect((await fencing(cl.h1)).guard.kills).toEqual([]);
    expect(log(cl.h1)).toMatch(/fencing guard pid \d+ .*owners are SIGKILLed at host_dead - 5 s/);
  });

  it('(d) the guard killed -9 while leases are held: the agent restarts it within 2 x io_timeout and status shows the gap', async () => {
    const cl = c!;
    const owner = spawnOwner(cl);
    await acquireFor(cl, 'r2', 'vm-d', owner.pid);
    const before = await waitArmed(cl.h1, owner.pid);
    process.kill(before.pid!, 'SIGKILL');
    const back = await waitFor('a new guard', async () => {
      const f = await fencing(cl.h1);
      return f.guard.state === 'running' && f.guard.pid !== before.pid && f.guard.lockspaces.some((l) => l.pids.includes(owner.pid)) ? f : undefined;
    }, 10_000, 100);
    expect(back.guard.restarts).toBe(1);
    expect(back.guard.lastGapMs).toBeLessThan(2 * 1000);
    expect(back.protected).toBe(true);
    expect(log(cl.h1)).toMatch(new RegExp(`fencing guard \\(pid ${before.pid}\\) is gone`));
    expect(log(cl.h1)).toMatch(/fencing guard is back \(pid \d+\) after \d+\.\d s without it; leases re-registered/);
    const text = await cli(cl.h1, ['status']);
    expect(text.stdout).toMatch(/guard: running pid \d+, 1 restart\(s\), last gap \d+\.\d s/);
    expect(owner.alive()).toBe(true);
  });

  it('while no guard runs, an acquire for an owner with a pid is refused, naming the guard and the remedy', async () => {
    const cl = c!;
    const h3 = writeHostConfig(cl.base, 3, { leaseDir: cl.leaseDir });
    startHost(h3, { env: { LOCKAGENT_GUARD_BIN: path.join(cl.base, 'no-such-guard') } });
    try {
      await waitJoined(h3, LS, 30_000);
      const owner = spawnOwner(cl);
      const r = await cli(h3, ['client', 'acquire', '-r', cl.res('r1'), '--owner', 'vm-e', '--name', 'vm-e', '--pid', String(owner.pid)]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/the fencing guard \(lockagent-guard, .*guard\.sock\) is not running, so leases of vm-e could not be enforced/);
      expect(r.stderr).toMatch(/try again in a few seconds/);
      const st = await fencing(h3);
      expect(st).toMatchObject({ layer: 'guard', protected: false, guard: { state: 'down' } });
      expect((await cli(h3, ['status'])).stdout).toMatch(/fencing: guard, mode enforce\W+UNPROTECTED[\s\S]*guard: down/);
    } finally {
      await stopHost(h3, 'SIGKILL');
      stopGuard(h3);
    }
  });
});
