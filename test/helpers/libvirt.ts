/**
 * End-to-end helpers: the real libvirtd + QEMU (TCG) started by scripts/services.sh, tiny TCG
 * domains defined through virsh, the installed lockagent hook, a `virsh event` monitor, loop
 * devices and real sanlock daemons as extra hosts. Everything runs as root; the e2e suites skip
 * (loudly) when not root, unless CI is set, where they must run.
 *
 * libvirtd and its hook directory are machine-wide: suites take a machine-wide lock
 * (suiteLock) for their whole run, so e2e suites of concurrent jest runs never overlap.
 */
import { ChildProcess, spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, ROOT, run, RunResult, SANLOCK } from './cli';
import { waitFor } from './agentproc';

export const E2E_DIR = process.env.LOCKAGENT_E2E_DIR ?? '/tmp/lockagent-e2e';
export const URI = 'qemu:///system';
export const HOOK_DIR = '/etc/libvirt/hooks/qemu.d';
export const HOOK_FILE = path.join(HOOK_DIR, '50-lockagent');
/** Every e2e domain's name starts with this; leftovers of crashed runs are removed by it. */
export const DOMAIN_PREFIX = 'la-e2e-';

const isRoot = process.getuid?.() === 0;

/** describe, or describe.skip with a loud warning when not root (never skipped in CI). */
export function describeE2E(title: string, fn: () => void): void {
  if (isRoot || process.env.CI) {
    describe(title, fn);
    return;
  }
  console.warn(`SKIPPED e2e suite "${title}": needs root (real libvirtd, QEMU, hooks, loop devices); runs in CI`);
  describe.skip(title, fn);
}

// ---- services -------------------------------------------------------------------------------

/** scripts/services.sh start: idempotent, returns at once when libvirtd already runs. */
export async function startServices(): Promise<void> {
  const r = await run('bash', [path.join(ROOT, 'scripts', 'services.sh'), 'start'], { timeoutMs: 180_000, env: { ...process.env, LOCKAGENT_E2E_DIR: E2E_DIR } });
  if (r.code !== 0) throw new Error(`scripts/services.sh start failed (${r.code}):\n${r.stdout}${r.stderr}`);
}

/** libvirtd's pid: from services.sh's pid file, else (a libvirtd started otherwise) from /proc. */
export function libvirtdPid(): number {
  try {
    const fromFile = Number(fs.readFileSync(path.join(E2E_DIR, 'libvirtd.pid'), 'utf8').trim());
    if (Number.isInteger(fromFile) && fromFile > 0 && pidAlive(fromFile)) return fromFile;
  } catch {
    // not started by services.sh
  }
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'libvirtd') return Number(d);
    } catch {
      // gone
    }
  }
  throw new Error('libvirtd is not running');
}

const LIBVIRTD_LOG = path.join(E2E_DIR, 'logs', 'libvirtd.log');

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

