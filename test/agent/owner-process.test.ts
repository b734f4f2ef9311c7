/**
 * Owner processes (issue 11 item 5), on a real agent with real processes: a registered pid must
 * be a running process other than init and the agent; an owner whose process exits loses its
 * leases (as sanlock releases a registered client's when it goes away); and a pid that now names
 * another process is not that owner — after a restart its leases are released, not re-adopted
 * for the stranger, and the stranger is never signalled.
 */
import { ChildProcess, spawn } from 'child_process';
import { LeaseBed, makeLeaseBed, removeTempDir, Sleepers } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(120000);

/** Start `sleep 600` under a given pid by setting the kernel's last-pid counter (root); undefined if another fork won the race. */
async function spawnWithPid(pid: number): Promise<ChildProcess | undefined> {
  // A shell writes ns_last_pid and forks at once, in a loop: far fewer forks of other processes
  // slip in between than between a write from here and a spawn (other suites run in parallel).
  // The shell waits for its `sleep`, so it exits when the stranger does.
  const script = `for i in $(seq 500); do echo ${pid - 1} > /proc/sys/kernel/ns_last_pid; sleep 600 & c=$!; ` +
    `if [ "$c" = ${pid} ]; then echo ok; wait "$c"; exit 0; fi; kill -9 "$c"; done; echo fail; exit 1`;
  const sh = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const said = await new Promise<string>((resolve) => {
    let out = '';
    sh.stdout!.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('\n')) resolve(out.trim()); });
    sh.once('exit', () => resolve(out.trim()));
  });
  return said === 'ok' ? sh : undefined;
}

describe('owner processes: registration, exit, reused pids', () => {
  let bed: LeaseBed;
  let host: AgentHost;
  const owners = new Sleepers();
  const children = owners.all;
  const res = (r: string) => bed.res(r);
  const leaderOf = (r: string) => bed.leaderOf(r);
  const sleeper = () => owners.spawn();

  beforeAll(async () => {
    bed = await makeLeaseBed('la-ownerproc-', ['p1', 'p2', 'p3'], LS);
    host = startHost(writeHostConfig(bed.base, 1, { leaseDir: bed.leaseDir }));
    await waitJoined(host);
  });

  afterAll(async () => {
    owners.killAll();
    await stopHost(host, 'SIGKILL');
    removeTempDir(bed.base);
  });

  it('refuses pid 1, the agent\'s own pid and a pid with no process, and holds nothing after', async () => {
    const one = await cli(host, ['client', 'acquire', '-r', res('p1'), '--owner', 'o-1', '--name', 'o1', '--pid', '1']);
    expect(one.code).toBe(1);
    expect(one.stderr).toMatch(/pid 1 cannot own leases: it is init/);
    const agentPid = host.proc!.pid!;
    const self = await cli(host, ['client', 'acquire', '-r', res('p1'), '--owner', 'o-1', '--name', 'o1', '--pid', String(agentPid)]);
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(new RegExp(`pid ${agentPid} cannot own leases: it is the agent itself`));
    const gone = spawn('true');
    await new Promise((r) => gone.once('exit', r));
    const none = await cli(host, ['client', 'acquire', '-r', res('p1'), '--owner', 'o-1', '--name', 'o1', '--pid', String(gone.pid)]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(new RegExp(`no process with pid ${gone.pid} is running`));
    expect((await status(host)).owners.find((o) => o.uuid === 'o-1')).toBeUndefined();
    expect(leaderOf('p1').timestamp).toBe(0);
  });

  it('releases the leases of an owner whose process exits', async () => {
    const owner = sleeper();
    expect((await cli(host, ['client', 'acquire', '-r', res('p2'), '--owner', 'o-2', '--name', 'o2', '--pid', String(owner.pid)])).code).toBe(0);
    expect(leaderOf('p2').timestamp).not.toBe(0);
    owner.kill('SIGKILL');
    await waitFor('the exited owner\'s lease to be released', async () => leaderOf('p2').timestamp === 0 || undefined, 15000, 100);
    await waitFor('the owner to be forgotten', async () => !(await status(host)).owners.some((o) => o.uuid === 'o-2') || undefined, 5000);
    expect(log(host)).toMatch(new RegExp(`owner o2 \\(o-2\\): its process ${owner.pid} exited; releasing its 1 lease\\(s\\)`));
  });

  it('after a restart, a pid reused by another process is not the owner: its leases are released and the stranger is left alone', async () => {
    const owner = sleeper();
    const pid = owner.pid!;
    expect((await cli(host, ['client', 'acquire', '-r', res('p3'), '--owner', 'o-3', '--name', 'o3', '--pid', String(pid)])).code).toBe(0);
    await stopHost(host, 'SIGKILL');
    owner.kill('SIGKILL');
    await new Promise((r) => owner.once('exit', r));
    const stranger = await spawnWithPid(pid);
    if (!stranger) throw new Error(`could not start a process with pid ${pid} again (other forks won the race 500 times)`);
    children.push(stranger);
    startHost(host);
    await waitJoined(host);
    await waitFor('the lease of the gone owner to be released', async () => leaderOf('p3').timestamp === 0 || undefined, 30000, 200);
    expect((await status(host)).owners.find((o) => o.uuid === 'o-3')).toBeUndefined();
    expect(stranger.exitCode).toBeNull();
    expect(stranger.signalCode).toBeNull();
    process.kill(pid, 'SIGKILL'); // the stranger (the shell then exits too)
  });
});
