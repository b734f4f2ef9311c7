/**
 * Shared set-up for the cleanup tests: in-process lockagent daemons over one lease directory
 * under /tmp (io_timeout 1, no libvirt), lease files in chosen states, and a real sanlock daemon.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { DaemonExtensions, DaemonHandle, startDaemon } from '../../src/daemon/daemon';
import { cleanupExtension } from '../../src/daemon/cleanup';
import { loadConfig } from '../../src/config/config';
import { DirectFile } from '../../src/io/directio';
import { memoryLogger } from '../../src/log/logger';
import {
  buildResourceArea, decodeLeader, DEFAULT_GEOMETRY, freshDeltaLeader, LeaderRecord, sealLeaderInto,
} from '../../src/ondisk';
import { buildProgram } from '../../src/cli/program';
import { CliContext, defaultContext } from '../../src/cli/context';

export const LS = '__LIBVIRT__DISKS__';

export function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30000, stepMs = 200): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export type TestDaemon = DaemonHandle & { logLines: string[]; socket: string; conf: string };

/**
 * A lockagent daemon in this process: its own state db and socket, the shared lease dir.
 * `extra` is more config (it may set cleanup_schedule, "off" otherwise); `ext` more extensions.
 */
export async function startTestDaemon(base: string, leaseDir: string, hostId: number, extra = '', ext: DaemonExtensions = {}): Promise<TestDaemon> {
  const dir = path.join(base, `host${hostId}`);
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'sock');
  const conf = path.join(dir, 'lockagent.conf');
  fs.writeFileSync(conf, [
    'auto_disk_leases = 1',
    `disk_lease_dir = "${leaseDir}"`,
    `host_id = ${hostId}`,
    'io_timeout = 1',
    `socket_path = "${socket}"`,
    `state_path = "${path.join(dir, 'state.db')}"`,
    'log_file = ""',
    'log_stderr = 0',
    `host_name = "node0${hostId}"`,
    'libvirt_uri = ""',
    ...(/^\s*cleanup_schedule\s*=/m.test(extra) ? [] : ['cleanup_schedule = "off"']),
    extra,
  ].join('\n'));
  const { config } = loadConfig(conf);
  const log = memoryLogger();
  const d = await startDaemon(config, { cleanup: cleanupExtension({ jitterMs: 0 }), ...ext }, log);
  return Object.assign(d, { logLines: log.lines, socket, conf });
}

export async function waitJoined(d: DaemonHandle): Promise<void> {
  await d.agent.lockspaces.get(LS)!.waitJoined(30000);
}

/** Wait until `d` sees every host in `ids` in `state`. */
export async function waitHostsState(d: DaemonHandle, ids: number[], state: string, timeoutMs = 30000): Promise<void> {
  await waitFor(`hosts ${ids.join(',')} ${state} on host ${d.config.hostId}`, () => {
    const hosts = d.agent.lockspaces.get(LS)!.hosts();
    return ids.every((id) => hosts.some((h) => h.hostId === id && h.state === state)) || undefined;
  }, timeoutMs, 250);
}

/** Write a file's first bytes (not through the lease code). */
export async function writeAt(p: string, offset: number, data: Buffer): Promise<void> {
  const f = await DirectFile.open(p);
  try {
    await f.write(offset, data, 10000);
  } finally {
    await f.close();
  }
}

/** A fresh resource lease file as libvirt creates it (1 MiB, sanlock's paxos init). */
export async function initLease(p: string, name = path.basename(p)): Promise<void> {
  fs.writeFileSync(p, '');
  fs.truncateSync(p, DEFAULT_GEOMETRY.alignSize);
  await writeAt(p, 0, buildResourceArea({ spaceName: LS, resourceName: name, geometry: DEFAULT_GEOMETRY }));
}

