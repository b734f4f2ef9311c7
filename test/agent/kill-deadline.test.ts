/**
 * No kill outlives host_dead (issue 11 item 2), on real processes: lockagent host 1 holds a
 * lease for an owner that ignores SIGTERM; a real sanlock daemon (host 2) keeps trying to take
 * that lease. The agent is stopped (SIGSTOP) for 36 s at io_timeout 1 and continued: its
 * lockspace is lost on waking, and with kill_grace_seconds 40 a plain "SIGKILL after the grace
 * period" would come after host_dead (68 s after the last renewal), when host 2 already has the
 * lease. The owner must be dead before host 2 acquires.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, cli, log, startHost, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { cliEntry, makeTempDir, readLeaderOf, removeTempDir, sanlock, sparseFile } from '../helpers/cli';
import {
  addLockspace, describeSanlockDaemons, Holder, killHolder, killSanlockDaemon, SanlockDaemon, sanlockCommand,
  startSanlockDaemon, stopSanlockDaemon, waitHostState,
} from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
const mono = () => Number(process.hrtime.bigint()) / 1e9;
jest.setTimeout(240_000);

describeSanlockDaemons('kill deadline: no kill outlives host_dead', () => {
  let base: string;
  let leaseDir: string;
  let host: AgentHost | undefined;
  let sl: SanlockDaemon | undefined;
  let owner: ChildProcess | undefined;
  const holders: Holder[] = [];

  beforeAll(() => {
    cliEntry();
    base = makeTempDir('la-killdl-');
  });
  afterAll(async () => {
    owner?.kill('SIGKILL');
    if (host?.proc) { try { host.proc.kill('SIGCONT'); } catch { /* gone */ } }
    if (host) await stopHost(host, 'SIGKILL');
    for (const h of holders) await killHolder(h).catch(() => undefined);
    await stopSanlockDaemon(sl).catch(() => undefined);
    await killSanlockDaemon(sl).catch(() => undefined);
    removeTempDir(base);
  });

  it('an owner ignoring SIGTERM is dead before host 2 can take its lease, after the agent was stopped for 36 s', async () => {
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const lsPath = sparseFile(path.join(leaseDir, LS), 1048576);
    expect((await sanlock(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    const resPath = sparseFile(path.join(leaseDir, 'R'), 1048576);
    expect((await sanlock(['direct', 'init', '-r', `${LS}:R:${resPath}:0`])).stdout).toBe('init done 0\n');
    const res = `${LS}:R:${resPath}:0`;
    const leader = () => readLeaderOf(resPath);

    // The deadline must decide, not the grace period.
    host = startHost(writeHostConfig(base, 1, { leaseDir, ioTimeout: 1, extra: 'kill_grace_seconds = 40' }));
    sl = await startSanlockDaemon(base, 'sanlockB');
    await Promise.all([waitJoined(host, LS), addLockspace(sl, `${LS}:2:${lsPath}:0`, 1)]);
    await waitHostState(sl, LS, 1, 'LIVE', 30_000);

    // The registered pid itself ignores SIGTERM (exec keeps the ignored disposition).
    owner = spawn('sh', ['-c', 'trap "" TERM; exec sleep 600'], { stdio: 'ignore' });
    const pid = owner.pid!;
    await waitFor('the owner to exec sleep', async () => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep' || undefined, 5000, 20);
    let ownerDied: number | undefined;
    owner.once('exit', () => { ownerDied = mono(); });
    const acq = await cli(host, ['client', 'acquire', '-r', res, '--owner', 'victim', '--name', 'victim', '--pid', String(pid)]);
    expect(acq.code).toBe(0);
    expect(leader().ownerId).toBe(1);

    // Host 2 tries to take the lease once a second, and we watch the lease on disk for its name.
    let host2Acquired: number | undefined;
    let stop = false;
    const watchDisk = (async () => {
      while (!stop && host2Acquired === undefined) {
        const l = leader();
        if (l.ownerId === 2 && l.timestamp !== 0) host2Acquired = mono();
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const tryHost2 = (async () => {
      while (!stop && host2Acquired === undefined) {
        const h = sanlockCommand(sl!, res, ['/bin/sleep', '600']);
        holders.push(h);
        await Promise.race([h.done, new Promise((r) => setTimeout(r, 1000))]);
      }
    })();

    host.proc!.kill('SIGSTOP');
    await new Promise((r) => setTimeout(r, 36_000));
    host.proc!.kill('SIGCONT');

    await waitFor('host 2 to acquire the lease', async () => host2Acquired !== undefined || undefined, 120_000, 200);
    // The owner may still be alive now (that is the bug): give it a moment to show either way.
    await waitFor('the owner to die', async () => ownerDied !== undefined || undefined, 60_000, 200).catch(() => undefined);
    stop = true;
    await Promise.all([watchDisk, tryHost2]);

    const text = log(host);
    expect(text).toMatch(/lockspace __LIBVIRT__DISKS__ lost: renewals failed/);
    expect(ownerDied).toBeDefined();
    expect(ownerDied!).toBeLessThan(host2Acquired!);
    expect(text).toMatch(/victim \(victim, pid \d+\).*SIGKILL now: other hosts may take its leases in \d+ s \(host_dead\), kill_grace_seconds 40 cut short/);
  });
});
