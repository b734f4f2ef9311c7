import { accessSync, chmodSync, constants as FS, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'fs';
import { basename, dirname, join, resolve } from 'path';
import { DEFAULT_CONFIG_PATH, defaultConfig, loadConfig } from '../config/config';
import { callAgent } from '../control/client';
import { findPackageRoot } from '../io/packageroot';
import { Request } from '../control/protocol';
import { LeaseError } from '../ondisk/results';

/**
 * The libvirt qemu hook: `<domain> <operation> <sub-operation> <extra>`, domain XML on stdin.
 * It only forwards to the agent over the control socket — it must never call libvirt, which is
 * blocked waiting for it. A refusal is one line on stderr, which virsh shows to the operator.
 */
export interface HookResult {
  code: number;
  stderr?: string;
}

export const HOOK_TIMEOUT_MS = 90_000;

export async function runHook(argv: string[], xml: string, socket: string, timeoutMs = HOOK_TIMEOUT_MS): Promise<HookResult> {
  const [name, op, sub] = argv;
  let req: Request | undefined;
  switch (`${op}:${sub}`) {
    case 'prepare:begin': req = { op: 'domain_prepare', xml, timeoutMs: timeoutMs - 5000 }; break;
    case 'migrate:begin': req = { op: 'domain_migrate', xml }; break;
    case 'stopped:end': req = { op: 'domain_release', xml }; break;
    case 'reconnect:begin': req = { op: 'domain_reconnect', xml }; break;
    default: return { code: 0 }; // start, started, release, restore, attach...: nothing to do
  }
  try {
    await callAgent(socket, req, timeoutMs);
    return { code: 0 };
  } catch (e) {
    const msg = e instanceof LeaseError ? e.message : (e as Error).message;
    // Only the start gate and migration may refuse (an unreachable agent refuses too: the gate
    // fails closed). libvirt ignores stop/release exit codes, and a failing reconnect hook would
    // make libvirt kill a running domain.
    if (req.op === 'domain_prepare' || req.op === 'domain_migrate') {
      return { code: 1, stderr: `lockagent: ${msg}` };
    }
    return { code: 0, stderr: `lockagent: ${op} ${sub} of ${name}: ${msg}` };
  }
}

/**
 * The operations the hook forwards to the agent (runHook, the compiled client and the node
 * fallback script); it answers every other one itself. `release end` follows `stopped end` in
 * every stop (vetoed starts included) and would only repeat the same idempotent release.
 */
export const FORWARDED_OPS = ['prepare:begin', 'migrate:begin', 'stopped:end', 'reconnect:begin'] as const;

/** Marks the files installHook writes. */
const MARK = 'installed by "lockagent install-hook"';
/** The placeholder main hook earlier versions wrote (removed by installHook). */
const PLACEHOLDER = `#!/bin/sh\n# placeholder so libvirt runs the scripts in qemu.d; ${MARK}\ncat > /dev/null\nexit 0\n`;

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The file the installed script runs: this module itself, compiled (…/libvirt/hook.js of the
 * build that installed it, so the hook is the same lockagent), started directly rather than
 * through the whole CLI — about 50 ms less per call. From the TypeScript sources (tests), the
 * package's dist/libvirt/hook.js.
 */
export function defaultHookMain(): string {
  return __filename.endsWith('.js') ? __filename : join(findPackageRoot(), 'dist', 'libvirt', 'hook.js');
}

/**
 * The compiled hook client (native/hook/lockagent-hook.c, built by `npm run build:native` into
 * native/build/Release/lockagent-hook) of this build, if it was built: it does what hookMain
 * does without a node start per hook call (about 60 ms less each). undefined when absent.
 */
export function defaultHookClient(): string | undefined {
  let root: string;
  try {
    root = findPackageRoot();
  } catch {
    return undefined;
  }
  const p = join(root, 'native', 'build', 'Release', 'lockagent-hook');
  try {
    accessSync(p, FS.X_OK);
    return p;
  } catch {
    return undefined;
  }
}

/** Socket for the hook: $LOCKAGENT_SOCKET, else socket_path of $LOCKAGENT_CONFIG or /etc/lockagent.conf. */
function hookSocket(): string {
  if (process.env.LOCKAGENT_SOCKET) return process.env.LOCKAGENT_SOCKET;
  const path = process.env.LOCKAGENT_CONFIG || DEFAULT_CONFIG_PATH;
  if (process.env.LOCKAGENT_CONFIG || existsSync(path)) return loadConfig(path).config.socketPath;
  return defaultConfig().socketPath;
}

/** `node hook.js <domain> <op> <sub-op> <extra>` with the XML on stdin: what the installed script runs. */
export async function hookMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  let socket: string;
  try {
    socket = hookSocket();
  } catch (e) {
    // Fail closed at the start gate only: a failing reconnect hook makes libvirt kill the domain.
    const gate = argv[1] === 'prepare' || argv[1] === 'migrate';
    process.stderr.write(`lockagent: ${(e as Error).message}\n`);
    return gate ? 1 : 0;
  }
  const r = await runHook(argv, Buffer.concat(chunks).toString('utf8'), socket);
  if (r.stderr) process.stderr.write(`${r.stderr}\n`);
  return r.code;
}

