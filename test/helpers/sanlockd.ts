/**
 * Real sanlock 3.8.5 daemons as hosts for multi-host tests, as root without systemd or a
 * watchdog (docs/testing.md, "Hosts on one machine"):
 *
 *   SANLOCK_RUN_DIR=<dir> SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -L -1 -S -1 -e NAME
 *
 * Each daemon gets its own run directory (socket, pid file) and runs in its own process group,
 * so it can be killed -9 as a host crash without touching anything else. Lease holders are
 * `sanlock client command -r RES -c /bin/sleep N` processes (a plain `acquire -p` needs a pid
 * registered with sanlock), also in their own process groups.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { waitFor as waitForEvery } from './agentproc';
import { run, RunResult, SANLOCK, sanlockInstalled } from './cli';

/** Polls every 100 ms (sanlock answers fast). */
const waitFor = <T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, stepMs = 100): Promise<T> => waitForEvery(what, fn, timeoutMs, stepMs);

export interface SanlockDaemon {
  name: string;
  dir: string;
  runDir: string;
  env: NodeJS.ProcessEnv;
  proc: ChildProcess;
  pid: number;
  logFile: string;
  exited: Promise<void>;
}

export type HostState = 'LIVE' | 'FAIL' | 'DEAD' | 'UNKNOWN' | 'FREE';

export interface GetsHost {
  hostId: number;
  generation: number;
  timestamp: number;
  state: HostState;
}

/** True when this process may start sanlock daemons (root). */
export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * describe() for suites that run real sanlock daemons: they need root and the binary. Without
 * them the suite is skipped with a loud warning on a developer machine, and fails in CI.
 */
export function describeSanlockDaemons(name: string, fn: () => void): void {
  const missing = !isRoot() ? 'root (sanlock daemons run as root here)' : !sanlockInstalled() ? `${SANLOCK}` : '';
  if (!missing) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      it(`needs ${missing}`, () => {
        throw new Error(`cannot run "${name}": it needs ${missing}; CI runs the suites as root with the Debian sanlock package`);
      });
    });
    return;
  }
  console.warn(`\n*** SKIPPING "${name}": it needs ${missing}. Run the tests as root with sanlock 3.8.5 installed to check interop with real sanlock daemons. ***\n`);
  describe.skip(name, fn);
}


/** Start a daemon named `name` (its delta-lease host name) with its run dir under `base/name`. */
export async function startSanlockDaemon(base: string, name: string): Promise<SanlockDaemon> {
  const dir = path.join(base, `sanlock-${name}`);
  const runDir = path.join(dir, 'run');
  fs.mkdirSync(runDir, { recursive: true });
  const env = { ...process.env, SANLOCK_RUN_DIR: runDir, SANLOCK_PRIVILEGED: '0' };
  const logFile = path.join(dir, 'sanlock.log');
  const out = fs.openSync(logFile, 'a');
  const proc = spawn(SANLOCK, ['daemon', '-D', '-w', '0', '-L', '-1', '-S', '-1', '-e', name], {
    env, stdio: ['ignore', out, out], detached: true,
  });
  fs.closeSync(out);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const d: SanlockDaemon = { name, dir, runDir, env, proc, pid: proc.pid!, logFile, exited };
  await waitFor(`sanlock daemon ${name} to answer`, async () => (await sanlockClient(d, ['status'], 5000)).code === 0 || undefined, 15_000);
  return d;
}

/** `sanlock client <args>` against this daemon. */
export function sanlockClient(d: SanlockDaemon, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run(SANLOCK, ['client', ...args], { env: d.env, timeoutMs });
}

/** `sanlock client add_lockspace -o IO -s LS:ID:PATH:OFF` (3 s at io_timeout 1 on a lockspace initialised with -o 1). */
export async function addLockspace(d: SanlockDaemon, lockspace: string, ioTimeout = 1): Promise<void> {
  const r = await sanlockClient(d, ['add_lockspace', '-o', String(ioTimeout), '-s', lockspace], 300_000);
  if (r.code !== 0 || !/add_lockspace\S* done 0/.test(r.stdout)) {
    throw new Error(`sanlock ${d.name}: add_lockspace ${lockspace} failed (rc ${r.code}):\n${r.stdout}${r.stderr}`);
  }
}

/** `client gets -s LS -h 1`: the hosts this daemon sees in lockspace `ls`. */
export async function getsHosts(d: SanlockDaemon, ls: string): Promise<GetsHost[]> {
  const r = await sanlockClient(d, ['gets', '-s', ls, '-h', '1'], 10_000);
  if (r.code !== 0) throw new Error(`sanlock ${d.name}: gets failed (rc ${r.code}): ${r.stdout}${r.stderr}`);
  const hosts: GetsHost[] = [];
  for (const m of r.stdout.matchAll(/^h (\d+) gen (\d+) timestamp (\d+) (\w+)/gm)) {
    hosts.push({ hostId: Number(m[1]), generation: Number(m[2]), timestamp: Number(m[3]), state: m[4] as HostState });
  }
  return hosts;
}

export interface HostStatusEntry {
  hostId: number;
  timestamp: number;
  lastCheck: number;
  lastLive: number;
  ownerId: number;
  ownerGeneration: number;
  ioTimeout: number;
  ownerName: string;
}

