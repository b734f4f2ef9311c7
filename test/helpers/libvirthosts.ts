/**
 * A test bed of several libvirt "hosts" on one machine, for live migration: each host is a
 * libvirtd in its own mount namespace (scripts/libvirt-host.sh: overlays on /etc, /var, /run,
 * its own host UUID and migration port range, sockets in a shared directory so one virsh
 * reaches every host) with its own lockagent (started inside that namespace, so it reads that
 * libvirtd's QEMU pid files) and the lockagent hook installed in that namespace's /etc. All
 * hosts share one lease directory; a real sanlock daemon can be another host (startSanlock).
 *
 * It never touches the machine's own libvirtd (qemu:///system) that test/e2e uses under
 * suiteLock, so it needs no lock. Every process a host started is stopped by pid (found by the
 * host's mount namespace) in stopBed, on a process exit, and at the next bed's start when the
 * jest run that started it is gone. docs/testing.md describes the bed.
 */
import { execFileSync } from 'child_process';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { AgentHost, startHost, status, stopHost, waitJoined, writeHostConfig } from './agentproc';
import { lockagent, readLeaderOf, ROOT, run, RunResult } from './cli';
import { hookClient, md5, SanlockHost, sanlockClient, startSanlock, TestDomain, virsh, virshOk } from './libvirt';

export const BED_ROOT = '/tmp/lockagent-2host';
const SCRIPT = path.join(ROOT, 'scripts', 'libvirt-host.sh');

export interface LibvirtHost {
  /** host_id of its agent (1, 2, ...) */
  id: number;
  dir: string;
  uri: string;
  uuid: string;
  ports: [number, number];
  holderPid: number;
  libvirtdPid: number;
  agent: AgentHost;
  stopped?: boolean;
}

export interface Bed {
  dir: string;
  leaseDir: string;
  hosts: LibvirtHost[];
}

