/**
 * Issue 12 (a): the agent is stopped (kill -STOP) while it holds a lease for a running owner.
 * Nothing renews; the agent's own lease-failure action cannot run. The fencing guard must
 * SIGKILL the owner before another host — a real sanlock 3.8.5 daemon polling for the lease —
 * can take it at host_dead (68 s at io_timeout 1), and that host then gets it.
 */
import { guardLog, log } from '../helpers/agentproc';
import { describeSanlockDaemons } from '../helpers/sanlockd';
import {
  acquireFor, deltaTs, FencingCluster, GUARD_AT, HOST_DEAD, spawnOwner, startCluster, stopCluster, stopHost1UntilHost2Acquires, waitArmed, waitJustRenewed,
} from './cluster';

jest.setTimeout(200_000);

describeSanlockDaemons('fencing guard: the agent is stopped (kill -STOP)', () => {
  let c: FencingCluster | undefined;
  beforeAll(async () => { c = await startCluster('la-fence-stop-', ['r1']); });
  afterAll(() => stopCluster(c));

  it('(a) the guard kills the owner before host 2 can acquire; host 2 acquires afterwards', async () => {
    const cl = c!;
    const owner = spawnOwner(cl);
    await acquireFor(cl, 'r1', 'vm-a', owner.pid);
    await waitArmed(cl.h1, owner.pid);
    await waitJustRenewed(cl.h1);
    const poll = await stopHost1UntilHost2Acquires(cl, 'r1');
    const { acquired, stoppedAt } = poll;
    const last = deltaTs(cl);
    const summary = poll.summary(last) +
      `\nstopped ${(stoppedAt - last).toFixed(1)} s after the last renewal; owner died ${owner.exitedAt !== undefined ? (owner.exitedAt - last).toFixed(1) : 'never'}` +
      `\nguard log:\n${guardLog(cl.h1)}`;
    // Host 2 got the lease, only after the owner was dead.
    expect({ acquired: !!acquired, summary }).toEqual({ acquired: true, summary });
    expect({ ownerDead: owner.exitedAt !== undefined, summary }).toEqual({ ownerDead: true, summary });
    expect(owner.exitedAt!).toBeLessThan(acquired!.end);
    expect(poll.attempts.filter((a) => a.code === 0)).toHaveLength(1);
    // It was the guard, at its deadline: not before the agent's own failure point (8·io), and
    // host 2 got the lease no earlier than host_dead.
    expect(owner.exitedAt! - last).toBeGreaterThanOrEqual(GUARD_AT - 1);
    expect(acquired!.end - last).toBeGreaterThanOrEqual(HOST_DEAD - 1);
    expect(guardLog(cl.h1)).toMatch(new RegExp(`lockspace __LIBVIRT__DISKS__: SIGKILL pid ${owner.pid}: no lease renewal reached the guard`));
    expect(log(cl.h1)).not.toMatch(/sending SIGKILL/);
  });
});
