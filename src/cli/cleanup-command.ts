/**
 * `lockagent cleanup [--dry-run] [--min-age DURATION] [--json] [-c CONF] [--socket PATH] [--standalone]`
 *
 * Deleting runs inside the agent (op `cleanup` on the control socket): only a member of the
 * lockspace can take a lease. A dry run asks the agent too, and falls back to reading the
 * directory itself (read-only) when the agent cannot be reached (not running, or its socket
 * refuses us), or with --standalone.
 *
 * Exit status: 0 nothing failed, 1 some file or the sweep failed, 2 usage, 3 the agent is not
 * reachable (real sweep), 4 no sweep could start now (another host or this one is sweeping,
 * or the agent is still recovering after its restart, or stopping); nothing was done.
 */
import { Command } from 'commander';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig, parseDuration } from '../config/config';
import { AgentError, AgentUnreachable, callAgent } from '../control/client';
import { CliContext, EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, runCommand } from './context';
import { LeaseError, SANLK } from '../ondisk/results';
import { resolveSocket } from './socket';
import { busyLine, formatReport } from '../cleanup/report';
import { SweepReport } from '../control/replies';
import { dryRunStandalone } from '../cleanup/sweep';

interface CleanupOpts {
  dryRun?: boolean;
  minAge?: string;
  json?: boolean;
  config?: string;
  socket?: string;
  standalone?: boolean;
}

/**
 * How long the CLI waits for the agent's answer. A sweep can take long on a large directory
 * (about 40 ms per file deleted). A dry run only reads, 4 KiB per entry, 32 at a time: minutes
 * would be tens of thousands of entries on a slow NFS server, so a dry run that takes longer
 * than this is given up (an agent that hangs), naming --standalone. Tests shorten them.
 */
export const agentCallMs = { sweep: 12 * 3600 * 1000, dryRun: 5 * 60 * 1000 };
/** Progress is shown from this many directory entries on, and only on a terminal. */
const PROGRESS_FROM = 500;

