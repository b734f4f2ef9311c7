import { existsSync, mkdirSync, readFileSync, rmSync } from 'fs';
import { join } from 'path';
import { findPackageRoot } from '../io/packageroot';
import { linkAtomic, writeAtomic } from './hook';

/**
 * Installing the lock-driver plugin (native/lockdriver, docs/libvirt-integration.md): libvirtd
 * loads `<lock-driver dir>/lockagent.so` when qemu.conf says `lock_manager = "lockagent"`, and
 * hands it `/etc/libvirt/qemu-lockagent.conf`, where the plugin reads socket_path (else from
 * /etc/lockagent.conf). qemu.conf is the operator's file: it is checked, never edited.
 */
export const LOCK_DRIVER_NAME = 'lockagent';
export const LOCK_MANAGER_LINE = `lock_manager = "${LOCK_DRIVER_NAME}"`;

/** libvirt's lock-driver directories (LIBDIR/libvirt/lock-driver) on Debian/Ubuntu and Fedora/RHEL. */
const PLUGIN_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib'].map((d) => `${d}/libvirt/lock-driver`);

/** The first lock-driver directory of this machine's libvirt (where its sanlock.so or lockd.so live). */
export function defaultLockDriverDir(): string | undefined {
  return PLUGIN_DIRS.find((d) => existsSync(d));
}

/** This build's plugin, native/build/Release/lockagent.so, if built. */
export function defaultLockDriverPlugin(): string | undefined {
  try {
    const p = join(findPackageRoot(), 'native', 'build', 'Release', `${LOCK_DRIVER_NAME}.so`);
    return existsSync(p) ? p : undefined;
  } catch {
    return undefined;
  }
}

export interface LockDriverInstall {
  plugin: string;
  /** the plugin's settings file (it may not exist: then /etc/lockagent.conf) */
  conf: string;
  /** what the operator still has to do, or should know */
  notes: string[];
}

export function installLockDriver(opts: { pluginDir?: string; confDir?: string; socket?: string; config?: string; plugin?: string }): LockDriverInstall {
  const src = opts.plugin ?? defaultLockDriverPlugin();
  if (!src) throw new Error('the lock-driver plugin is not built (native/build/Release/lockagent.so): run npm run build:native, or pass --plugin PATH');
  let binary: Buffer;
  try {
    binary = readFileSync(src);
  } catch (e) {
    throw new Error(`cannot read the lock-driver plugin ${src}: ${(e as Error).message}`);
  }
  const pluginDir = opts.pluginDir ?? defaultLockDriverDir();
  if (!pluginDir) throw new Error(`no libvirt lock-driver directory found (looked for ${PLUGIN_DIRS.join(', ')}): pass --plugin-dir, libvirt's LIBDIR/libvirt/lock-driver`);
  const confDir = opts.confDir ?? '/etc/libvirt';
  mkdirSync(pluginDir, { recursive: true });
  mkdirSync(confDir, { recursive: true });
  // settings first: the plugin must never load without them
  const conf = join(confDir, `qemu-${LOCK_DRIVER_NAME}.conf`);
  const mark = '# lockagent lock-driver plugin settings, written by "lockagent install-lockdriver"';
  if (opts.config) {
    linkAtomic(opts.config, conf);
  } else if (opts.socket) {
    writeAtomic(conf, `${mark}\nsocket_path = ${JSON.stringify(opts.socket)}\n`, 0o644);
  } else if (existsSync(conf) && readFileSync(conf, 'utf8').startsWith(mark)) {
    // none: the plugin reads socket_path from /etc/lockagent.conf (as the hook does)
    rmSync(conf, { force: true });
  }
  const plugin = join(pluginDir, `${LOCK_DRIVER_NAME}.so`);
  writeAtomic(plugin, binary, 0o644);
  const notes: string[] = [];
  const qemuConf = join(confDir, 'qemu.conf');
  const text = existsSync(qemuConf) ? readFileSync(qemuConf, 'utf8') : '';
  if (!/^\s*lock_manager\s*=\s*"lockagent"\s*(#.*)?$/m.test(text)) {
    notes.push(`set ${LOCK_MANAGER_LINE} in ${qemuConf}, then restart libvirtd (running domains keep running; lock_manager is read at its start)`);
  } else {
    notes.push('restart libvirtd to load the new plugin (running domains keep running)');
  }
  const hook = join(confDir, 'hooks', 'qemu.d', '50-lockagent');
  if (existsSync(hook)) notes.push(`the start-gate hook ${hook} is installed too: with the plugin it only adds a process per hook call; remove it (then kill -HUP libvirtd)`);
  return { plugin, conf, notes };
}