/**
 * The settings file of an installed compiled client: `.<name>.conf` beside it (hidden and not
 * executable, so libvirt does not run it), in lockagent.conf syntax; the client reads its
 * socket_path. A symbolic link to the config file for --config.
 */
export function hookSettingsPath(hook: string): string {
  return join(dirname(hook), `.${basename(hook)}.conf`);
}

/** Make `path` a symbolic link to `target` (absolute), atomically. */
export function linkAtomic(target: string, path: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  symlinkSync(resolve(target), tmp);
  renameSync(tmp, path);
}

/** Write a file atomically (libvirt may be running the old one right now). */
export function writeAtomic(path: string, data: string | Buffer, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 }); // not executable until complete
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/**
 * Install the hook into libvirt's hook directory (<dir> is .../hooks/qemu.d); libvirtd notices a
 * hook created while it runs only after a SIGHUP. With the compiled client (`client`, default
 * defaultHookClient()) the hook is a copy of that binary itself: libvirt runs the hook for every
 * operation of a start, and the client answers those it does not forward (FORWARDED_OPS) with
 * exit 0 before reading anything, so each call is one exec. `socket`/`config` go into its
 * settings file (hookSettingsPath). Without a compiled client (or with `client: 'node'`) the hook
 * is a shell script that filters the operations and runs node with hook.js (a node start costs
 * ~60 ms or more per call). No main `qemu` hook is needed (a placeholder an earlier version
 * wrote is removed).
 */
export function installHook(opts: { dir?: string; nodePath?: string; hookJs?: string; socket?: string; config?: string; client?: string }): string {
  const dir = opts.dir ?? '/etc/libvirt/hooks/qemu.d';
  mkdirSync(dir, { recursive: true });
  const path = join(dir, '50-lockagent');
  const client = opts.client === 'node' ? undefined : opts.client ?? (opts.hookJs || opts.nodePath ? undefined : defaultHookClient());
  const settings = hookSettingsPath(path);
  let binary: Buffer | undefined;
  if (client) {
    try {
      binary = readFileSync(client);
    } catch (e) {
      throw new Error(`cannot read the hook client ${client}: ${(e as Error).message}; build it (npm run build:native) or pass --client node`);
    }
  }
  if (binary) {
    // settings first, replaced atomically: the new binary must never run without them
    if (opts.socket) {
      writeAtomic(settings, `# ${MARK}: the socket of the lockagent that 50-lockagent calls\nsocket_path = ${JSON.stringify(opts.socket)}\n`, 0o644);
    } else if (opts.config) {
      linkAtomic(opts.config, settings);
    }
    writeAtomic(path, binary, 0o755);
  } else {
    writeAtomic(path, hookScript(opts), 0o755);
  }
  if (!binary || !(opts.socket || opts.config)) rmSync(settings, { force: true });
  removePlaceholder(dir);
  return path;
}

/** The shell script of the node fallback: filters the operations, then execs node with hook.js. */
function hookScript(opts: { nodePath?: string; hookJs?: string; socket?: string; config?: string }): string {
  const env = [
    opts.socket ? `LOCKAGENT_SOCKET=${shq(opts.socket)}` : '',
    opts.config ? `LOCKAGENT_CONFIG=${shq(opts.config)}` : '',
  ].filter(Boolean).join(' ');
  const cmd = `${shq(opts.nodePath ?? process.execPath)} ${shq(opts.hookJs ?? defaultHookMain())}`;
  return `#!/bin/sh
# lockagent start gate: takes each disk's lease before libvirt starts the domain, releases
# them when it stops; ${MARK}. It only talks to the
# lockagent socket, never to libvirt. To uninstall: remove this file, then kill -HUP libvirtd.
case "$2:$3" in
  ${FORWARDED_OPS.join('|')}) ;;
  *) exit 0 ;; # libvirt ignores EPIPE on a hook's unread stdin: no need to exec cat to drain it
esac
${env ? `export ${env}
` : ''}exec ${cmd} "$@"
`;
}

function removePlaceholder(dir: string): void {
  // libvirt (>= 6.5, which introduced qemu.d) runs the qemu.d scripts whether or not there is a
  // main `qemu` hook. Earlier versions of install-hook wrote a placeholder main hook; it cost a
  // fork+exec of sh and cat in libvirtd at every hook call (~10 ms each, 3 per virsh start), so
  // it is removed — only if it is ours, unchanged.
  const main = join(dir, '..', 'qemu');
  try {
    if (readFileSync(main, 'utf8') === PLACEHOLDER) unlinkSync(main);
  } catch {
    // no main hook, or not readable: nothing of ours to remove
  }
}

if (require.main === module) {
  hookMain().then(
    (code) => { process.exitCode = code; },
    (e: unknown) => {
      process.stderr.write(`lockagent hook: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
