/**
 * The `lockagent` command line. `lockagent direct ...` takes sanlock's syntax and prints what
 * `sanlock direct ...` prints; operator explanations go to stderr, one line each.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'fs';
import { join } from 'path';
import { findPackageRoot } from '../io/packageroot';
import {
  parseAioOpt, parseClearOpt, parseDumpTarget, parseForceModeOpt, parseGeometryOpts, parseIoTimeoutOpt,
  parseLockspaceArg, parseNumHostsOpt, parseResourceArg, parseSectorSizeOpt, UsageError,
} from '../config/sanlockargs';
import { Geometry } from '../ondisk/sizes';
import { CliContext, defaultContext, EXIT_OK, EXIT_USAGE, runCommand } from './context';
import { directDump } from './direct-dump';
import { directInit } from './direct-init';
import { registerDirectLeaseCommands } from './direct-lease';
import { directReadLeader } from './direct-read-leader';
import { registerAgentCommands } from './agent-commands';

interface CommonOpts {
  lockspace?: string;
  resource?: string;
  sectorSize?: string;
  alignSize?: string;
  ioTimeout?: string;
  json?: boolean;
}

const LS_HELP = 'lockspace LOCKSPACE:HOST_ID:PATH[:OFFSET] (escape ":" or " " in PATH with "\\"; OFFSET in bytes or with M, default 0)';
const RES_HELP = 'resource LOCKSPACE:RESOURCE:PATH:OFFSET';
const SECTOR_HELP = 'sector size: 512 or 4096 (with -A)';
const ALIGN_HELP = 'align size: 1M, 2M, 4M or 8M (with -Z)';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(findPackageRoot(), 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function buildProgram(ctx: CliContext, setExit: (code: number) => void): Command {
  const program = new Command('lockagent');
  program
    .description('host lease agent: sanlock 3.8.5-compatible delta and paxos leases on shared storage')
    .version(version(), '-V, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => process.stdout.write(s),
      writeErr: (s) => ctx.output.err(s.replace(/\n$/, '')),
      outputError: (str, write) => write(`lockagent: ${str.replace(/^error: /, '').trimEnd()} (see --help)\n`),
    });

  const direct = program
    .command('direct')
    .description('read and write lease areas directly, without a daemon (same syntax and output as "sanlock direct")');

  /** Run an action: usage problems -> exit 2 with one line; nothing else escapes as a stack. */
  const act = <T>(fn: (opts: T, ...rest: string[]) => Promise<number>) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const opts = cmd.opts() as T;
    const positional = args.slice(0, -2).filter((a): a is string => typeof a === 'string');
    await runCommand(ctx, setExit, `direct ${cmd.name()}`, () => fn(opts, ...positional), { direct: true });
  };

  const exactlyOne = (o: CommonOpts) => {
    if (o.lockspace !== undefined && o.resource !== undefined) throw new UsageError('give either -s or -r, not both');
    if (o.lockspace === undefined && o.resource === undefined) throw new UsageError('needs -s LOCKSPACE or -r RESOURCE');
  };

  /**
   * -Z/-A of read_leader and dump, which also take -Z alone, as sanlock does: the pair's
   * geometry, or the lone sector size, checked (read_leader -r reads with it; with -s and dump
   * sanlock takes both sizes from the disk when -A is missing, so they ignore it).
   */
  const sizesOrLoneZ = (o: CommonOpts): { geometry?: Geometry; sectorSize?: 512 | 4096 } =>
    (o.alignSize === undefined && o.sectorSize !== undefined
      ? { sectorSize: parseSectorSizeOpt(o.sectorSize) }
      : { geometry: parseGeometryOpts(o.sectorSize, o.alignSize) });

  /**
   * -s or -r, -Z/-A and -o of init and read_leader, checked in this order before any I/O.
   * `loneZ` (read_leader) takes -Z without -A; init needs both.
   */
  const target = (o: CommonOpts, loneZ = false) => {
    exactlyOne(o);
    const { geometry, sectorSize } = loneZ ? sizesOrLoneZ(o) : { geometry: parseGeometryOpts(o.sectorSize, o.alignSize), sectorSize: undefined };
    return {
      lockspace: o.lockspace !== undefined ? parseLockspaceArg(o.lockspace) : undefined,
      resource: o.resource !== undefined ? parseResourceArg(o.resource) : undefined,
      geometry,
      sectorSize,
      ioTimeout: o.ioTimeout !== undefined ? parseIoTimeoutOpt(o.ioTimeout) : undefined,
    };
  };

  direct
    .command('init')
    .description('initialise a lockspace (-s) or a resource lease (-r), byte-identical to "sanlock direct init"')
    .option('-s, --lockspace <LS:HOST_ID:PATH[:OFFSET]>', `${LS_HELP}; HOST_ID is ignored (use 0)`)
    .option('-r, --resource <LS:RES:PATH:OFFSET>', RES_HELP)
    .option('-Z, --sector-size <bytes>', SECTOR_HELP)
    .option('-A, --align-size <size>', ALIGN_HELP)
    .option('-o, --io-timeout <seconds>', 'io_timeout written into every lockspace record (default 10)')
    .option('-n, --num-hosts <n>', 'resource: number of host slots (dblocks) in use (default: max_hosts)')
    .option('-z, --clear <0|1>', 'resource: 1 writes the "cleared" magic, making the lease unusable until initialised again')
    .action(act<CommonOpts & { numHosts?: string; clear?: string }>(async (o) => {
      return directInit(ctx, {
        ...target(o),
        numHosts: o.numHosts !== undefined ? parseNumHostsOpt(o.numHosts) : undefined,
        clear: o.clear !== undefined ? parseClearOpt(o.clear) : undefined,
      });
    }));

  direct
    .command('read_leader')
    .description('read and verify one leader record, like "sanlock direct read_leader"')
    .option('-s, --lockspace <LS:HOST_ID:PATH[:OFFSET]>', `${LS_HELP}; reads host_id HOST_ID's delta lease`)
    .option('-r, --resource <LS:RES:PATH:OFFSET>', RES_HELP)
    .option('-Z, --sector-size <bytes>', '512 or 4096; default: from the lease (-s), 4096 (-r). Alone it sets the sector read for -r ' +
      'and is ignored for -s (both as sanlock)')
    .option('-A, --align-size <size>', ALIGN_HELP)
    .option('-o, --io-timeout <seconds>', 'I/O timeout (default 10)')
    .addOption(new Option('--json', 'print the result and the decoded record as JSON instead of sanlock\'s text'))
    .action(act<CommonOpts>(async (o) => {
      return directReadLeader(ctx, {
        ...target(o, true),
        json: !!o.json,
      });
    }));

  direct
    .command('dump')
    .description('list the leases in a file or device, like "sanlock direct dump"')
    .argument('<PATH[:OFFSET[:SIZE]]>', 'lease file or device; OFFSET and SIZE in bytes or with M')
    .option('-f, --force-mode <0|1|2>', '1: also bitmaps, request records, rindex entries; 2: also dblocks', '0')
    .option('-Z, --sector-size <bytes>', `${SECTOR_HELP}; default: from the first lease found (alone: checked and ignored, as sanlock)`)
    .option('-A, --align-size <size>', ALIGN_HELP)
    .addOption(new Option('--json', 'print the decoded records as JSON instead of sanlock\'s text'))
    .action(act<CommonOpts & { forceMode: string }>(async (o, target) => {
      return directDump(ctx, {
        target: parseDumpTarget(target),
        forceMode: parseForceModeOpt(o.forceMode),
        geometry: sizesOrLoneZ(o).geometry,
        json: !!o.json,
      });
    }));

  registerDirectLeaseCommands(direct, ctx, setExit);
  addSanlockDirectOptions(direct, ctx);
  registerAgentCommands(program, ctx, setExit);
  return program;
}