function progressLine(): { update: (done: number, total: number) => void; note: (text: string) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let last = 0;
  let shown = false;
  const write = (s: string) => {
    process.stderr.write(`\r\x1b[K${s}`);
    shown = true;
  };
  return {
    update(done, total) {
      if (!tty || total < PROGRESS_FROM) return;
      const now = Date.now();
      if (done !== total && now - last < 200) return;
      last = now;
      write(`lockagent cleanup: ${done}/${total} entries examined`);
    },
    note(text) {
      if (tty) write(text);
    },
    end() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

export function registerCleanupCommand(program: Command, ctx: CliContext, setExit: (code: number) => void): void {
  program.command('cleanup')
    .description('delete lease files of disk_lease_dir that no host uses (a safe virt-sanlock-cleanup); --dry-run only reports')
    .option('--dry-run', 'classify every entry and delete nothing (writes nothing; works without a running agent)')
    .option('--min-age <duration>', 'keep files modified less than this long ago: 3600, 90m, 1h, 7d (default: cleanup_min_age)')
    .option('--standalone', 'with --dry-run: read the directory here instead of asking the agent')
    .option('-c, --config <path>', `config file (default ${DEFAULT_CONFIG_PATH})`)
    .option('--socket <path>', 'control socket (default: socket_path from the config)')
    .option('--json', 'print the report as JSON')
    .action((o: CleanupOpts) => runCommand(ctx, setExit, 'cleanup', () => runCleanup(ctx, o)));
}

/** 0 nothing failed, 1 some file or the sweep failed (or was stopped), 4 another host (or this one) is sweeping. */
export function exitStatus(r: SweepReport): number {
  if (r.status === 'busy') return EXIT_BUSY;
  return r.summary.failed > 0 || r.errors.length > 0 ? EXIT_FAILED : EXIT_OK;
}

async function runCleanup(ctx: CliContext, o: CleanupOpts): Promise<number> {
  const fail = (msg: string, code: number) => {
    ctx.output.err(`lockagent: cleanup: ${msg}`);
    return code;
  };
  let minAgeSeconds: number | undefined;
  if (o.minAge !== undefined) {
    minAgeSeconds = parseDuration(o.minAge);
    if (minAgeSeconds === undefined) return fail(`--min-age "${o.minAge}" is not a duration such as 3600, 90m, 1h or 7d`, EXIT_USAGE);
  }
  if (o.standalone && !o.dryRun) {
    return fail('--standalone needs --dry-run: deleting takes leases, which only the running agent (a lockspace member) can', EXIT_USAGE);
  }
  const progress = progressLine();
  let report: SweepReport | undefined;
  try {
    if (!o.standalone) {
      let socket: string;
      try {
        socket = resolveSocket(o);
      } catch (e) {
        return fail((e as Error).message, EXIT_FAILED);
      }
      const started = Date.now();
      const ticker = setInterval(() => progress.note(`lockagent cleanup: the agent is sweeping… ${Math.round((Date.now() - started) / 1000)} s`), 1000);
      const waitMs = o.dryRun ? agentCallMs.dryRun : agentCallMs.sweep;
      try {
        report = await callAgent(socket, { op: 'cleanup', dryRun: !!o.dryRun, minAgeSeconds }, waitMs);
      } catch (e) {
        if (o.dryRun && e instanceof AgentUnreachable) {
          // Nothing was sent: read the directory here, as --standalone does.
          ctx.output.err(e.rv === SANLK.EACCES
            ? `lockagent: cleanup: cannot use the agent (${e.message}); the dry run reads the lease directory itself`
            : 'lockagent: cleanup: the agent is not running; the dry run reads the lease directory itself');
        } else if (o.dryRun && e instanceof LeaseError && !(e instanceof AgentError) && e.rv === SANLK.ETIMEDOUT) {
          return fail(`the agent did not answer the dry run within ${Math.round(waitMs / 1000)} s (socket ${socket}): it may be hung; ` +
            'read the lease directory here instead: lockagent cleanup --dry-run --standalone', EXIT_FAILED);
        } else {
          // EBUSY: the agent could not start a sweep now (recovering after its restart, or stopping); nothing was done.
          const code = e instanceof AgentUnreachable ? EXIT_UNREACHABLE : e instanceof AgentError && e.rv === SANLK.EBUSY ? EXIT_BUSY : EXIT_FAILED;
          return fail((e as Error).message + (code === EXIT_UNREACHABLE ? ' (a dry run works without it: --dry-run)' : ''), code);
        }
      } finally {
        clearInterval(ticker);
        progress.end();
      }
    }
    if (!report) {
      const path = o.config ?? process.env.LOCKAGENT_CONFIG ?? DEFAULT_CONFIG_PATH;
      const { config, warnings } = loadConfig(path, { allowMissing: !o.config });
      for (const w of warnings) ctx.output.err(`lockagent: warning: ${w}`);
      report = await dryRunStandalone(config, {
        minAgeSeconds,
        onProgress: progress.update,
        onWatch: (s) => ctx.output.err(`lockagent: cleanup: no agent: watching the lockspace for ${s} s to see which hosts renew`),
      });
      progress.end();
    }
  } catch (e) {
    progress.end();
    if (e instanceof ConfigError) return fail(e.message, EXIT_FAILED);
    const err = e as NodeJS.ErrnoException;
    return fail(err.code === 'ENOENT' ? `the lease directory does not exist: ${err.message}` : err.message ?? String(e), EXIT_FAILED);
  }

  if (o.json) ctx.output.json(report);
  else ctx.output.out(Buffer.from(formatReport(report), 'utf8').toString('latin1')); // out() writes latin1: keep UTF-8 names intact
  if (report.status === 'busy') ctx.output.err(`lockagent: cleanup: ${busyLine(report)}`);
  return exitStatus(report);
}
