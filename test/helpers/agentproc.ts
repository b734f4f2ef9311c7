/**
 * Real lockagent daemons as separate processes ("hosts") over one lease directory, driven
 * through the CLI and the control socket, as an operator would.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { callAgent } from '../../src/control/client';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/daemon/nodeflags';
import { cliEntry, lockagent, ROOT, RunResult } from './cli';

export interface AgentHost {
  id: number;
  dir: string;
  conf: string;
  socket: string;
  logFile: string;
  proc?: ChildProcess;
  exited?: Promise<number | null>;
}

export interface HostOptions {
  leaseDir: string;
  ioTimeout?: number;
  extra?: string;
  hostName?: string;
  /** "" = no libvirt */
  libvirtUri?: string;
}

export function writeHostConfig(base: string, id: number, o: HostOptions): AgentHost {
  const dir = path.join(base, `host${id}`);
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'sock');
  const conf = path.join(dir, 'lockagent.conf');
  // `extra` may set a key of the defaults below: its line replaces theirs (a key set twice is a config error).
  const extraKeys = new Set((o.extra ?? '').split('\n').map((l) => /^\s*([a-z_]+)\s*=/.exec(l)?.[1]).filter(Boolean));
  fs.writeFileSync(conf, [
    'auto_disk_leases = 1',
    `disk_lease_dir = "${o.leaseDir}"`,
    `host_id = ${id}`,
    `io_timeout = ${o.ioTimeout ?? 1}`,
    `socket_path = "${socket}"`,
    `state_path = "${path.join(dir, 'state.db')}"`,
    'log_file = ""',
    'log_level = "debug"',
    `host_name = "${o.hostName ?? `node0${id}`}"`,
    `libvirt_uri = "${o.libvirtUri ?? ''}"`,
    'kill_grace_seconds = 3',
  ].filter((l) => !extraKeys.has(l.split(' ')[0])).concat(o.extra ?? '').join('\n'));
  return { id, dir, conf, socket, logFile: path.join(dir, 'agent.log') };
}

/**
 * Start the daemon of host `h`. `env`: extra environment; `wrap`: a command that runs the daemon
 * (e.g. nsenter into a test-bed host's mount namespace) and must exec it. `pipes`: its stdout and
 * stderr are pipes (h.proc.stdout, h.proc.stderr) instead of the log file.
 */
export function startHost(h: AgentHost, o: { env?: NodeJS.ProcessEnv; wrap?: string[]; pipes?: boolean } = {}): AgentHost {
  const out = fs.openSync(h.logFile, 'a');
  // The fencing guard of this checkout (the test CLI build lives under node_modules/.cache,
  // which may be another checkout's when node_modules is shared).
  const guard = path.join(ROOT, 'native', 'build', 'Release', 'lockagent-guard');
  const argv = [...(o.wrap ?? []), process.execPath, ...DAEMON_NODE_FLAGS, cliEntry(), 'daemon', '-c', h.conf];
  h.proc = spawn(argv[0], argv.slice(1), {
    stdio: o.pipes ? ['ignore', 'pipe', 'pipe'] : ['ignore', out, out], env: { ...process.env, ...DAEMON_ENV, LOCKAGENT_SOCKET: '', LOCKAGENT_GUARD_BIN: guard, ...o.env },
  });
  fs.closeSync(out);
  h.exited = new Promise((resolve) => h.proc!.once('exit', (code) => resolve(code)));
  return h;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30000, stepMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

interface StatusJson {
  lockspaces: Array<{ name: string; state: string; generation?: number; renewals?: Array<{ timestamp: number }> }>;
  owners: Array<{ uuid: string; name: string; leases: Array<{ resource: string; lver: number }> }>;
}

export function status(h: AgentHost): Promise<StatusJson> {
  return callAgent(h.socket, { op: 'status' }, 5000) as Promise<StatusJson>;
}

export async function waitJoined(h: AgentHost, lockspace = '__LIBVIRT__DISKS__', timeoutMs = 30000): Promise<number> {
  return waitFor(`host ${h.id} to join ${lockspace}`, async () => {
    const s = await status(h);
    const ls = s.lockspaces.find((l) => l.name === lockspace);
    return ls?.state === 'joined' ? ls.generation : undefined;
  }, timeoutMs);
}

/**
 * Wait until the host renews its delta lease, so that what follows starts just after a renewal.
 * A new renewal is a new timestamp in the status's renewal history (renewals are 2·io apart,
 * whole seconds): seeing it change does not depend on when in a second the renewal fell.
 */
export async function waitJustRenewed(h: AgentHost, lockspace = '__LIBVIRT__DISKS__', timeoutMs = 15000): Promise<void> {
  const newest = async (): Promise<number | undefined> => {
    const ls = (await status(h)).lockspaces.find((l) => l.name === lockspace);
    return ls?.renewals?.length ? ls.renewals[ls.renewals.length - 1].timestamp : undefined;
  };
  const before = await newest();
  await waitFor(`host ${h.id} to renew`, async () => {
    const now = await newest();
    return now !== undefined && now !== before;
  }, timeoutMs, 50);
}

export function cli(h: AgentHost, args: string[]): Promise<RunResult> {
  return lockagent([...args, '-c', h.conf], { timeoutMs: 60000 });
}

export async function stopHost(h: AgentHost, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!h.proc || h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  h.proc.kill(signal);
  await h.exited;
}

export function log(h: AgentHost): string {
  try {
    return fs.readFileSync(h.logFile, 'utf8');
  } catch {
    return '';
  }
}

/** The fencing guard the host's agent started (lockagent-guard --socket <dir>/guard.sock): its pids, found in /proc. */
export function guardPids(h: AgentHost): number[] {
  const sock = path.join(h.dir, 'guard.sock');
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv[0].endsWith('lockagent-guard') && argv[argv.indexOf('--socket') + 1] === sock) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Kill the host's fencing guard (it outlives the agent by design, and would fence later). */
export function stopGuard(h: AgentHost): void {
  for (const pid of guardPids(h)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** The guard's log (guard.log beside the control socket). */
export function guardLog(h: AgentHost): string {
  try {
    return fs.readFileSync(path.join(h.dir, 'guard.log'), 'utf8');
  } catch {
    return '';
  }
}
