/**
 * The fencing tests' setup (docs/fencing.md): one lease directory at io_timeout 1 (host_dead =
 * 8·io + 60 = 68 s), lockagent host 1 holding leases for owner processes the test spawns, and
 * a real sanlock 3.8.5 daemon as host 2 asking for the same lease over and over.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { decodeLeader } from '../../src/ondisk';
import { AgentHost, cli, startHost, status, stopGuard, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';

export { waitJustRenewed } from '../helpers/agentproc';
import { makeTempDir, removeTempDir, sanlock, sparseFile } from '../helpers/cli';
import { addLockspace, Holder, killHolder, killSanlockDaemon, SanlockDaemon, sanlockCommand, startSanlockDaemon, stopSanlockDaemon } from '../helpers/sanlockd';

export const LS = '__LIBVIRT__DISKS__';
export const HOST_DEAD = 8 * 1 + 60;
/** the guard's deadline after the last renewal: host_dead - 5 s (src/agent/guard.ts GUARD_MARGIN_S) */
export const GUARD_AT = HOST_DEAD - 5;
/** this process's CLOCK_MONOTONIC in seconds: the clock of the delta-lease timestamps */
export const mono = (): number => Number(process.hrtime.bigint()) / 1e9;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Owner {
  proc: ChildProcess;
  pid: number;
  /** mono() when it exited */
  exitedAt?: number;
  alive(): boolean;
}

export interface FencingCluster {
  base: string;
  leaseDir: string;
  lsPath: string;
  h1: AgentHost;
  sl?: SanlockDaemon;
  owners: Owner[];
  holders: Holder[];
  res(r: string): string;
}

export interface GuardStatus {
  state: string;
  pid?: number;
  restarts: number;
  lastGapMs?: number;
  lockspaces: Array<{ lockspace: string; secondsLeft: number; pids: number[]; pending?: string[]; minMarginMs?: number }>;
  kills: Array<{ lockspace: string; pid: number; what: string }>;
}

export async function fencing(h: AgentHost): Promise<{ layer: string; mode: string; protected: boolean; guard: GuardStatus }> {
  return ((await status(h)) as unknown as { fencing: { layer: string; mode: string; protected: boolean; guard: GuardStatus } }).fencing;
}