/**
 * What sanlock's option parser gives every `direct` action, added here once for all of them:
 *  - `-a 0|1` (use aio) and `-D` (debug): accepted and ignored; lockagent always does its I/O
 *    with its own engine, and what it has to explain already goes to stderr.
 *  - at most one `-r`: sanlock acts on the first and ignores the others, commander would keep
 *    the last, so a second `-r` would silently name another lease (or file). A repeated `-s`
 *    is left to commander: sanlock keeps the last one too.
 */
function addSanlockDirectOptions(direct: Command, ctx: CliContext): void {
  for (const cmd of direct.commands) {
    cmd.addOption(new Option('-a <0|1>', 'sanlock\'s use-aio switch: accepted and ignored (lockagent always uses its own I/O engine)'));
    cmd.addOption(new Option('-D', 'sanlock\'s debug switch: accepted and ignored'));
    // every -r is kept, so that the check below sees a repeated one
    cmd.options.find((opt) => opt.short === '-r')
      ?.argParser((v: string, prev: string | string[] | undefined) => (prev === undefined ? v : [prev, v].flat()));
  }
  direct.hook('preAction', (_direct, cmd) => {
    const o = cmd.opts<{ a?: string; resource?: string | string[] }>();
    try {
      if (o.a !== undefined) parseAioOpt(o.a);
      if (Array.isArray(o.resource)) {
        throw new UsageError(`-r is given ${o.resource.length} times; sanlock direct acts on the first and ignores the others, ` +
          'lockagent refuses to guess: give one -r');
      }
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      ctx.output.err(`lockagent: direct ${cmd.name()}: ${err.message}`);
      throw new CommanderError(EXIT_USAGE, 'lockagent.usage', err.message);
    }
  });
}

/** Parse and run; resolves to the exit status. */
export async function run(argv: string[], ctx: CliContext = defaultContext()): Promise<number> {
  let code = EXIT_OK;
  const program = buildProgram(ctx, (c) => { code = c; });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // the help commander shows for a missing action (`lockagent client`) has a non-zero exitCode
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      if (err.code === 'commander.executeSubCommandAsync') return err.exitCode;
      return EXIT_USAGE;
    }
    throw err;
  }
  return code;
}