/** Why the bed cannot run here, or undefined when it can (root, unshare, overlayfs, libvirtd, tini). */
export function bedUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (mount namespaces, libvirtd, QEMU)';
  for (const tool of ['unshare', 'nsenter', 'tini', 'libvirtd', 'virsh']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (scripts/setup.sh installs it)`;
    }
  }
  try {
    execFileSync('unshare', ['--mount', '--propagation', 'private', 'true'], { stdio: 'ignore' });
  } catch {
    return 'unshare --mount does not work here (no CAP_SYS_ADMIN or no mount namespaces)';
  }
  if (!fs.readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'the kernel has no overlayfs';
  return undefined;
}

/** describe, or describe.skip with a loud reason where the bed is impossible; in CI it must run. */
export function describeBed(title: string, fn: () => void): void {
  const why = bedUnavailable();
  if (!why || process.env.CI) {
    describe(title, fn);
    return;
  }
  console.warn(`SKIPPED two-host suite "${title}": ${why}; runs in CI`);
  describe.skip(title, fn);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function stopHostDirSync(dir: string): void {
  try {
    execFileSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore', timeout: 60_000 });
  } catch {
    // best effort: at exit, or a dir half set up
  }
}

/** Beds of jest runs that are gone (killed before their afterAll): stop their hosts. */
function sweepStale(): void {
  if (!fs.existsSync(BED_ROOT)) return;
  for (const d of fs.readdirSync(BED_ROOT)) {
    const dir = path.join(BED_ROOT, d);
    const owner = Number(fs.readFileSync(path.join(dir, 'owner'), 'utf8').trim() || 0) || 0;
    if (owner && pidAlive(owner)) continue;
    for (const h of fs.readdirSync(dir).filter((x) => /^host\d+$/.test(x))) stopHostDirSync(path.join(dir, h));
    if (!process.env.LOCKAGENT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
}

const live = new Set<LibvirtHost>();
let exitHook = false;

/**
 * Start `n` hosts (host_ids 1..n) on one lease directory, each with its agent joined. Port ranges
 * are per jest process (20 ports per host from 49400 up), apart from the machine libvirtd's
 * default 49152-49215.
 */
export interface BedOptions {
  ioTimeout?: number;
  /**
   * The hosts' way in: the qemu hook (default), or the lock-driver plugin (lockagent.so, loaded
   * from the host's own plugin directory with lock_manager = "lockagent"; no hook installed).
   */
  lockDriver?: boolean;
}

export async function startBed(n = 2, opts: BedOptions = {}): Promise<Bed> {
  sweepStale();
  fs.mkdirSync(BED_ROOT, { recursive: true });
  const dir = fs.mkdtempSync(path.join(BED_ROOT, `${process.pid}-`));
  fs.writeFileSync(path.join(dir, 'owner'), `${process.pid}\n`);
  const leaseDir = path.join(dir, 'leases');
  fs.mkdirSync(leaseDir);
  if (!exitHook) {
    exitHook = true;
    // A jest worker that exits without afterAll (a timeout, an uncaught error) still stops its hosts.
    process.once('exit', () => { for (const h of live) stopHostDirSync(h.dir); });
  }
  const base = 49400 + (process.pid % 25) * 20 * n;
  const hosts = await Promise.all(Array.from({ length: n }, (_, i) => startLibvirtHost(dir, leaseDir, i + 1, [base + i * 20, base + i * 20 + 19], opts)));
  return { dir, leaseDir, hosts };
}

async function startLibvirtHost(bedDir: string, leaseDir: string, id: number, ports: [number, number], opts: BedOptions): Promise<LibvirtHost> {
  const dir = path.join(bedDir, `host${id}`);
  const uuid = randomUUID();
  const uri = `qemu+unix:///system?socket=${dir}/sock/libvirt-sock`;
  const agent = writeHostConfig(path.join(dir, 'agent'), id, { leaseDir, libvirtUri: uri, ioTimeout: opts.ioTimeout });
  const qemuConf: string[] = [];
  let env: NodeJS.ProcessEnv | undefined;
  if (opts.lockDriver) {
    // The plugin goes into a directory of the host's own (libvirtd inherits the variable that
    // points there), its settings into the host's /etc/libvirt: the overlay's upper layer,
    // written before the overlay is mounted.
    const pluginDir = path.join(dir, 'lock-driver');
    const il = await lockagent(['install-lockdriver', '--plugin-dir', pluginDir, '--conf-dir', path.join(dir, 'ov', 'etc.upper', 'libvirt'), '--socket', agent.socket]);
    if (il.code !== 0) throw new Error(`lockagent install-lockdriver failed: ${il.stderr}`);
    qemuConf.push('lock_manager = "lockagent"');
    env = { ...process.env, LIBVIRT_LOCK_MANAGER_PLUGIN_DIR: pluginDir };
  } else {
    // The hook goes into the host's own /etc/libvirt/hooks (a private directory of its namespace)
    // before its libvirtd starts, so no SIGHUP is needed.
    const hookDir = path.join(dir, 'priv', 'etc', 'libvirt', 'hooks', 'qemu.d');
    fs.mkdirSync(hookDir, { recursive: true });
    const ih = await lockagent(['install-hook', '--dir', hookDir, '--socket', agent.socket, '--client', hookClient()]);
    if (ih.code !== 0) throw new Error(`lockagent install-hook failed: ${ih.stderr}`);
  }
  const h: LibvirtHost = { id, dir, uri, uuid, ports, holderPid: 0, libvirtdPid: 0, agent };
  live.add(h);
  const r = await run('bash', [SCRIPT, 'start', dir, uuid, String(ports[0]), String(ports[1]), ...qemuConf], { timeoutMs: 120_000, env });
  if (r.code !== 0) throw new Error(`scripts/libvirt-host.sh start ${dir} failed (${r.code}):\n${r.stdout}${r.stderr}`);
  h.holderPid = Number(fs.readFileSync(path.join(dir, 'holder.pid'), 'utf8').trim());
  h.libvirtdPid = Number(fs.readFileSync(path.join(dir, 'libvirtd.pid'), 'utf8').trim());
  startAgent(h);
  await waitJoined(h.agent);
  return h;
}

/** (Re)start the host's agent inside its mount namespace (nsenter execs it: the pid is the agent's). */
export function startAgent(h: LibvirtHost): AgentHost {
  return startHost(h.agent, { wrap: ['nsenter', '-t', String(h.holderPid), '-m', '--'] });
}

export async function stopAgent(h: LibvirtHost, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  await stopHost(h.agent, signal);
}