/** `client host_status -s LS -D`: every host_id the daemon has a record of, free ones included. */
export async function hostStatus(d: SanlockDaemon, ls: string): Promise<HostStatusEntry[]> {
  const r = await sanlockClient(d, ['host_status', '-s', ls, '-D'], 10_000);
  if (r.code !== 0) throw new Error(`sanlock ${d.name}: host_status failed (rc ${r.code}): ${r.stdout}${r.stderr}`);
  const out: HostStatusEntry[] = [];
  let cur: Record<string, string> | undefined;
  const flush = () => {
    if (!cur) return;
    out.push({
      hostId: Number(cur.id), timestamp: Number(cur.timestamp), lastCheck: Number(cur.last_check), lastLive: Number(cur.last_live),
      ownerId: Number(cur.owner_id), ownerGeneration: Number(cur.owner_generation), ioTimeout: Number(cur.io_timeout), ownerName: cur.owner_name ?? '',
    });
  };
  for (const line of r.stdout.split('\n')) {
    const h = /^(\d+) timestamp (\d+)/.exec(line);
    if (h) {
      flush();
      cur = { id: h[1], timestamp: h[2] };
      continue;
    }
    const kv = /^\s+(\w+)=(.*)$/.exec(line);
    if (kv && cur) cur[kv[1]] = kv[2];
  }
  flush();
  return out;
}

/**
 * Wait until daemon `d` reports `hostId` in `state`. LIVE/FAIL/DEAD/UNKNOWN come from
 * `gets -h 1`, which leaves free hosts out; FREE (sanlock's flag for timestamp 0) is read from
 * `host_status -D`.
 */
export function waitHostState(d: SanlockDaemon, ls: string, hostId: number, state: HostState, timeoutMs = 30_000): Promise<GetsHost> {
  return waitFor(`sanlock ${d.name} to see host ${hostId} ${state}`, async () => {
    if (state === 'FREE') {
      const e = (await hostStatus(d, ls)).find((x) => x.hostId === hostId);
      if (!e || e.timestamp !== 0 || e.ownerId !== hostId) return undefined;
      if ((await getsHosts(d, ls)).some((x) => x.hostId === hostId)) return undefined;
      return { hostId, generation: e.ownerGeneration, timestamp: 0, state: 'FREE' as HostState };
    }
    const h = (await getsHosts(d, ls)).find((x) => x.hostId === hostId);
    return h?.state === state ? h : undefined;
  }, timeoutMs, 500);
}

export interface Holder {
  proc: ChildProcess;
  pid: number;
  /** resolves with the exit code (null after a signal) and stdout+stderr */
  done: Promise<{ code: number | null; output: string }>;
}

/**
 * `sanlock client command -r RES -c PROG ARGS...`: registers, acquires, then execs PROG in the
 * same pid, which holds the lease until it exits (sanlock then releases it). Its own process
 * group, so a host crash can take it down too.
 */
export function sanlockCommand(d: SanlockDaemon, res: string, prog: string[]): Holder {
  const proc = spawn(SANLOCK, ['client', 'command', '-r', res, '-c', ...prog], { env: d.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  proc.stdout!.on('data', (b: Buffer) => { output += b.toString(); });
  proc.stderr!.on('data', (b: Buffer) => { output += b.toString(); });
  const done = new Promise<{ code: number | null; output: string }>((resolve) => proc.once('close', (code) => resolve({ code, output })));
  return { proc, pid: proc.pid!, done };
}

/** Hold RES with `sleep SECONDS` and wait until the daemon lists it, or fail with sanlock's output. */
export async function holdWithSleep(d: SanlockDaemon, res: string, seconds = 600): Promise<Holder> {
  const h = sanlockCommand(d, res, ['/bin/sleep', String(seconds)]);
  const name = res.split(':').slice(0, 2).join(':');
  let finished: { code: number | null; output: string } | undefined;
  void h.done.then((r) => { finished = r; });
  await waitFor(`sanlock ${d.name} to hold ${name}`, async () => {
    if (finished) throw new Error(`sanlock client command exited (rc ${finished.code}) without holding ${name}: ${finished.output.trim()}`);
    const st = await sanlockClient(d, ['status'], 5000);
    return new RegExp(`^r ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:.* p ${h.pid}`, 'm').test(st.stdout) || undefined;
  }, 30_000, 200);
  return h;
}

/** Kill a holder (its process group) and wait for it to exit. */
export async function killHolder(h: Holder | undefined): Promise<void> {
  if (!h || h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  try {
    process.kill(-h.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  await h.done;
}

/** A host crash: SIGKILL to the daemon's process group (the daemon and its helper). */
export async function killSanlockDaemon(d: SanlockDaemon | undefined): Promise<void> {
  if (!d || d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  try {
    process.kill(-d.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  await d.exited;
}

/** Clean stop: `client shutdown -f 1` (kills its lease holders, leaves its lockspaces), then SIGKILL if it lingers. */
export async function stopSanlockDaemon(d: SanlockDaemon | undefined): Promise<void> {
  if (!d || d.proc.exitCode !== null || d.proc.signalCode !== null) return;
  await sanlockClient(d, ['shutdown', '-f', '1'], 10_000).catch(() => undefined);
  const t = setTimeout(() => { try { process.kill(-d.pid, 'SIGKILL'); } catch { /* gone */ } }, 10_000);
  await d.exited;
  clearTimeout(t);
}

/** SIGSTOP / SIGCONT the daemon (a stalled host; renewals stop while it is stopped). */
export function signalSanlockDaemon(d: SanlockDaemon, sig: 'SIGSTOP' | 'SIGCONT'): void {
  process.kill(-d.pid, sig);
}