/** Rewrite the leader of a lease file with some fields changed (checksum recomputed). */
export async function patchLeader(p: string, patch: Partial<LeaderRecord>): Promise<void> {
  const sector = fs.readFileSync(p).subarray(0, 512);
  const out = Buffer.alloc(512);
  sealLeaderInto({ ...decodeLeader(sector, 0), ...patch }, out, 0);
  await writeAt(p, 0, out);
}

/** Write host `hostId`'s delta record in the lockspace as if that host had joined (and then stopped). */
export async function writeDeltaRecord(lockspace: string, hostId: number, rec: Partial<LeaderRecord>): Promise<void> {
  const out = Buffer.alloc(512);
  sealLeaderInto({ ...freshDeltaLeader({ spaceName: LS, geometry: DEFAULT_GEOMETRY, ioTimeout: 1 }), ownerId: hostId, ...rec }, out, 0, 47);
  await writeAt(lockspace, (hostId - 1) * 512, out);
}

export function sha256File(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** `lockagent <args>` in this process; resolves to exit code and output. */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  const err: string[] = [];
  let code = 0;
  const ctx: CliContext = {
    ...defaultContext(),
    output: {
      out: (t) => { stdout += Buffer.from(t, 'latin1').toString('utf8'); },
      json: (v) => { stdout += `${JSON.stringify(v, null, 2)}\n`; },
      err: (l) => { err.push(l); },
    },
  };
  const program = buildProgram(ctx, (c) => { code = c; });
  try {
    await program.parseAsync(['node', 'lockagent', ...args]);
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith('commander.')) code = 2;
    else throw e;
  }
  return { code, stdout, stderr: err.join('\n') };
}

// ---- the real sanlock daemon ------------------------------------------------------------------

export const SANLOCK = '/usr/sbin/sanlock';

export interface SanlockDaemon {
  runDir: string;
  proc: ChildProcess;
  env: NodeJS.ProcessEnv;
}

export function sanlockUsable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (!fs.existsSync(SANLOCK)) return `${SANLOCK} is missing`;
  if (!fs.existsSync('/usr/sbin/virt-sanlock-cleanup')) return '/usr/sbin/virt-sanlock-cleanup is missing (package libvirt-sanlock)';
  return undefined;
}

/** `sanlock daemon` as one more host, with its own run directory (docs/testing.md). */
export async function startSanlock(base: string, name: string): Promise<SanlockDaemon> {
  const runDir = path.join(base, `sanlock-${name}`);
  fs.mkdirSync(runDir, { recursive: true });
  const env = { ...process.env, SANLOCK_RUN_DIR: runDir, SANLOCK_PRIVILEGED: '0' };
  const out = fs.openSync(path.join(runDir, 'daemon.log'), 'a');
  const proc = spawn(SANLOCK, ['daemon', '-D', '-w', '0', '-L', '-1', '-S', '-1', '-e', name], { env, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const d = { runDir, proc, env };
  await waitFor('sanlock daemon socket', () => {
    try {
      execFileSync(SANLOCK, ['client', 'status'], { env, stdio: 'pipe' });
      return true;
    } catch {
      return undefined;
    }
  }, 10000, 100);
  return d;
}

export function sanlockClient(d: SanlockDaemon, args: string[], timeoutMs = 60000): string {
  return execFileSync(SANLOCK, ['client', ...args], { env: d.env, stdio: 'pipe', timeout: timeoutMs }).toString();
}

export async function stopSanlock(d: SanlockDaemon | undefined): Promise<void> {
  if (!d || d.proc.exitCode !== null) return;
  const exited = new Promise((r) => d.proc.once('exit', r));
  try {
    sanlockClient(d, ['shutdown', '-f', '1'], 10000);
  } catch {
    d.proc.kill('SIGKILL');
  }
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([exited, new Promise((r) => { timer = setTimeout(r, 5000); })]);
  clearTimeout(timer);
  if (d.proc.exitCode === null) d.proc.kill('SIGKILL');
}