/** Stop every host of the bed (agents first, then everything in each namespace, by pid). */
export async function stopBed(bed: Bed | undefined): Promise<void> {
  if (!bed) return;
  for (const h of bed.hosts) await stopAgent(h, 'SIGKILL').catch(() => undefined);
  // Nothing of ours may be left: stop fails, naming them, if any process of the host's namespace
  // outlives SIGKILL by 20 s (the namespace stays pinned then, so they are not mistaken for
  // another bed's).
  const failed: string[] = [];
  await Promise.all(bed.hosts.map(async (h) => {
    if (h.stopped) return;
    const r = await run('bash', [SCRIPT, 'stop', h.dir], { timeoutMs: 60_000 });
    if (r.code !== 0) failed.push(`scripts/libvirt-host.sh stop ${h.dir} failed (${r.code}):\n${r.stderr.trim()}`);
    h.stopped = true;
    live.delete(h);
  }));
  if (failed.length) throw new Error(failed.join('\n'));
  if (!process.env.LOCKAGENT_E2E_KEEP) fs.rmSync(bed.dir, { recursive: true, force: true });
}

export function hvirsh(h: LibvirtHost, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return virsh(args, timeoutMs, h.uri);
}

export function hvirshOk(h: LibvirtHost, args: string[], timeoutMs?: number): Promise<string> {
  return virshOk(args, timeoutMs, h.uri);
}

/** `virsh domstate --reason` on the host, or "absent" when the host does not know the domain. */
export async function hostDomState(h: LibvirtHost, name: string): Promise<string> {
  const r = await hvirsh(h, ['domstate', name, '--reason']);
  return r.code === 0 ? r.stdout.trim() : 'absent';
}

/** QEMU's pid of a domain running on the host (its libvirt pid file, seen through its namespace). */
export function hostQemuPid(h: LibvirtHost, name: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(`/proc/${h.holderPid}/root/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A free TCP port in the host's migration range (for --migrateuri tcp://127.0.0.1:PORT). */
export async function freePort(h: LibvirtHost): Promise<number> {
  for (let p = h.ports[0]; p <= h.ports[1]; p++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return p;
  }
  throw new Error(`no free port in ${h.ports[0]}-${h.ports[1]}`);
}

/** The host's libvirtd log (hook calls, QEMU process and migration debug lines). */
export function libvirtdLog(h: LibvirtHost): string {
  try {
    return fs.readFileSync(path.join(h.dir, 'logs', 'libvirtd.log'), 'utf8');
  } catch {
    return '';
  }
}

const DISKS_LS = '__LIBVIRT__DISKS__';

/** The automatic disk lease of `disk` on the bed: its lease file, sanlock resource string and leader on disk. */
export function diskLease(bed: Bed, disk: string): { file: string; res: string; leader: () => ReturnType<typeof readLeaderOf> } {
  const file = path.join(bed.leaseDir, md5(disk));
  return { file, res: `${DISKS_LS}:${md5(disk)}:${file}:0`, leader: () => readLeaderOf(file) };
}

/** The disk lease of `d` as the host's agent holds it, or undefined. */
export async function hostHolds(h: LibvirtHost, d: TestDomain): Promise<{ resource: string; lver: number } | undefined> {
  return (await status(h.agent)).owners.find((o) => o.uuid === d.uuid)?.leases.find((l) => l.resource === md5(d.disk));
}

/** A real sanlock daemon joined to the bed's lockspace as host `id`. */
export async function startSanlockHost(bed: Bed, id: number, hostName: string): Promise<SanlockHost> {
  const S = await startSanlock(path.join(bed.dir, `host${id}`), hostName);
  const add = await sanlockClient(S, ['add_lockspace', '-o', '1', '-s', `${DISKS_LS}:${id}:${path.join(bed.leaseDir, DISKS_LS)}:0`]);
  if (!/add_lockspace(_timeout)? done 0/.test(add.stdout + add.stderr)) throw new Error(`sanlock add_lockspace as host ${id} failed: ${add.stdout}${add.stderr}`);
  return S;
}

/** sanlock tries a lease once: "0 ..." when it got it (and let it go), "-243" and the like while a live host holds it. */
export async function sanlockTries(S: SanlockHost, res: string): Promise<string> {
  const r = await sanlockClient(S, ['command', '-r', res, '-c', '/bin/true'], 30_000);
  return `${r.code} ${r.stdout}${r.stderr}`;
}
