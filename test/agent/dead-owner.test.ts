/**
 * A dead owner pid is proof (issue 14 item 3), on real agents and real processes.
 *
 * Host 1's agent has a libvirt_uri that cannot be reached (a socket path that does not exist),
 * so libvirt can never say whether a domain still runs. Two owners keyed by domain UUIDs hold a
 * disk lease each, registered with the pid of a process. While host 1's agent is down (kill -9),
 * the first owner's process is killed. After the restart, that owner is gone — its process is,
 * whatever libvirt would say — so its lease is released and host 2 gets it. The second owner's
 * process still runs: only libvirt could say whether it is gone, libvirt cannot be asked, so its
 * lease stays held and host 2 is refused.
 */
import * as path from 'path';
import { LeaseBed, makeLeaseBed, removeTempDir, Sleepers } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
const GONE_UUID = '0e5a1c2d-1111-4a5b-8c9d-00000000d001';
const LIVE_UUID = '0e5a1c2d-2222-4a5b-8c9d-00000000d002';
jest.setTimeout(150000);

describe('after an agent restart, an owner whose recorded process is dead is gone', () => {
  let bed: LeaseBed;
  let base: string;
  let leaseDir: string;
  let h1: AgentHost;
  let h2: AgentHost;
  const owners = new Sleepers();
  const res = (r: string) => bed.res(r);
  const leaderOf = (r: string) => bed.leaderOf(r);
  const sleeper = () => owners.spawn();

  beforeAll(async () => {
    bed = await makeLeaseBed('la-dead-owner-', ['disk-gone', 'disk-live'], LS);
    ({ base, leaseDir } = bed);
    const unreachable = `qemu+unix:///system?socket=${path.join(base, 'no-libvirtd', 'libvirt-sock')}`;
    h1 = startHost(writeHostConfig(base, 1, { leaseDir, libvirtUri: unreachable }));
    h2 = startHost(writeHostConfig(base, 2, { leaseDir }));
    await Promise.all([waitJoined(h1), waitJoined(h2)]);
  });

  afterAll(async () => {
    owners.killAll();
    await stopHost(h1, 'SIGKILL');
    await stopHost(h2, 'SIGKILL');
    removeTempDir(base);
  });

  it('releases the lease of the dead owner (host 2 gets it) and keeps the one of the live owner, with libvirt unreachable', async () => {
    const gone = sleeper();
    const live = sleeper();
    expect((await cli(h1, ['client', 'acquire', '-r', res('disk-gone'), '--owner', GONE_UUID, '--name', 'vm-gone', '--pid', String(gone.pid)])).code).toBe(0);
    expect((await cli(h1, ['client', 'acquire', '-r', res('disk-live'), '--owner', LIVE_UUID, '--name', 'vm-live', '--pid', String(live.pid)])).code).toBe(0);
    expect(leaderOf('disk-gone')).toMatchObject({ ownerId: 1 });
    expect(leaderOf('disk-gone').timestamp).not.toBe(0);

    await stopHost(h1, 'SIGKILL');
    gone.kill('SIGKILL');
    await new Promise((r) => gone.once('exit', r));
    startHost(h1);
    await waitJoined(h1);

    await waitFor('the dead owner\'s lease to be released', async () => leaderOf('disk-gone').timestamp === 0 || undefined, 30000, 200);
    expect(log(h1)).toMatch(/cannot connect to libvirt/);
    expect(log(h1)).toMatch(new RegExp(`owner vm-gone \\(${GONE_UUID}\\): its process ${gone.pid} is gone; releasing its leases`));
    // Recovery goes owner by owner: the live one may be re-adopted just after the dead one's
    // release, and it shows in status while its lease is being taken back.
    const st = await waitFor('the live owner to be re-adopted', async () => {
      const s = await status(h1);
      return s.owners.find((o) => o.uuid === LIVE_UUID)?.leases.length ? s : undefined;
    }, 30000, 200);
    expect(st.owners.find((o) => o.uuid === GONE_UUID)).toBeUndefined();
    expect(st.owners.find((o) => o.uuid === LIVE_UUID)?.leases.map((l) => l.resource)).toEqual(['disk-live']);

    const other = sleeper();
    const took = await cli(h2, ['client', 'acquire', '-r', res('disk-gone'), '--owner', 'h2-owner', '--name', 'h2', '--pid', String(other.pid)]);
    expect(took.stderr).toBe('');
    expect(took.code).toBe(0);
    expect(leaderOf('disk-gone')).toMatchObject({ ownerId: 2 });

    // The live owner: its process runs and libvirt cannot be asked, so its lease stays held.
    const refused = await cli(h2, ['client', 'acquire', '-r', res('disk-live'), '--owner', 'h2-owner', '--name', 'h2', '--pid', String(other.pid)]);
    expect(refused.code).toBe(1);
    expect(leaderOf('disk-live')).toMatchObject({ ownerId: 1 });
    expect(leaderOf('disk-live').timestamp).not.toBe(0);
    expect(live.exitCode).toBeNull();
  });
});