export async function startCluster(prefix: string, resources: string[], o: { extra?: string; sanlockHost?: boolean } = {}): Promise<FencingCluster> {
  const base = makeTempDir(prefix);
  const leaseDir = path.join(base, 'leases');
  fs.mkdirSync(leaseDir);
  const lsPath = sparseFile(path.join(leaseDir, LS), 1048576);
  expect((await sanlock(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
  for (const r of resources) {
    const f = sparseFile(path.join(leaseDir, r), 1048576);
    expect((await sanlock(['direct', 'init', '-r', `${LS}:${r}:${f}:0`])).stdout).toBe('init done 0\n');
  }
  const c: FencingCluster = {
    base, leaseDir, lsPath, owners: [], holders: [],
    h1: writeHostConfig(base, 1, { leaseDir, extra: o.extra }),
    res: (r) => `${LS}:${r}:${path.join(leaseDir, r)}:0`,
  };
  startHost(c.h1);
  if (o.sanlockHost !== false) {
    c.sl = await startSanlockDaemon(base, 'sanlockB');
    await Promise.all([addLockspace(c.sl, `${LS}:2:${lsPath}:0`, 1), waitJoined(c.h1, LS, 60_000)]);
  } else {
    await waitJoined(c.h1, LS, 60_000);
  }
  return c;
}

/** Everything the test started, whatever state it is in: a stopped agent is continued first. */
export async function stopCluster(c: FencingCluster | undefined): Promise<void> {
  if (!c) return;
  if (c.h1.proc?.pid) {
    try { process.kill(c.h1.proc.pid, 'SIGCONT'); } catch { /* gone */ }
  }
  await stopHost(c.h1, 'SIGKILL').catch(() => undefined);
  stopGuard(c.h1);
  for (const o of c.owners) o.proc.kill('SIGKILL');
  for (const h of c.holders) await killHolder(h).catch(() => undefined);
  await stopSanlockDaemon(c.sl).catch(() => undefined);
  await killSanlockDaemon(c.sl).catch(() => undefined);
  if (!process.env.KEEP_LOGS) removeTempDir(c.base);
}

/** An owner that ignores SIGTERM (as a busy QEMU may): only SIGKILL stops it. */
export function spawnOwner(c: FencingCluster): Owner {
  const proc = spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 1; done'], { stdio: 'ignore' });
  const o: Owner = { proc, pid: proc.pid!, alive: () => o.exitedAt === undefined };
  proc.once('exit', () => { o.exitedAt = mono(); });
  c.owners.push(o);
  return o;
}

export async function acquireFor(c: FencingCluster, resource: string, uuid: string, pid?: number): Promise<void> {
  const r = await cli(c.h1, ['client', 'acquire', '-r', c.res(resource), '--owner', uuid, '--name', uuid, ...(pid ? ['--pid', String(pid)] : [])]);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
}

/** Until the guard has `pid` armed in the lockspace. */
export function waitArmed(h: AgentHost, pid: number, timeoutMs = 10_000): Promise<GuardStatus> {
  return waitFor(`the guard to arm pid ${pid}`, async () => {
    const f = await fencing(h);
    return f.guard.state === 'running' && f.guard.lockspaces.some((l) => l.lockspace === LS && l.pids.includes(pid)) ? f.guard : undefined;
  }, timeoutMs, 100);
}

/** Until host 1 has just renewed (so that a stop right now leaves the youngest possible delta lease). */
/** Host 1's delta-lease timestamp on disk (its last renewal, CLOCK_MONOTONIC seconds). */
export function deltaTs(c: FencingCluster, hostId = 1): number {
  const b = Buffer.alloc(512);
  const fd = fs.openSync(c.lsPath, 'r');
  fs.readSync(fd, b, 0, 512, (hostId - 1) * 512);
  fs.closeSync(fd);
  return decodeLeader(b, 0).timestamp;
}

export interface Attempt { start: number; end: number; code: number | null; output: string }

/**
 * sanlock host 2 asks for `resource` until it gets it (`client command -r RES -c /bin/true`:
 * acquire, run, release). A refusal while host 1 lives is -243 at once; once host 1 stops
 * renewing, an attempt waits in paxos for host_dead. `prog` runs while the lease is held.
 */
export function host2Poller(c: FencingCluster, resource: string, prog: string[] = ['/bin/true']) {
  const attempts: Attempt[] = [];
  let stopped = false;
  let current: Holder | undefined;
  const done = (async () => {
    while (!stopped) {
      const a: Attempt = { start: mono(), end: 0, code: null, output: '' };
      current = sanlockCommand(c.sl!, c.res(resource), prog);
      c.holders.push(current);
      const r = await current.done;
      a.end = mono();
      a.code = r.code;
      a.output = r.output;
      attempts.push(a);
      if (r.code === 0) return a;
      await sleep(500);
    }
    return undefined;
  })();
  return {
    attempts,
    acquired: done,
    async stop(): Promise<void> {
      stopped = true;
      await killHolder(current);
      await done;
    },
  };
}

/**
 * Stop host 1's agent (kill -STOP) while host 2 asks for `resource` over and over; continue the
 * agent once host 2 holds the lease, or after `ms`. `summary(last)` lists host 2's attempts in
 * seconds after host 1's last renewal `last`.
 */
export async function stopHost1UntilHost2Acquires(c: FencingCluster, resource: string, ms = 130_000) {
  const poll = host2Poller(c, resource);
  process.kill(c.h1.proc!.pid!, 'SIGSTOP');
  const stoppedAt = mono();
  let acquired: Attempt | undefined;
  try {
    acquired = await Promise.race([poll.acquired, new Promise<undefined>((r) => setTimeout(() => r(undefined), ms).unref())]);
  } finally {
    await poll.stop();
    process.kill(c.h1.proc!.pid!, 'SIGCONT');
  }
  const summary = (last: number) => poll.attempts.map((a) => `${(a.start - last).toFixed(1)}..${(a.end - last).toFixed(1)} s: rc ${a.code}`).join('\n');
  return { acquired, attempts: poll.attempts, stoppedAt, summary };
}
