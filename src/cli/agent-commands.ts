/**
 * Commands that talk to (or are) the running agent: daemon, status, host_status, client ...,
 * explain, config check. Output is a readable table by default and JSON with --json.
 */
import { existsSync } from 'fs';
import { Command } from 'commander';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/config';
import { callAgent } from '../control/client';
import { LeaseSpec } from '../agent/types';
import { Request } from '../control/protocol';
import { allResults, explainResult, LeaseError, resultInfo } from '../ondisk/results';
import { hostIdOutOfRange, MAX_IO_TIMEOUT } from '../ondisk/constants';
import {
  formatSanlockHeld, parseIoTimeoutOpt, parseLockspaceArg, parseLockspaceName, parsePidOpt, parseResourceArg, UsageError,
} from '../config/sanlockargs';
import type { HeldLeaseReply } from '../control/replies';
import { CliContext, EXIT_OK, runCommand } from './context';
import { formatHostStatus, formatStatus } from './status-format';
import { registerCleanupCommand } from './cleanup-command';
import { resolveSocket, SocketOpts } from './socket';
import { formatRenewal } from '../agent/renewals';

/**
 * The owner that `-p PID` alone names (sanlock's `client acquire|release|inquire -p PID`: the
 * leases belong to that process), so that the three meet the same owner.
 */
export const pidOwner = (pid: number): string => `pid:${pid}`;

/**
 * The state string `sanlock client inquire` prints: the held leases as sanlock_res_to_str prints
 * them (formatSanlockHeld: LOCKSPACE:RESOURCE:PATH:OFFSET:LVER, `:SH` for a shared one),
 * separated by spaces; no lease prints as glibc prints a NULL string. A latin1 string of the
 * bytes to print, as Output.out takes it.
 */
export function inquireState(held: HeldLeaseReply[]): string {
  if (!held.length) return '(null)';
  return held.map(formatSanlockHeld).join(' ');
}