function readFrom(p: string, offset: number): string {
  try {
    const fd = fs.openSync(p, 'r');
    try {
      const len = Math.max(0, fs.fstatSync(fd).size - offset);
      const b = Buffer.alloc(len);
      fs.readSync(fd, b, 0, len, offset);
      return b.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

/**
 * SIGHUP libvirtd so it notices hook scripts created while it runs, and wait until it re-checked
 * them (its log shows virHookCheck lines; it checks bhyve last).
 */
export async function reloadLibvirtd(): Promise<void> {
  const at = fileSize(LIBVIRTD_LOG);
  process.kill(libvirtdPid(), 'SIGHUP');
  if (!fs.existsSync(LIBVIRTD_LOG)) {
    await new Promise((r) => setTimeout(r, 1000)); // not our libvirtd: no log to watch
    return;
  }
  await waitFor('libvirtd to re-check its hooks after SIGHUP', async () => /virHookCheck.*bhyve/.test(readFrom(LIBVIRTD_LOG, at)) || undefined, 10_000, 50);
}

/**
 * Restart libvirtd with domains running (SIGTERM to its tini, then services.sh start): QEMU
 * processes survive, and the new libvirtd reconnects to them (the `reconnect` hook runs).
 */
export async function restartLibvirtd(): Promise<void> {
  await stopLibvirtd();
  await startServices();
}

/** Stop libvirtd only (SIGTERM to its tini); running QEMU processes stay. startServices() brings it back. */
export async function stopLibvirtd(): Promise<void> {
  const tini = Number(fs.readFileSync(path.join(E2E_DIR, 'tini.pid'), 'utf8').trim());
  if (!(tini > 0)) throw new Error(`no tini pid in ${E2E_DIR}/tini.pid`);
  process.kill(tini, 'SIGTERM');
  await waitFor('libvirtd to exit', async () => !pidAlive(tini) || undefined, 30_000, 100);
}

// ---- machine-wide lock for e2e suites -------------------------------------------------------

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Take the e2e lock (a directory holding the owner's pid); a dead owner's lock is broken. */
export async function suiteLock(name: string, timeoutMs = 600_000): Promise<() => void> {
  fs.mkdirSync(E2E_DIR, { recursive: true });
  const dir = path.join(E2E_DIR, 'suite.lock');
  const until = Date.now() + timeoutMs;
  let warned = false;
  for (;;) {
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'owner'), `${process.pid} ${name}\n`);
      return () => {
        try {
          if (fs.readFileSync(path.join(dir, 'owner'), 'utf8').startsWith(`${process.pid} `)) fs.rmSync(dir, { recursive: true, force: true });
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let owner = '';
    try {
      owner = fs.readFileSync(path.join(dir, 'owner'), 'utf8').trim();
    } catch {
      // being created or removed right now
    }
    const pid = Number(owner.split(' ')[0]);
    if (owner && !(pid > 0 && pidAlive(pid))) {
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (!owner && fs.existsSync(dir) && Date.now() - fs.statSync(dir).mtimeMs > 10_000) {
      fs.rmSync(dir, { recursive: true, force: true });
      continue;
    }
    if (!warned && owner) {
      console.warn(`e2e suite "${name}" waits for the e2e lock held by ${owner}`);
      warned = true;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for the e2e lock ${dir} (held by ${owner})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

// ---- virsh and domains ----------------------------------------------------------------------

/** virsh against `uri` (default the machine's libvirtd; a test-bed host's URI: test/helpers/libvirthosts.ts). */
export function virsh(args: string[], timeoutMs = 60_000, uri = URI): Promise<RunResult> {
  return run('virsh', ['-c', uri, ...args], { timeoutMs, env: { ...process.env, LC_ALL: 'C' } });
}

export async function virshOk(args: string[], timeoutMs?: number, uri = URI): Promise<string> {
  const r = await virsh(args, timeoutMs, uri);
  if (r.code !== 0) throw new Error(`virsh ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** `virsh domstate --reason`, e.g. "running (booted)", "paused (user)", "shut off (destroyed)". */
export async function domState(name: string): Promise<string> {
  return (await virshOk(['domstate', name, '--reason'])).trim();
}

export function waitDomState(name: string, want: RegExp, timeoutMs = 30_000): Promise<string> {
  return waitFor(`${name} to be ${want}`, async () => {
    const s = await domState(name);
    return want.test(s) ? s : undefined;
  }, timeoutMs, 100);
}

export function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}

export interface LeaseElement {
  lockspace: string;
  key: string;
  path: string;
  offset?: number;
}

export interface TestDomain {
  name: string;
  uuid: string;
  disk: string;
  xmlFile: string;
}

/** A disk beyond the first: a file (raw unless `format`) or a block device (e.g. a loop device from attachLoop). */
export interface ExtraDisk {
  kind: 'file' | 'block';
  path: string;
  format?: 'raw' | 'qcow2';
  readonly?: boolean;
  shareable?: boolean;
}

/** virtio target names after vda: vdb … vdz. */
function diskTarget(i: number): string {
  if (i >= 25) throw new Error(`at most 25 extra disks (vdb…vdz), got ${i + 1}`);
  return `vd${String.fromCharCode(98 + i)}`;
}

/**
 * A tiny TCG domain (96 MiB unless `memoryMiB`, no network, serial pty) on a fresh 64 MiB qcow2
 * disk, defined through virsh at `uri` (default the machine's libvirtd). `noReboot`: a guest
 * reset stops it (QEMU's -no-reboot) instead of restarting it. `disks`: more disks (vdb, vdc, …)
 * after it. `rawDisk`: the first disk a sparse raw file instead (no qemu-img: cheaper for many domains).
 */
export async function defineDomain(dir: string, name: string, opts: { leases?: LeaseElement[]; onLockFailure?: string; uri?: string; memoryMiB?: number; noReboot?: boolean; qemuArgs?: string[]; disks?: ExtraDisk[]; rawDisk?: boolean; acpi?: boolean } = {}): Promise<TestDomain> {
  const disk = path.join(dir, `${name}.${opts.rawDisk ? 'img' : 'qcow2'}`);
  if (opts.rawDisk) {
    fs.writeFileSync(disk, '');
    fs.truncateSync(disk, 1048576);
  } else {
    const img = await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
    if (img.code !== 0) throw new Error(`qemu-img create failed: ${img.stderr}`);
  }
  const extra = (opts.disks ?? []).map((d, i) => `    <disk type='${d.kind}' device='disk'>
      <driver name='qemu' type='${d.format ?? 'raw'}' cache='none'/>
      <source ${d.kind === 'file' ? 'file' : 'dev'}='${d.path}'/>
      <target dev='${diskTarget(i)}' bus='virtio'/>
${d.readonly ? '      <readonly/>\n' : ''}${d.shareable ? '      <shareable/>\n' : ''}    </disk>
`).join('');
  const leases = (opts.leases ?? []).map((l) =>
    `    <lease><lockspace>${l.lockspace}</lockspace><key>${l.key}</key><target path='${l.path}' offset='${l.offset ?? 0}'/></lease>\n`).join('');
  const qemuArgs = opts.qemuArgs?.length
    ? `  <qemu:commandline>\n${opts.qemuArgs.map((a) => `    <qemu:arg value='${a}'/>\n`).join('')}  </qemu:commandline>\n`
    : '';
  const xml = `<domain type='qemu'${qemuArgs ? " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'" : ''}>
  <name>${name}</name>
  <memory unit='MiB'>${opts.memoryMiB ?? 96}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
${opts.acpi ? '  <features><acpi/></features>\n' : ''}  <on_poweroff>destroy</on_poweroff><on_reboot>${opts.noReboot ? 'destroy' : 'restart'}</on_reboot><on_crash>destroy</on_crash>
${opts.onLockFailure ? `  <on_lockfailure>${opts.onLockFailure}</on_lockfailure>\n` : ''}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='${opts.rawDisk ? 'raw' : 'qcow2'}' cache='none'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
${extra}${leases}    <controller type='usb' model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
${qemuArgs}</domain>
`;
  const xmlFile = path.join(dir, `${name}.xml`);
  fs.writeFileSync(xmlFile, xml);
  await virshOk(['define', xmlFile], undefined, opts.uri);
  const uuid = (await virshOk(['domuuid', name], undefined, opts.uri)).trim();
  return { name, uuid, disk, xmlFile };
}

/** Destroy and undefine every domain whose name starts with `prefix` (best effort). */
export async function removeDomains(prefix = DOMAIN_PREFIX): Promise<void> {
  const r = await virsh(['list', '--all', '--name']);
  if (r.code !== 0) return;
  for (const name of r.stdout.split('\n').map((s) => s.trim()).filter((s) => s.startsWith(prefix))) {
    await virsh(['destroy', name]);
    await virsh(['undefine', '--managed-save', name]); // a managed save image would block the undefine
  }
}

/** QEMU's pid for a running domain, from libvirt's pid file. */
export function qemuPid(name: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(`/run/libvirt/qemu/${name}.pid`, 'utf8').trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

// ---- the hook -------------------------------------------------------------------------------

/** `lockagent install-hook --socket <socket>`, then SIGHUP libvirtd (a new hook is ignored until then). */
/**
 * The compiled hook client of this checkout (npm run build:native), which install-hook installs
 * by default. Passed explicitly: the private test CLI may resolve another package root.
 * LOCKAGENT_E2E_HOOK_CLIENT=node tests the node hook instead.
 */
export function hookClient(): string {
  if (process.env.LOCKAGENT_E2E_HOOK_CLIENT) return process.env.LOCKAGENT_E2E_HOOK_CLIENT;
  const built = path.join(ROOT, 'native', 'build', 'Release', 'lockagent-hook');
  return fs.existsSync(built) ? built : 'node';
}

export async function installHook(socket: string): Promise<void> {
  const r = await lockagent(['install-hook', '--socket', socket, '--client', hookClient()]);
  if (r.code !== 0) throw new Error(`lockagent install-hook failed: ${r.stderr}`);
  await reloadLibvirtd();
}

/**
 * Remove our hook. A hook left pointing at a dead agent socket would refuse every start on the machine.
 */
export async function removeHook(): Promise<void> {
  fs.rmSync(HOOK_FILE, { force: true });
  fs.rmSync(path.join(HOOK_DIR, '.50-lockagent.conf'), { force: true }); // install-hook's settings for the compiled client
  try {
    await reloadLibvirtd();
  } catch {
    // libvirtd gone: nothing to tell
  }
}

// ---- lifecycle events -----------------------------------------------------------------------

export interface DomainEvent {
  at: number;
  domain: string;
  event: string;
  detail: string;
}

/** `virsh event --all --loop`: lifecycle events with the time each line arrived. */
export class EventMonitor {
  readonly events: DomainEvent[] = [];
  private proc?: ChildProcess;
  private buf = '';

  /** `uri`: whose events (default the machine's libvirtd). */
  constructor(private readonly uri = URI) {}

  /** `logFile`: also append each event there with its time (kept with LOCKAGENT_E2E_KEEP=1). */
  start(logFile?: string): this {
    this.proc = spawn('virsh', ['-c', this.uri, 'event', '--loop', '--event', 'lifecycle'], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, LC_ALL: 'C' } });
    this.proc.stdout!.setEncoding('utf8');
    this.proc.stdout!.on('data', (chunk: string) => {
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        // event 'lifecycle' for domain 'NAME': Suspended Paused
        const m = /^event 'lifecycle' for domain '(.*)': (\S+) ?(.*)$/.exec(line.trim());
        if (!m) continue;
        const ev = { at: Date.now(), domain: m[1], event: m[2], detail: m[3] };
        this.events.push(ev);
        if (logFile) fs.appendFileSync(logFile, `${new Date(ev.at).toISOString()} ${ev.domain}: ${ev.event} ${ev.detail}\n`);
      }
    });
    return this;
  }

  /** "Started Booted", "Suspended Paused", ... of one domain since index `from`. */
  of(domain: string, from = 0): string[] {
    return this.events.slice(from).filter((e) => e.domain === domain).map((e) => `${e.event} ${e.detail}`.trim());
  }

  /** The first event of the domain since `from` matching `re`. */
  find(domain: string, re: RegExp, from = 0): DomainEvent | undefined {
    return this.events.slice(from).find((e) => e.domain === domain && re.test(`${e.event} ${e.detail}`));
  }

  mark(): number {
    return this.events.length;
  }

  /** Wait until the domain's events since `from` contain `seq` in that order (not necessarily adjacent). */
  waitSequence(domain: string, seq: RegExp[], from = 0, timeoutMs = 30_000): Promise<string[]> {
    return waitFor(`events ${seq.join(' → ')} for ${domain}`, async () => {
      const got = this.of(domain, from);
      let i = 0;
      for (const e of got) if (i < seq.length && seq[i].test(e)) i++;
      return i === seq.length ? got : undefined;
    }, timeoutMs, 50).catch((e: Error) => {
      throw new Error(`${e.message}; got: ${this.of(domain, from).join(', ') || 'none'}`);
    });
  }

  stop(): void {
    this.proc?.kill('SIGTERM');
  }
}

// ---- loop devices ---------------------------------------------------------------------------

export async function attachLoop(file: string): Promise<string> {
  const r = await run('losetup', ['--find', '--show', file]);
  if (r.code !== 0) throw new Error(`losetup --find --show ${file} failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Make the device fail every I/O: its backing file truncated to 0 and the size re-read. */
export async function breakLoop(dev: string, backing: string): Promise<void> {
  fs.truncateSync(backing, 0);
  const r = await run('losetup', ['-c', dev]);
  if (r.code !== 0) throw new Error(`losetup -c ${dev} failed: ${r.stderr}`);
}

/** Undo breakLoop: the backing file gets `contents` back (saved before the break) and the size is re-read. */
export async function repairLoop(dev: string, backing: string, contents: Buffer): Promise<void> {
  fs.writeFileSync(backing, contents);
  const r = await run('losetup', ['-c', dev]);
  if (r.code !== 0) throw new Error(`losetup -c ${dev} failed: ${r.stderr}`);
}

export async function detachLoop(dev: string): Promise<void> {
  if (dev) await run('losetup', ['-d', dev]);
}

// ---- a real sanlock daemon as another host --------------------------------------------------

export interface SanlockHost {
  runDir: string;
  env: NodeJS.ProcessEnv;
  proc: ChildProcess;
  logFile: string;
}

/** sanlock daemon -D -w 0 (no watchdog here), unprivileged (no CAP_SYS_RESOURCE), with its own run dir. */
export async function startSanlock(dir: string, hostName: string): Promise<SanlockHost> {
  const runDir = path.join(dir, 'sanlock-run');
  fs.mkdirSync(runDir, { recursive: true });
  const env = { ...process.env, SANLOCK_RUN_DIR: runDir, SANLOCK_PRIVILEGED: '0' };
  const logFile = path.join(dir, 'sanlock.log');
  const out = fs.openSync(logFile, 'a');
  const proc = spawn(SANLOCK, ['daemon', '-D', '-w', '0', '-L', '-1', '-S', '-1', '-e', hostName], { env, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const h = { runDir, env, proc, logFile };
  await waitFor('sanlock daemon to answer', async () => (await sanlockClient(h, ['status'])).code === 0 || undefined, 15_000, 100);
  return h;
}

export function sanlockClient(h: SanlockHost, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run(SANLOCK, ['client', ...args], { env: h.env, timeoutMs });
}

export async function stopSanlock(h: SanlockHost | undefined): Promise<void> {
  if (!h || h.proc.exitCode !== null || h.proc.signalCode !== null) return;
  const exited = new Promise((r) => h.proc.once('exit', r));
  await sanlockClient(h, ['shutdown', '-f', '1'], 10_000).catch(() => undefined);
  const t = setTimeout(() => h.proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}
