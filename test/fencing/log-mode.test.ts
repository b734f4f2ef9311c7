/**
 * Issue 12 (e): fencing_mode = log, for calibrating io_timeout on a new cluster. The agent is
 * stopped (kill -STOP) holding a lease for an owner: when the guard's deadline passes, it logs
 * the kill it would make and kills nothing; the agent reports the would-be kill when it is
 * back, and status shows the smallest margin between a renewal and the guard's deadline.
 */
import { cli, guardLog, log, waitFor } from '../helpers/agentproc';
import { acquireFor, fencing, FencingCluster, GUARD_AT, spawnOwner, startCluster, stopCluster, waitArmed, waitJustRenewed } from './cluster';

jest.setTimeout(200_000);

describe('fencing guard: fencing_mode = log', () => {
  let c: FencingCluster | undefined;
  beforeAll(async () => { c = await startCluster('la-fence-log-', ['r1'], { extra: 'fencing_mode = "log"', sanlockHost: false }); });
  afterAll(() => stopCluster(c));

  it('(e) nothing is killed; the would-be kill is logged and reported, and status shows the smallest margin', async () => {
    const cl = c!;
    const owner = spawnOwner(cl);
    await acquireFor(cl, 'r1', 'vm-log', owner.pid);
    await waitArmed(cl.h1, owner.pid);
    // A few renewals: each one measures how much time the previous deadline had left.
    await waitFor('a margin measured', async () => (await fencing(cl.h1)).guard.lockspaces[0]?.minMarginMs !== undefined || undefined, 10_000, 200);
    const before = await fencing(cl.h1);
    expect(before).toMatchObject({ layer: 'guard', mode: 'log', protected: false });
    expect(before.guard.lockspaces[0].minMarginMs!).toBeGreaterThan((GUARD_AT - 2 * 1 - 2) * 1000);
    expect((await cli(cl.h1, ['status'])).stdout).toMatch(/fencing: guard, mode log\W+UNPROTECTED[\s\S]*SMALLEST_MARGIN[\s\S]*__LIBVIRT__DISKS__ +in \d+\.\d s +\d+ +\d+\.\d s/);

    await waitJustRenewed(cl.h1);
    process.kill(cl.h1.proc!.pid!, 'SIGSTOP');
    let aliveAtWouldKill: boolean;
    try {
      await waitFor('the guard to log the kill it would make', async () => new RegExp(`would SIGKILL pid ${owner.pid}`).test(guardLog(cl.h1)) || undefined, 100_000, 500);
      aliveAtWouldKill = owner.alive();
    } finally {
      process.kill(cl.h1.proc!.pid!, 'SIGCONT');
    }
    expect(aliveAtWouldKill).toBe(true);
    expect(guardLog(cl.h1)).not.toMatch(/: SIGKILL pid/);
    // Reported to the agent once it runs again (it kept its connection).
    const after = await waitFor('the would-be kill in status', async () => {
      const f = await fencing(cl.h1);
      return f.guard.kills.some((k) => k.pid === owner.pid && k.what === 'would-kill') ? f : undefined;
    }, 10_000, 200);
    expect(after.guard.kills.filter((k) => k.what === 'killed')).toEqual([]);
    expect(log(cl.h1)).toMatch(new RegExp(`fencing guard would have SIGKILLed pid ${owner.pid}.*\\(fencing_mode = log\\)`));
  });
});