export function registerAgentCommands(program: Command, ctx: CliContext, setExit: (code: number) => void): void {
  const run = (label: string, fn: (...a: unknown[]) => Promise<number>, style?: { client?: boolean }) =>
    (...args: unknown[]) => runCommand(ctx, setExit, label, () => fn(...args), style);
  const sockOpts = (c: Command) => c
    .option('-c, --config <path>', `config file (default ${DEFAULT_CONFIG_PATH})`)
    .option('--socket <path>', 'control socket (default: socket_path from the config)')
    .option('--json', 'print JSON');

  program.command('daemon')
    .description('run the agent in the foreground (systemd unit: conf/lockagent.service)')
    .option('-c, --config <path>', `config file (default ${DEFAULT_CONFIG_PATH})`)
    .option('-L, --log-file-level <level>', 'log file level, as sanlock -L: 3 error, 4 warning, 6 info, 7 debug, -1 off (or a name)')
    .option('-S, --log-stderr-level <level>', 'stderr/journal level, as sanlock -S (same values)')
    .action(run('daemon', async (o) => {
      // The daemon renews leases: losing its stdout or stderr (journald restarted) must not stop
      // it, as it ends a command (main.ts). Its log file, if any, goes on; stderr's lines are lost.
      for (const s of [process.stdout, process.stderr]) {
        s.removeAllListeners('error');
        s.on('error', () => undefined);
      }
      const { runDaemon } = await import('../daemon/daemon');
      const { daemonExtensions } = await import('../daemon/extensions');
      const { parseLevel } = await import('../log/logger');
      const opts = o as SocketOpts & { logFileLevel?: string; logStderrLevel?: string };
      const levels = {
        file: opts.logFileLevel !== undefined ? parseLevel(opts.logFileLevel) ?? null : undefined,
        stderr: opts.logStderrLevel !== undefined ? parseLevel(opts.logStderrLevel) ?? null : undefined,
      };
      await runDaemon(opts.config ?? DEFAULT_CONFIG_PATH, daemonExtensions(), levels);
      return new Promise<number>(() => undefined); // runs until a signal
    }));

  /**
   * status, host_status and renewals: top-level commands, and sanlock's `client status`,
   * `client host_status` and `client renewal`, which also take sanlock's -D (more detail there;
   * accepted and ignored here).
   */
  const registerQueries = (parent: Command, asClient: boolean) => {
    const query = (name: string) => {
      const c = sockOpts(parent.command(name));
      return asClient ? c.option('-D', 'accepted for sanlock\'s syntax and ignored') : c;
    };
    const label = (name: string) => (asClient ? `client ${name}` : name);

    query('status')
      .description('lockspaces (join state, renewal age), owners and their leases')
      .action(run(label('status'), async (o) => {
        const r = await callAgent(resolveSocket(o as SocketOpts), { op: 'status' }, 10000);
        if ((o as SocketOpts).json) ctx.output.json(r);
        else ctx.output.out(formatStatus(r));
        return EXIT_OK;
      }));

    query('host_status')
      .description('hosts seen in a lockspace and their state (LIVE, FAIL, DEAD, FREE, UNKNOWN)')
      .option('-s, --lockspace <name>', 'lockspace name, or LOCKSPACE:HOST_ID:PATH:OFFSET (default: all joined)')
      .action(run(label('host_status'), async (o) => {
        const opts = o as SocketOpts & { lockspace?: string };
        const name = opts.lockspace !== undefined ? parseLockspaceName(opts.lockspace) : undefined;
        const r = await callAgent(resolveSocket(opts), { op: 'host_status', lockspace: name }, 10000);
        if (opts.json) ctx.output.json(r);
        else ctx.output.out(formatHostStatus(r));
        return EXIT_OK;
      }));

    const renewals = asClient ? 'renewal' : 'renewals';
    query(renewals)
      .description("the last renewals of a lockspace (as `sanlock client renewal`): timestamp, read and write ms, failed attempts after each")
      .requiredOption('-s, --lockspace <name>', 'lockspace name, or LOCKSPACE:HOST_ID:PATH:OFFSET')
      .action(run(label(renewals), async (o) => {
        const opts = o as SocketOpts & { lockspace: string };
        const r = await callAgent(resolveSocket(opts), { op: 'renewals', lockspace: parseLockspaceName(opts.lockspace) }, 10000);
        if (opts.json) ctx.output.json(r);
        else ctx.output.out(r.renewals.map(formatRenewal).join('\n'));
        return EXIT_OK;
      }));
  };
  registerQueries(program, false);

  sockOpts(program.command('who'))
    .description('who holds a lease: held or free, mode, holder host (name, state, since when), this host\'s owner; reads the lease on disk, no agent needed')
    .argument('[DISK|DOMAIN]', 'a disk path (its automatic lease in disk_lease_dir), or a domain name or uuid (its leases, from the agent)')
    .option('-r, --resource <LS:RES:PATH:OFF>', 'a resource lease, as sanlock names it')
    .option('-s, --lockspace <LS:HOST_ID:PATH:OFF>', 'where the lockspace lives, when neither the agent nor the config says (HOST_ID is ignored)')
    .option('--no-watch', 'without an agent: read the lockspace once (host states UNKNOWN) instead of twice 2 x io_timeout + 1 s apart')
    .action(run('who', async (target, o) => {
      const opts = o as SocketOpts & { resource?: string; lockspace?: string; watch?: boolean };
      const path = opts.config ?? process.env.LOCKAGENT_CONFIG ?? DEFAULT_CONFIG_PATH;
      const { config } = loadConfig(path, { allowMissing: !opts.config });
      const { who } = await import('./who');
      return who(ctx, {
        target: target as string | undefined, resource: opts.resource, lockspace: opts.lockspace, config,
        socket: resolveSocket(opts), json: opts.json, noWatch: opts.watch === false,
      });
    }));

  const client = program.command('client').description('sanlock\'s client actions against the running agent: acquire, release or inquire leases, join/leave lockspaces, status');
  registerQueries(client, true);

  /** A client action: the stderr line of a failed one ends with the result code and its name. */
  const clientRun = (action: string, fn: (o: SocketOpts) => Promise<number>) => run(`client ${action}`, (o) => fn(o as SocketOpts), { client: true });
  /**
   * The agent's answer as sanlock prints it: `<action> done <rv>` on stdout, for a failure too
   * (not with --json: stdout stays one JSON document); runCommand explains a failure on stderr.
   * `tail` adds what sanlock prints after the code on that line (inquire's ` res_count N`).
   * `reply` is called only after `before` is printed: sanlock prints its first line (`acquire
   * pid N`) before it connects, so that line is there whatever the answer.
   */
  const done = async <R>(action: string, json: boolean | undefined, reply: () => Promise<R>, tail: (r?: R) => string = () => '', before?: string): Promise<R> => {
    if (!json && before !== undefined) ctx.output.out(`${before}\n`);
    try {
      const r = await reply();
      if (!json) ctx.output.out(`${action} done 0${tail(r)}\n`);
      return r;
    } catch (err) {
      if (!json && err instanceof LeaseError) ctx.output.out(`${action} done ${err.rv}${tail()}\n`);
      throw err;
    }
  };

  const collect = (v: string, prev: string[] = []) => [...prev, v];
  const leaseCmd = (name: 'acquire' | 'release' | 'inquire') => sockOpts(client.command(name))
    .option('-r, --resource <LS:RES:PATH:OFF[:lver|:SH]>', 'resource lease (repeat for several)', collect)
    .option('--owner <uuid>', 'owner id: a domain uuid or any stable id (default with -p: pid:PID)')
    .option('--name <name>', 'owner name shown in status')
    .option('-p, --pid <pid>', 'owner pid (killed on lease loss); without --owner it also names the owner, as in sanlock')
    .option('--timeout <seconds>', 'acquire: give up waiting (e.g. for a silent owner to be proven dead) after this long')
    .action(clientRun(name, async (o) => {
      const opts = o as SocketOpts & { resource?: string[]; owner?: string; name?: string; pid?: string; timeout?: string };
      const timeoutMs = opts.timeout !== undefined ? Number(opts.timeout) * 1000 : undefined;
      if (timeoutMs !== undefined && !(timeoutMs > 0)) throw new UsageError(`--timeout "${opts.timeout}" must be a positive number of seconds`);
      const pid = opts.pid !== undefined ? parsePidOpt(opts.pid) : undefined;
      const uuid = opts.owner ?? (pid !== undefined ? pidOwner(pid) : undefined);
      if (uuid === undefined) throw new UsageError(`${name} needs --owner UUID or -p PID`);
      const owner = { uuid, name: opts.name, pid };
      const leases: LeaseSpec[] = (opts.resource ?? []).map((s) => {
        const r = parseResourceArg(s);
        return { lockspace: r.lockspace, resource: r.resource, path: r.path, offset: r.offset, mode: r.shared ? 'shared' : 'exclusive', lver: r.lver };
      });
      if (name === 'acquire' && !leases.length) throw new UsageError('acquire needs at least one -r');
      const req: Request = name === 'acquire' ? { op: 'acquire', owner, leases, timeoutMs }
        : name === 'release' ? { op: 'release', owner, leases: leases.length ? leases : undefined }
          : { op: 'inquire', owner };
      const reply = () => callAgent(resolveSocket(opts), req, timeoutMs ? timeoutMs + 10000 : undefined);
      // sanlock's do_client: `<action> pid PID` (-1 without -p: its default) before the call;
      // inquire's done line is `inquire done RV res_count N`, then its state string in quotes
      const r = await done(name, opts.json, reply, name === 'inquire' ? (held) => ` res_count ${Array.isArray(held) ? held.length : 0}` : undefined, `${name} pid ${pid ?? -1}`);
      if (opts.json) ctx.output.json(r);
      else if (name === 'inquire' && Array.isArray(r)) ctx.output.out(`"${inquireState(r)}"\n`);
      else if (Array.isArray(r)) ctx.output.out(r.map((l) => `r ${formatSanlockHeld(l)}\n`).join(''));
      return EXIT_OK;
    }));
  leaseCmd('acquire');
  leaseCmd('release');
  leaseCmd('inquire');

  sockOpts(client.command('add_lockspace'))
    .requiredOption('-s, --lockspace <LS:HOST_ID:PATH[:OFF]>', 'lockspace to join (OFF default 0)')
    .option('-o, --io-timeout <seconds>', `io_timeout, 1 to ${MAX_IO_TIMEOUT} (default and 0: 10)`)
    .action(clientRun('add_lockspace', async (o) => {
      const opts = o as SocketOpts & { lockspace: string; ioTimeout?: string };
      const ls = parseLockspaceArg(opts.lockspace);
      const outOfRange = hostIdOutOfRange(ls.hostId);
      if (outOfRange) throw new UsageError(`-s "${opts.lockspace}": ${outOfRange}; add_lockspace joins as this host's host_id in that lockspace`);
      const ioTimeout = opts.ioTimeout !== undefined ? parseIoTimeoutOpt(opts.ioTimeout, MAX_IO_TIMEOUT) : undefined;
      const r = await done('add_lockspace', opts.json, () => callAgent(resolveSocket(opts), { op: 'add_lockspace', lockspace: ls.name, hostId: ls.hostId, path: ls.path, offset: ls.offset, ioTimeout }, 15 * 60000));
      if (opts.json) ctx.output.json(r);
      return EXIT_OK;
    }));
  sockOpts(client.command('rem_lockspace'))
    .requiredOption('-s, --lockspace <LS[:HOST_ID:PATH:OFF]>', 'lockspace to leave')
    .action(clientRun('rem_lockspace', async (o) => {
      const opts = o as SocketOpts & { lockspace: string };
      const r = await done('rem_lockspace', opts.json, () => callAgent(resolveSocket(opts), { op: 'rem_lockspace', lockspace: parseLockspaceName(opts.lockspace) }));
      if (opts.json) ctx.output.json(r);
      return EXIT_OK;
    }));

  program.command('explain')
    .argument('[code]', 'a sanlock result code (-243) or name (SANLK_ACQUIRE_IDLIVE); omit to list all')
    .description('what a sanlock result code means and what to do about it')
    .action(run('explain', async (code) => {
      if (code === undefined) {
        ctx.output.out(allResults().map((r) => `${String(r.code).padStart(5)} ${r.name.padEnd(26)} ${r.meaning}\n`).join(''));
        return EXIT_OK;
      }
      // A number neither table lists may still be an errno, named as failure lines name it.
      const errno = /^-\d+$/.test(code as string) ? resultInfo(Number(code)) : undefined;
      const r = explainResult(code as string) ?? (errno && errno.name !== 'UNKNOWN' ? errno : undefined);
      if (!r) throw new UsageError(`unknown result code "${code}"; lockagent explain lists them all`);
      ctx.output.out(`${r.code} ${r.name}\n  what:   ${r.meaning}\n  remedy: ${r.remedy}\n`);
      return EXIT_OK;
    }));

  program.command('demo')
    .description('run two agents on a local lease directory with libvirt test:///default and show a gated start')
    .option('--dir <dir>', 'work directory (default: a temporary one, removed afterwards)')
    .option('--keep', 'keep the temporary directory')
    .option('-v, --verbose', 'show the agents\' logs')
    .action(run('demo', async (o) => {
      const { runDemo } = await import('./demo');
      return runDemo(o as { dir?: string; keep?: boolean; verbose?: boolean });
    }));

  program.command('hook')
    .description('the libvirt qemu hook (installed by install-hook): forwards the domain XML on stdin to the agent')
    .argument('[args...]', 'domain operation sub-operation extra, as libvirt passes them')
    .action(async (args: string[]) => {
      const { runHook } = await import('../libvirt/hook');
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      const r = await runHook(args, Buffer.concat(chunks).toString('utf8'), resolveSocket({}));
      if (r.stderr) ctx.output.err(r.stderr);
      setExit(r.code);
    });

  program.command('install-hook')
    .description('install the start gate into libvirt\'s hook directory (then: kill -HUP $(pidof libvirtd))')
    .option('--dir <dir>', 'hook directory', '/etc/libvirt/hooks/qemu.d')
    .option('-c, --config <path>', 'config file the hook should read for socket_path')
    .option('--socket <path>', 'control socket the hook should use')
    .option('--client <path>', 'hook client: a compiled lockagent-hook, installed as the hook itself (a copy), or "node" for a script running node with libvirt/hook.js (default: this build\'s native/build/Release/lockagent-hook when built, else node)')
    .action(run('install-hook', async (o) => {
      const { installHook } = await import('../libvirt/hook');
      const opts = o as { dir: string; config?: string; socket?: string; client?: string };
      // the hook is a copy of this build's compiled client, else a script running its libvirt/hook.js (defaultHookClient, defaultHookMain)
      const path = installHook({ dir: opts.dir, socket: opts.socket, config: opts.config, client: opts.client });
      ctx.output.out(`installed ${path}\nlibvirtd notices new hooks only after a SIGHUP: kill -HUP $(pidof libvirtd)\n`);
      return EXIT_OK;
    }));

  program.command('install-lockdriver')
    .description('install the libvirt lock-driver plugin (lockagent.so; then set lock_manager = "lockagent" in qemu.conf and restart libvirtd)')
    .option('--plugin-dir <dir>', 'libvirt\'s lock-driver directory (default: the one of this machine\'s libvirt, e.g. /usr/lib/x86_64-linux-gnu/libvirt/lock-driver)')
    .option('--conf-dir <dir>', 'libvirt\'s config directory, for qemu-lockagent.conf', '/etc/libvirt')
    .option('-c, --config <path>', 'config file the plugin should read for socket_path')
    .option('--socket <path>', 'control socket the plugin should use')
    .option('--plugin <path>', 'the plugin to install (default: this build\'s native/build/Release/lockagent.so)')
    .action(run('install-lockdriver', async (o) => {
      const { installLockDriver } = await import('../libvirt/lockdriver-install');
      const opts = o as { pluginDir?: string; confDir: string; config?: string; socket?: string; plugin?: string };
      const r = installLockDriver(opts);
      ctx.output.out(`installed ${r.plugin}\n${existsSync(r.conf) ? `settings: ${r.conf}` : `settings: socket_path of ${DEFAULT_CONFIG_PATH}`}\n${r.notes.map((n) => `next: ${n}\n`).join('')}`);
      return EXIT_OK;
    }));

  const config = program.command('config').description('configuration helpers');
  config.command('check')
    .option('-c, --config <path>', `config file (default ${DEFAULT_CONFIG_PATH})`)
    .option('--as-daemon', 'read it as the daemon does: what earlier versions accepted is a warning, not an error')
    .description('validate a config file and print the effective values')
    .action(run('config check', async (o) => {
      const path = (o as SocketOpts).config ?? DEFAULT_CONFIG_PATH;
      const { config: c, warnings } = loadConfig(path, { mode: (o as { asDaemon?: boolean }).asDaemon ? 'run' : 'check' });
      for (const w of warnings) ctx.output.err(`lockagent: warning: ${w}`);
      ctx.output.json(c);
      return EXIT_OK;
    }));

  registerCleanupCommand(program, ctx, setExit);
}
