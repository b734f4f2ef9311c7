/**
 * The packages (docs/operator-guide.md "Install", "Upgrade", "Uninstall"): the .deb built from a
 * clean source tree (scripts/dist.sh's tarball, built with `npm run build`), installed, run with
 * its unit's ExecStart, upgraded under a held lease, downgraded, removed; and the RPM.
 *
 * Nothing is installed on this machine: dpkg runs with --root=<temp dir> (its own dpkg database
 * there) and --force-script-chrootless, so the maintainer scripts see $DPKG_ROOT and write only
 * under it — they run no systemctl and signal no libvirtd (pkg-hooks.sh). PID 1 is not systemd
 * here, so the test does what systemd would: it starts the unit's exact ExecStart= line (its
 * absolute paths taken under the root) and, for `systemctl try-restart` after an upgrade, sends
 * SIGTERM and starts the new ExecStart at once. The config is the shipped conffile, edited as
 * an operator would (paths under the temp dir, io_timeout 1, no libvirt).
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, guardPids, log, status, stopGuard, waitFor, waitJoined } from '../helpers/agentproc';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/daemon/nodeflags';
import { ROOT, run, RunResult } from '../helpers/cli';

jest.setTimeout(15 * 60_000);

const has = (cmd: string) => { try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; } };
const X = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const Y = X.replace(/(\d+)$/, (n) => String(Number(n) + 1));
const LS = '__LIBVIRT__DISKS__';

let tmp: string;
let src: string;
const debs: Record<string, string> = {};

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...opts });
}

beforeAll(() => {
  tmp = fs.mkdtempSync('/tmp/lockagent-pkg-');
  // A clean checkout: the source tarball, unpacked and built (node_modules from this checkout: no network).
  const tarball = sh('bash', [path.join(ROOT, 'scripts', 'dist.sh'), '--out', tmp]).trim();
  sh('tar', ['xzf', tarball, '-C', tmp]);
  src = path.join(tmp, `lockagent-${X}`);
  expect(fs.existsSync(path.join(src, 'dist'))).toBe(false);
  fs.symlinkSync(fs.realpathSync(path.join(ROOT, 'node_modules')), path.join(src, 'node_modules'));
  sh('npm', ['run', 'build'], { cwd: src });
  for (const v of [X, Y]) debs[v] = sh('bash', [path.join(src, 'scripts', 'deb.sh'), '--version', v, '--out', path.join(tmp, 'debs')]).trim();
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the .deb', () => {
  it('has the install layout, the dependencies of its addons, valid units and a man page', async () => {
    const info = sh('dpkg-deb', ['--info', debs[X]]);
    expect(info).toMatch(/^ Depends: nodejs \(>= 20\), .*libvirt0/m);
    expect(info).toMatch(/^ Version: .*$/m);
    const contents = sh('dpkg-deb', ['--contents', debs[X]]);
    for (const p of [
      './usr/bin/lockagent', './usr/lib/lockagent/dist/cli/main.js', './usr/lib/lockagent/native/build/Release/lockagent_native.node',
      './usr/lib/lockagent/native/build/Release/lockagent_virt.node', './usr/lib/lockagent/native/build/Release/lockagent-hook',
      './usr/lib/lockagent/native/build/Release/lockagent.so',
      './usr/lib/lockagent/native/build/Release/lockagent-guard', './usr/lib/lockagent/lockagent-guard -> native/build/Release/lockagent-guard',
      './usr/lib/lockagent/node_modules/better-sqlite3/build/Release/better_sqlite3.node', './etc/lockagent.conf', './etc/logrotate.d/lockagent',
      './usr/lib/systemd/system/lockagent.service', './usr/lib/systemd/system/lockagent-guard.service',
      './usr/share/doc/lockagent/operator-guide.md', './usr/share/man/man8/lockagent.8.gz',
    ]) expect(contents).toContain(p);
    // production dependencies only
    expect(contents).not.toMatch(/node_modules\/(typescript|jest|eslint|node-gyp|ts-jest)\//);
    expect(sh('dpkg-deb', ['-I', debs[X], 'conffiles'])).toContain('/etc/lockagent.conf');

    const x = path.join(tmp, 'x');
    sh('dpkg-deb', ['-x', debs[X], x]);
    const man = execFileSync('sh', ['-c', `zcat '${x}/usr/share/man/man8/lockagent.8.gz' | groff -man -Tutf8 -ww -z 2>&1 | grep -v 'cannot adjust' || true`], { encoding: 'utf8' });
    expect(man).toBe('');
    const page = sh('sh', ['-c', `zcat '${x}/usr/share/man/man8/lockagent.8.gz'`]);
    expect(page).toContain('lockagent client acquire');
    expect(page).toContain('DIRECT COMMANDS');

    if (has('systemd-analyze')) {
      // verify checks the syntax and that ExecStart= is executable: under --root, the unpacked
      // package. The root has no system targets (sysinit.target...): those lines are not the units'.
      const v = await run('systemd-analyze', ['verify', `--root=${x}`, '/usr/lib/systemd/system/lockagent.service', '/usr/lib/systemd/system/lockagent-guard.service']);
      expect(v.stderr.split('\n').filter((l) => /^lockagent/.test(l) && !/Unit \S+\.target not found/.test(l))).toEqual([]);
    } else {
      process.stderr.write('package.test: systemd-analyze not installed: the units were not verified\n');
    }
    if (has('apt-get')) {
      // installable with `apt install ./lockagent_*.deb`: every dependency resolves here (a simulation, nothing installed)
      const sim = await run('apt-get', ['install', '-s', '--no-install-recommends', debs[X]]);
      expect(sim.stdout + sim.stderr).toMatch(/Inst lockagent /);
    }
  });
});

describe('installed, upgraded and removed with dpkg (in a root of its own)', () => {
  const root = () => path.join(tmp, 'root');
  let agent: ChildProcess | undefined;
  let agentExit: Promise<void> | undefined;
  let owner: ChildProcess | undefined;
  let h: AgentHost;

  const dpkg = (...args: string[]): Promise<RunResult> =>
    run('dpkg', [`--root=${root()}`, '--force-script-chrootless', '--force-depends', '--force-not-root', ...args], { timeoutMs: 120_000 });
  const la = (args: string[]) => run(path.join(root(), 'usr', 'bin', 'lockagent'), args, { timeoutMs: 60_000 });

  /** ExecStart= of the installed unit, its absolute paths under the root (what systemd would exec). */
  function execStart(): string[] {
    const unit = fs.readFileSync(path.join(root(), 'usr/lib/systemd/system/lockagent.service'), 'utf8');
    const line = /^ExecStart=(.*)$/m.exec(unit)![1].trim();
    return line.split(/\s+/).map((a) => (a.startsWith('/') ? path.join(root(), a) : a));
  }

  /** systemctl start: the unit's ExecStart, in a session of its own. */
  function startUnit(): void {
    const argv = execStart();
    const out = fs.openSync(h.logFile, 'a');
    const env = { ...process.env };
    delete env.LOCKAGENT_GUARD_BIN;
    delete env.LOCKAGENT_SOCKET;
    agent = spawn(argv[0], argv.slice(1), { stdio: ['ignore', out, out], detached: true, env });
    fs.closeSync(out);
    const p = agent;
    agentExit = new Promise((resolve) => p.once('exit', () => resolve()));
  }

  /** systemctl stop (SIGTERM to the main process), waiting for it to exit. */
  async function stopUnit(): Promise<void> {
    if (agent && agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGTERM');
      await agentExit;
    }
    agent = undefined;
  }

  const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

  afterAll(async () => {
    await stopUnit();
    if (owner?.pid) try { process.kill(owner.pid, 'SIGKILL'); } catch { /* gone */ }
    if (h) stopGuard(h);
  });

  it('installs; the unit\'s ExecStart runs the agent; an upgrade and a downgrade keep the lease, the generation and the owner; removal waits for the leases', async () => {
    for (const d of ['info', 'updates', 'triggers']) fs.mkdirSync(path.join(root(), 'var/lib/dpkg', d), { recursive: true });
    for (const f of ['status', 'available']) fs.writeFileSync(path.join(root(), 'var/lib/dpkg', f), '');

    const inst = await dpkg('-i', debs[X]);
    expect(inst.code).toBe(0);
    expect(inst.stderr).toMatch(/set host_id .* and disk_lease_dir/);
    const hook = path.join(root(), 'etc/libvirt/hooks/qemu.d/50-lockagent');
    // the hook is a copy of the packaged compiled client
    expect(fs.readFileSync(hook).equals(fs.readFileSync(path.join(root(), 'usr/lib/lockagent/lockagent-hook')))).toBe(true);

    expect((await la(['--version'])).stdout.trim()).toBe(X);
    const conf = path.join(root(), 'etc/lockagent.conf');
    const shipped = await la(['config', 'check', '-c', conf]);
    expect(shipped.code).toBe(0);

    // The operator's edits (the conffile: the upgrade below must keep them).
    h = { id: 1, dir: path.join(tmp, 'run'), conf, socket: path.join(tmp, 'run', 'lockagent.sock'), logFile: path.join(tmp, 'agent.log') };
    const leases = path.join(tmp, 'leases');
    fs.mkdirSync(leases, { recursive: true });
    fs.mkdirSync(h.dir, { recursive: true });
    const edits: Record<string, string> = {
      disk_lease_dir: `"${leases}"`, io_timeout: '1', socket_path: `"${h.socket}"`, state_path: `"${path.join(tmp, 'state', 'state.db')}"`,
      log_file: '""', log_level: '"debug"', libvirt_uri: '""', kill_grace_seconds: '3',
    };
    let text = fs.readFileSync(conf, 'utf8');
    for (const [k, v] of Object.entries(edits)) text = text.replace(new RegExp(`^${k} = .*$`, 'm'), `${k} = ${v}`);
    text += '#host_name = "pkg-test"\nhost_name = "pkgtest01"\n';
    fs.writeFileSync(conf, text);
    expect((await la(['config', 'check', '-c', conf])).code).toBe(0);

    startUnit();
    const gen = await waitJoined(h, LS, 60_000);
    // The wrapper runs the daemon with its node flags (src/daemon/nodeflags.ts), in the same process.
    expect(fs.readFileSync(`/proc/${agent!.pid}/cmdline`, 'utf8').split('\0')).toEqual(expect.arrayContaining([...DAEMON_NODE_FLAGS]));
    // and its environment (MALLOC_ARENA_MAX is read by glibc at the process start)
    expect(fs.readFileSync(`/proc/${agent!.pid}/environ`, 'utf8').split('\0')).toEqual(expect.arrayContaining(Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`)));
    expect(log(h)).toMatch(/lockagent starting/);
    expect(log(h)).not.toMatch(/node started without/);
    const res = path.join(leases, 'disk1');
    fs.writeFileSync(res, Buffer.alloc(1 << 20));
    expect((await la(['direct', 'init', '-r', `${LS}:disk1:${res}:0`])).code).toBe(0);
    owner = spawn('sleep', ['600'], { stdio: 'ignore', detached: true });
    const acq = await la(['client', 'acquire', '-c', conf, '-r', `${LS}:disk1:${res}:0`, '--owner', 'pkg-owner-1', '--name', 'vm-pkg', '--pid', String(owner.pid)]);
    expect(acq.stderr).toBe('');
    expect(acq.code).toBe(0);
    const held = async () => {
      const s = await status(h);
      return { gen: s.lockspaces.find((l) => l.name === LS)?.generation, leases: s.owners.find((o) => o.uuid === 'pkg-owner-1')?.leases.map((l) => l.resource) };
    };
    expect(await held()).toEqual({ gen, leases: ['disk1'] });

    // The lock-driver plugin, installed by the operator into libvirt's directory (of this root):
    // each upgrade replaces that copy with the package's; removal leaves it, and says why.
    const pluginDir = path.join(root(), 'usr/lib/x86_64-linux-gnu/libvirt/lock-driver');
    const plugin = path.join(pluginDir, 'lockagent.so');
    const packaged = path.join(root(), 'usr/lib/lockagent/native/build/Release/lockagent.so');
    const il = await la(['install-lockdriver', '--plugin-dir', pluginDir, '--conf-dir', path.join(root(), 'etc/libvirt')]);
    expect(il.stderr).toBe('');
    expect(il.stdout).toMatch(/next: set lock_manager = "lockagent" in .*qemu\.conf/);
    expect(fs.readFileSync(plugin).equals(fs.readFileSync(packaged))).toBe(true);

    // Upgrade and downgrade: dpkg installs the other version over the running agent; then what
    // systemctl try-restart does. Same generation, lease held, owner alive.
    for (const [v, from] of [[Y, X], [X, Y]]) {
      // an older copy (any file with the installer's mark) is what the upgrade must replace
      fs.writeFileSync(plugin, 'lockagent lock-driver plugin, installed by "lockagent install-lockdriver" (older)');
      const up = await dpkg('-i', debs[v]);
      expect(up.code).toBe(0);
      expect(fs.readFileSync(plugin).equals(fs.readFileSync(packaged))).toBe(true);
      expect(up.stderr).toContain(`upgraded from ${from}`);
      expect(fs.readFileSync(conf, 'utf8')).toContain(`socket_path = "${h.socket}"`); // conffile kept
      expect((await la(['--version'])).stdout.trim()).toBe(v);
      await stopUnit();
      startUnit();
      await waitFor('the restarted agent to re-adopt the lease', async () => {
        const s = await held().catch(() => undefined);
        return s && s.gen === gen && s.leases?.length === 1 ? s : undefined;
      }, 60_000);
      expect(await waitJoined(h, LS, 60_000)).toBe(gen);
      expect(alive(owner.pid!)).toBe(true);
      expect(guardPids(h).length).toBe(1); // the guard outlived the restart
    }

    // Removal is refused while the agent holds leases, naming the owner.
    const refused = await dpkg('-r', 'lockagent');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/not removed: the agent holds leases[\s\S]*vm-pkg \(pid \d+\): 1 lease/);
    expect(refused.stderr).toContain('LOCKAGENT_REMOVE_FORCE=1');
    expect((await dpkg('-s', 'lockagent')).stdout).toMatch(/Status: \w+ ok installed/); // still installed (the selection says deinstall)
    expect(alive(owner.pid!)).toBe(true);

    expect((await la(['client', 'release', '-c', conf, '--owner', 'pkg-owner-1'])).code).toBe(0);
    const removed = await dpkg('-r', 'lockagent');
    expect(removed.code).toBe(0);
    expect(removed.stderr).toContain('stop the running \'lockagent daemon\' yourself');
    expect(removed.stderr).toMatch(/lockagent\.so stays: while qemu\.conf says lock_manager = "lockagent", every domain start is refused/);
    expect(fs.existsSync(plugin)).toBe(true);
    await stopUnit(); // what systemctl disable --now does
    expect(fs.existsSync(hook)).toBe(false);
    expect(fs.existsSync(path.join(root(), 'usr/bin/lockagent'))).toBe(false);
    expect(fs.existsSync(path.join(root(), 'usr/lib/lockagent'))).toBe(false);
    expect(fs.readFileSync(conf, 'utf8')).toContain(`socket_path = "${h.socket}"`);
    expect(fs.existsSync(res)).toBe(true);
    expect(fs.existsSync(path.join(leases, LS))).toBe(true);
    expect((await dpkg('-s', 'lockagent')).stdout).toMatch(/Status: deinstall ok config-files/);
  });
});

describe('the RPM', () => {
  (has('rpmbuild') ? it : it.skip)('builds with rpmbuild -ba from the dist.sh tarball; rpm -qlp lists the layout', () => {
    const top = path.join(tmp, 'rpmbuild');
    fs.mkdirSync(path.join(top, 'SOURCES'), { recursive: true });
    fs.copyFileSync(path.join(tmp, `lockagent-${X}.tar.gz`), path.join(top, 'SOURCES', `lockagent-${X}.tar.gz`));
    // --nodeps: the BuildRequires are CentOS package names (this is Debian)
    sh('rpmbuild', ['-ba', '--nodeps', '--define', `_topdir ${top}`, '--define', `lockagent_node_modules ${fs.realpathSync(path.join(ROOT, 'node_modules'))}`,
      path.join(src, 'packaging', 'rpm', 'lockagent.spec')]);
    const rpms = path.join(top, 'RPMS', 'x86_64');
    const rpm = path.join(rpms, fs.readdirSync(rpms).find((f) => f.startsWith(`lockagent-${X}-1`))!);
    const files = sh('rpm', ['-qlp', rpm]);
    for (const p of ['/usr/bin/lockagent', '/usr/lib/lockagent/dist/cli/main.js', '/usr/lib/lockagent/lockagent-guard', '/usr/lib/systemd/system/lockagent.service',
      '/etc/lockagent.conf', '/usr/share/man/man8/lockagent.8.gz']) expect(files).toContain(p);
    expect(sh('rpm', ['-qp', '--requires', rpm])).toMatch(/^libvirt-libs$[\s\S]*^nodejs >= 1:20$/m);
    expect(sh('rpm', ['-qp', '--configfiles', rpm])).toContain('/etc/lockagent.conf');
    expect(sh('rpm', ['-qp', '--scripts', rpm])).toContain('pkg-hooks.sh remove');
    expect(fs.readdirSync(path.join(top, 'SRPMS')).some((f) => f.startsWith(`lockagent-${X}-1`))).toBe(true);
  });
});
