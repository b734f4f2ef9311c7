/**
 * `lockagent direct acquire_id | renew_id | release_id | acquire | release`: the lease
 * operations of `sanlock direct`, with its syntax, its stdout lines and the same bytes on disk,
 * run by lockagent's lease engine (src/lease).
 *
 *   acquire_id -s LS:HOST_ID:PATH:OFF [-o IO] [-e NAME]   delta acquire (2·io, or host_dead + 2·io
 *                                                       when another name holds the host_id)
 *   renew_id   -s LS:HOST_ID:PATH:OFF [-o IO]             new timestamp (no ownership check, as sanlock)
 *   release_id -s LS:HOST_ID:PATH:OFF [-o IO]             timestamp 0 (no ownership check, as sanlock)
 *   acquire    -r LS:RES:PATH:OFF -i HOST_ID -g GEN [-o IO]  paxos acquire; a lease held by another
 *                                                       host gives -241 (no lockspace in direct mode)
 *   release    -r LS:RES:PATH:OFF -i HOST_ID -g GEN [-o IO]  really releases (sanlock's is a no-op):
 *                                                       RELEASED dblock + leader timestamp 0, only if
 *                                                       (HOST_ID, GEN) holds it; else -251, nothing written
 *
 * stdout is sanlock's `<action> done <rv>` (including its misspelt `rewew_id done`); the
 * explanation of a failure is one line on stderr; exit status 0 / 1 (failed) / 2 (usage).
 */
import { Command } from 'commander';
import { randomUUID } from 'crypto';
import { constants as osConstants, hostname } from 'os';
import { systemClock } from '../lease/clock';
import { DeltaLease, deltaAcquire, deltaRelease, deltaRenew, readDeltaLeader, readLockspaceGeometry } from '../lease/delta';
import { readPaxosLeader } from '../lease/paxos';
import { acquireResource, releaseResource } from '../lease/resource';
import { LeaseStorage } from '../lease/storage';
import { ResourceLocation, ResourceToken } from '../lease/token';
import { dblockOffset } from '../lease/ballot';
import { deltaAcquireHeldDelay, deltaShortDelay } from '../lease/timeouts';
import {
  decodeDblock, decodeModeBlock, DEFAULT_IO_TIMEOUT, Geometry, HOST_NAME_MAX_ON_DISK, HOSTID_BITMAP_SIZE,
  isShared, LeaderRecord, LeaseError, listGeometries, namesEqual, SANLK,
} from '../ondisk';
import {
  LockspaceArg, parseIoTimeoutOpt, parseLockspaceArg, parseResourceArg, parseUnsigned, refuseNonUtf8, ResourceArg, UsageError,
} from '../config/sanlockargs';
import { CliContext, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from './context';
import { describeOpenError, failureLine, leaseLabel, shellQuote, SHORT_READ_HOST_ID_REMEDY } from './messages';
import { openTarget } from './open-target';
import { EMSGSIZE, errorToRv, readLeaderSizes, WritableStorage } from './sanlock-io';

const ENODEV = -19;
const OPEN_TIMEOUT_MS = 60_000;

/** The stdout word sanlock prints for each action (renew_id is misspelt in sanlock 3.8.5). */
const DONE_WORD = {
  acquire_id: 'acquire_id',
  renew_id: 'rewew_id',
  release_id: 'release_id',
  acquire: 'acquire',
  release: 'release',
} as const;
type Action = keyof typeof DONE_WORD;

/** A failure with sanlock's code and the operator's sentence. */
class DirectFailure extends Error {
  constructor(readonly rv: number, readonly detail: string, readonly remedy?: string, readonly meaning?: string) {
    super(detail);
  }
}

export interface DeltaOptions {
  lockspace: LockspaceArg;
  /** -o: written into the record (& 0xff) and used for every I/O; default 10, as sanlock */
  ioTimeout?: number;
  /** -e (acquire_id): default "<uuid>.<nodename>", new for every run, as sanlock */
  hostName?: string;
}

export interface PaxosOptions {
  resource: ResourceArg;
  hostId: number;
  generation: number;
  ioTimeout?: number;
}

/**
 * sanlock's default host name: "<lower-case uuid v4>.<nodename>" in a 48-byte buffer; the delta
 * acquire stores its first 47 bytes. A new one every run, so a rerun is never a "fast reacquire".
 */
export function defaultHostName(): string {
  return Buffer.from(`${randomUUID()}.${hostname()}`, 'utf8').subarray(0, 48).toString('latin1');
}

/** Operator-given text (UTF-8) as the on-disk byte string the engine uses. */
function diskName(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function text(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

/** LeaseStorage over the CLI's storage handle (it lacks only the id). */
function asLeaseStorage(s: WritableStorage, path: string): LeaseStorage {
  return { id: path, read: (o, l, t) => s.read(o, l, t), write: (o, d, t) => s.write(o, d, t) };
}

async function withStorage<T>(
  ctx: CliContext, path: string, isLockspace: boolean, initHint: string,
  fn: (s: WritableStorage) => Promise<T>,
): Promise<T> {
  const opened = await openTarget(ctx, path, 'init', { timeoutMs: OPEN_TIMEOUT_MS });
  if (!opened.ok) {
    // sanlock: a lockspace path that cannot be opened is -ENODEV; a resource path gives -errno
    const errno = (osConstants.errno as Record<string, number | undefined>)[opened.code];
    const rv = isLockspace || !errno ? ENODEV : -errno;
    const msg = opened.code === 'ENOENT'
      ? `${path} does not exist; create and initialise the lease area first: truncate -s 1M ${shellQuote(path)} && ${initHint}`
      : opened.code ? describeOpenError(opened.error ?? { code: opened.code }, path, 'init').message : opened.message;
    throw new DirectFailure(rv, msg, opened.code === 'ENOENT' ? 'create and initialise the lease area' : undefined);
  }
  try {
    return await fn(opened.storage);
  } finally {
    await opened.storage.close().catch(() => undefined);
  }
}

/**
 * direct_read_leader_sizes: 4096 bytes at the offset must hold a delta or paxos leader, whose
 * sector size and align flag tell the geometry; -1 otherwise (sanlock prints `done -1`).
 */
async function sizesAt(s: WritableStorage, offset: number, timeoutMs: number, kind: 'lockspace' | 'resource', initHint: string): Promise<Geometry> {
  const sizes = await readLeaderSizes(s, offset, timeoutMs);
  if (sizes.rv !== 0 || !('sectorSize' in sizes)) {
    if (sizes.rv === -1) {
      throw new DirectFailure(-1, `no ${kind} at offset ${offset}: the area holds neither a lockspace nor a resource leader (cleared, never initialised, or the wrong offset)`,
        `check the path and offset (lockagent direct dump PATH), or initialise it: ${initHint}`,
        'no lease record here');
    }
    throw new DirectFailure(sizes.rv, `reading 4096 bytes at offset ${offset} to find the sector size failed`);
  }
  const g = listGeometries().find((x) => x.sectorSize === sizes.sectorSize && x.alignSize === sizes.alignSize);
  if (!g) {
    throw new DirectFailure(SANLK.EINVAL, `the leader at offset ${offset} gives sector size ${sizes.sectorSize >>> 0} and align size ${sizes.alignSize}, which is not a sanlock geometry`,
      'the leader is damaged; re-initialise the area only when no host uses it');
  }
  return g;
}

/** A read past the end of the file or device comes back short in sanlock: -EMSGSIZE. */
function checkBounds(s: WritableStorage, end: number, what: string, remedy?: string): void {
  if (end > s.info.size) {
    throw new DirectFailure(EMSGSIZE, `${what} ends at byte ${end}, past the end of the ${s.info.isBlockDevice ? 'device' : 'file'} (${s.info.size} bytes)`, remedy);
  }
}

const lsInit = (ls: LockspaceArg) => `lockagent direct init -s ${text(ls.name)}:0:${shellQuote(ls.path)}:${ls.offset}`;
const resInit = (r: ResourceArg) => `lockagent direct init -r ${text(r.lockspace)}:${text(r.resource)}:${shellQuote(r.path)}:${r.offset}`;

function checkOffset(offset: number): void {
  if (offset % 1048576 !== 0) {
    throw new UsageError(`offset ${offset} is not a multiple of 1M; lease areas start on align boundaries (1M, 2M, 4M or 8M)`);
  }
}

function checkHostIdArg(hostId: number, opt: string): void {
  if (hostId < 1) throw new UsageError(`${opt} needs a host_id of 1 or more (host_id N is the record in sector N-1 of the lockspace), got ${hostId}`);
}

/** Open, size and read the delta record of -s's host_id: what renew_id and release_id start from. */
async function openDelta(
  ctx: CliContext, o: DeltaOptions, fn: (storage: LeaseStorage, geometry: Geometry, leader: LeaderRecord, io: number) => Promise<void>,
): Promise<void> {
  const ls = o.lockspace;
  const io = o.ioTimeout ?? DEFAULT_IO_TIMEOUT;
  await withStorage(ctx, ls.path, true, lsInit(ls), async (s) => {
    const g = await sizesAt(s, ls.offset, io * 1000, 'lockspace', lsInit(ls));
    checkBounds(s, ls.offset + g.alignSize, `the lockspace area at offset ${ls.offset} (${g.alignSize} bytes)`);
    const storage = asLeaseStorage(s, ls.path);
    const geometry = await readLockspaceGeometry(storage, ls.offset, ls.name, io);
    if (ls.hostId > geometry.maxHosts) {
      throw new DirectFailure(SANLK.EINVAL, `host_id ${ls.hostId} is outside 1..${geometry.maxHosts} for this lockspace (${geometry.sectorSize}-byte sectors, ${geometry.alignSize >> 20}M)`);
    }
    const leader = await readDeltaLeader(storage, ls.offset, geometry, ls.name, ls.hostId, io);
    await fn(storage, geometry, leader, io);
  });
}

/** The DeltaLease sanlock's direct renew/release build from the record just read (leader_last). */
function leaseFromRecord(storage: LeaseStorage, ls: LockspaceArg, geometry: Geometry, leader: LeaderRecord, io: number): DeltaLease {
  if (leader.ownerId === 0) {
    throw new DirectFailure(SANLK.EINVAL, `host_id ${ls.hostId} of lockspace ${text(ls.name)} has never been acquired (owner_id 0)`,
      `acquire it first: lockagent direct acquire_id -s ${text(ls.name)}:${ls.hostId}:${shellQuote(ls.path)}:${ls.offset}`);
  }
  if (leader.ownerId !== ls.hostId) {
    throw new DirectFailure(SANLK.EINVAL, `the record of host_id ${ls.hostId} names owner_id ${leader.ownerId}; the lockspace is damaged`,
      'inspect it with lockagent direct dump PATH -f 1');
  }
  return {
    spaceName: ls.name, hostId: ls.hostId, hostName: leader.resourceName, storage, offset: ls.offset, geometry,
    ioTimeout: io, generation: leader.ownerGeneration, leader, lastSuccess: leader.timestamp,
    // not SANLK.OK: the record was not written by us, so no "changed since our last write" check
    lastResult: -1, bitmap: Buffer.alloc(HOSTID_BITMAP_SIZE), released: false,
  };
}

export async function directAcquireId(ctx: CliContext, o: DeltaOptions): Promise<void> {
  const ls = o.lockspace;
  checkHostIdArg(ls.hostId, '-s');
  checkOffset(ls.offset);
  const io = o.ioTimeout ?? DEFAULT_IO_TIMEOUT;
  const hostName = o.hostName !== undefined ? diskName(o.hostName) : defaultHostName();
  await withStorage(ctx, ls.path, true, lsInit(ls), async (s) => {
    const g = await sizesAt(s, ls.offset, io * 1000, 'lockspace', lsInit(ls));
    checkBounds(s, ls.offset + ls.hostId * g.sectorSize, `the record of host_id ${ls.hostId}`, SHORT_READ_HOST_ID_REMEDY);
    const storage = asLeaseStorage(s, ls.path);
    // Tell the operator about the long wait before it starts (sanlock is silent for 140 s).
    const geometry = await readLockspaceGeometry(storage, ls.offset, ls.name, io);
    if (ls.hostId <= geometry.maxHosts) {
      const cur = await readDeltaLeader(storage, ls.offset, geometry, ls.name, ls.hostId, io).catch(() => undefined);
      if (cur && cur.timestamp !== 0 && !namesEqual(cur.resourceName, hostName.slice(0, HOST_NAME_MAX_ON_DISK))) {
        const wait = deltaAcquireHeldDelay(cur.ioTimeout, io) + deltaShortDelay(cur.ioTimeout, io);
        ctx.output.err(`lockagent: acquire_id: host_id ${ls.hostId} of ${text(ls.name)} is held by "${text(cur.resourceName)}" ` +
          `(generation ${cur.ownerGeneration}); waiting up to ${wait} s to see whether it is still renewed (-262 if it is)`);
      }
    }
    await deltaAcquire({ storage, offset: ls.offset, spaceName: ls.name, hostId: ls.hostId, hostName, ioTimeout: io, clock: systemClock });
  });
}

export async function directRenewId(ctx: CliContext, o: DeltaOptions): Promise<void> {
  checkHostIdArg(o.lockspace.hostId, '-s');
  checkOffset(o.lockspace.offset);
  await openDelta(ctx, o, async (storage, geometry, leader, io) => {
    await deltaRenew(leaseFromRecord(storage, o.lockspace, geometry, leader, io), systemClock);
  });
}

export async function directReleaseId(ctx: CliContext, o: DeltaOptions): Promise<void> {
  checkHostIdArg(o.lockspace.hostId, '-s');
  checkOffset(o.lockspace.offset);
  await openDelta(ctx, o, async (storage, geometry, leader, io) => {
    await deltaRelease(leaseFromRecord(storage, o.lockspace, geometry, leader, io));
  });
}

function checkPaxosArgs(o: PaxosOptions): void {
  checkHostIdArg(o.hostId, '-i');
  checkOffset(o.resource.offset);
  if (o.resource.shared || o.resource.lver !== undefined) {
    throw new UsageError(`direct acquire and release take LOCKSPACE:RESOURCE:PATH:OFFSET without :lver or :SH ` +
      '(sanlock\'s direct mode ignores them); shared leases and lver checks need a joined lockspace: lockagent client acquire');
  }
}

async function openResource(
  ctx: CliContext, o: PaxosOptions, fn: (res: ResourceLocation, geometry: Geometry, io: number) => Promise<void>,
): Promise<void> {
  const r = o.resource;
  const io = o.ioTimeout ?? DEFAULT_IO_TIMEOUT;
  await withStorage(ctx, r.path, false, resInit(r), async (s) => {
    const g = await sizesAt(s, r.offset, io * 1000, 'resource', resInit(r));
    checkBounds(s, r.offset + g.alignSize, `the resource area at offset ${r.offset} (${g.alignSize} bytes)`);
    const res: ResourceLocation = { storage: asLeaseStorage(s, r.path), offset: r.offset, spaceName: r.lockspace, resourceName: r.resource, geometry: g };
    await fn(res, g, io);
  });
}

export async function directAcquire(ctx: CliContext, o: PaxosOptions): Promise<void> {
  checkPaxosArgs(o);
  await openResource(ctx, o, async (res, _g, io) => {
    await acquireResource(res, { hostId: o.hostId, generation: o.generation, ioTimeout: io }, { clock: systemClock, mode: 'EX' });
  });
}

/**
 * Release what (host_id, generation) holds: exclusively (the leader names it, timestamp set) or
 * shared (its mode block is SHARED with that generation). Anything else is refused with -251
 * and nothing is written. Returns a note for stderr when the release left something visible.
 */
export async function directRelease(ctx: CliContext, o: PaxosOptions): Promise<string | undefined> {
  checkPaxosArgs(o);
  let note: string | undefined;
  await openResource(ctx, o, async (res, g, io) => {
    const host = { hostId: o.hostId, generation: o.generation, ioTimeout: io };
    const leader = await readPaxosLeader(res, g.sectorSize, o.hostId, io);
    let sector: Buffer;
    try {
      sector = await res.storage.read(res.offset + dblockOffset(g.sectorSize, o.hostId), g.sectorSize, io * 1000);
    } catch (e) {
      throw new DirectFailure(SANLK.DBLOCK_READ, `reading the dblock of host ${o.hostId} failed: ${(e as Error).message}`);
    }
    const dblock = decodeDblock(sector, 0);
    const mb = decodeModeBlock(sector, 0);
    const base = { res, host, sectorSize: g.sectorSize, alignSize: g.alignSize, leader, dblock, lver: leader.lver };
    const ownsLeader = leader.timestamp !== 0 && leader.ownerId === o.hostId && leader.ownerGeneration === o.generation;
    if (ownsLeader) {
      const token: ResourceToken = { ...base, mode: 'EX' };
      await releaseResource(token, { clock: systemClock });
      if (leader.writeId !== o.hostId) {
        note = `lockagent: release: the leader of ${text(res.spaceName)}:${text(res.resourceName)} was written by host ${leader.writeId}, ` +
          `which committed host ${o.hostId} as owner; as in sanlock it is left as is and host ${o.hostId}'s dblock now says RELEASED, ` +
          'which joined hosts honour (direct-mode acquirers still see it held: -241)';
      }
      return;
    }
    if (isShared(mb) && mb.generation === o.generation) {
      await releaseResource({ ...base, mode: 'SH' }, { clock: systemClock });
      return;
    }
    const name = `${text(res.spaceName)}:${text(res.resourceName)}`;
    let why: string;
    if (leader.timestamp === 0) {
      why = `it is free (lver ${leader.lver}${leader.ownerId ? `, last held by host ${leader.ownerId} generation ${leader.ownerGeneration}` : ''})`;
    } else if (leader.ownerId === o.hostId) {
      why = `it is held by host ${o.hostId} generation ${leader.ownerGeneration}, not ${o.generation} (lver ${leader.lver}); give -g ${leader.ownerGeneration} to release it`;
    } else {
      why = `it is held by host ${leader.ownerId} generation ${leader.ownerGeneration} (lver ${leader.lver})`;
    }
    if (isShared(mb)) why += `; host ${o.hostId}'s shared mode block has generation ${mb.generation}`;
    throw new DirectFailure(SANLK.RELEASE_OWNER, `${name} is not held by host ${o.hostId} generation ${o.generation}: ${why}; nothing was written`,
      'check the owner with lockagent direct dump PATH -f 2');
  });
  return note;
}

/** `-i` and `-g`: sanlock reads them with strtoull(…, 0), a C literal (`-i 0x10` and `-i 020` are 16). */
function parseU64Opt(s: string | undefined, opt: string): number | undefined {
  return s === undefined ? undefined : parseUnsigned(s, opt, { cLiteral: true });
}

/** Register the five commands under `lockagent direct`. */
export function registerDirectLeaseCommands(direct: Command, ctx: CliContext, setExit: (code: number) => void): void {
  const out = ctx.output;

  /** Run one action: print `<word> done <rv>`, explain failures on stderr, set the exit status. */
  const runAction = async (action: Action, label: string, fn: () => Promise<string | undefined | void>) => {
    let rv = 0;
    let line: string | undefined;
    let note: string | undefined;
    try {
      note = (await fn()) ?? undefined;
    } catch (err) {
      if (err instanceof UsageError) {
        out.err(`lockagent: direct ${action}: ${err.message}`);
        setExit(EXIT_USAGE);
        return;
      }
      if (err instanceof DirectFailure) {
        rv = err.rv;
        line = failureLine(`${action} ${label}`, rv, err.detail, err.remedy, err.meaning);
      } else if (err instanceof LeaseError) {
        rv = err.rv;
        line = failureLine(`${action} ${label}`, rv, err.message);
      } else {
        rv = errorToRv(err);
        const msg = err instanceof Error ? err.message : String(err);
        line = failureLine(`${action} ${label}`, rv, msg);
        if (process.env.LOCKAGENT_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
      }
    }
    out.out(`${DONE_WORD[action]} done ${rv}\n`);
    if (note) out.err(note);
    if (line) out.err(line);
    setExit(rv === 0 ? EXIT_OK : EXIT_FAILED);
  };

  /** Parse in the action so a bad argument is a usage error (exit 2) before any I/O. */
  const usage = (action: Action, fn: () => void): boolean => {
    try {
      fn();
      return true;
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      out.err(`lockagent: direct ${action}: ${err.message}`);
      setExit(EXIT_USAGE);
      return false;
    }
  };

  const LS_ARG = '<LS:HOST_ID:PATH[:OFFSET]>';
  const IO_HELP = 'io_timeout in seconds: written into the record and used for every I/O (default 10)';
  type DeltaCli = { lockspace: string; ioTimeout?: string; hostName?: string };
  const delta = (action: 'acquire_id' | 'renew_id' | 'release_id', desc: string,
    fn: (o: DeltaOptions) => Promise<void>, withName: boolean) => {
    const c = direct.command(action).description(desc)
      .requiredOption('-s, --lockspace ' + LS_ARG, 'lockspace and host_id ("\\" escapes ":" or " " in PATH; OFFSET in bytes or with M, default 0)')
      .option('-o, --io-timeout <seconds>', IO_HELP);
    if (withName) c.option('-e, --host-name <name>', 'our host name, stored in the record (47 bytes kept); default "<uuid>.<nodename>", new every run');
    c.action(async (opts: DeltaCli) => {
      let o: DeltaOptions | undefined;
      if (!usage(action, () => {
        o = {
          lockspace: parseLockspaceArg(opts.lockspace),
          ioTimeout: opts.ioTimeout !== undefined ? parseIoTimeoutOpt(opts.ioTimeout) : undefined,
          hostName: opts.hostName,
        };
        if (o.hostName !== undefined && o.hostName.length === 0) throw new UsageError('-e needs a non-empty host name');
        if (o.hostName !== undefined) refuseNonUtf8(o.hostName, `-e host name "${o.hostName}"`);
        checkHostIdArg(o.lockspace.hostId, '-s');
        checkOffset(o.lockspace.offset);
      })) return;
      const label = leaseLabel([o!.lockspace.name, String(o!.lockspace.hostId)], o!.lockspace.path, o!.lockspace.offset);
      await runAction(action, label, () => fn(o!));
    });
  };
  delta('acquire_id', 'acquire a host_id (delta lease) like "sanlock direct acquire_id": 2·io_timeout when free, host_dead + 2·io when held under another name',
    (o) => directAcquireId(ctx, o), true);
  delta('renew_id', 'renew a host_id\'s timestamp like "sanlock direct renew_id" (prints sanlock\'s "rewew_id done")',
    (o) => directRenewId(ctx, o), false);
  delta('release_id', 'release a host_id (timestamp 0) like "sanlock direct release_id"',
    (o) => directReleaseId(ctx, o), false);

  const RES_ARG = '<LS:RES:PATH:OFFSET>';
  type PaxosCli = { resource: string; hostId?: string; generation?: string; ioTimeout?: string };
  const paxos = (action: 'acquire' | 'release', desc: string, fn: (o: PaxosOptions) => Promise<string | undefined | void>) => {
    direct.command(action).description(desc)
      .requiredOption('-r, --resource ' + RES_ARG, 'resource lease ("\\" escapes ":" or " " in PATH; OFFSET in bytes or with M)')
      .option('-i, --host-id <host_id>', 'our host_id in the resource\'s lockspace')
      .option('-g, --generation <generation>', `our host generation (owner_generation of our delta lease)${action === 'acquire' ? '; default 0' : ''}`)
      .option('-o, --io-timeout <seconds>', 'I/O timeout in seconds (default 10)')
      .action(async (opts: PaxosCli) => {
        let o: PaxosOptions | undefined;
        if (!usage(action, () => {
          const hostId = parseU64Opt(opts.hostId, '-i');
          let generation = parseU64Opt(opts.generation, '-g');
          if (hostId === undefined) throw new UsageError(`${action} needs -i HOST_ID${action === 'release' ? ' and -g GENERATION: lockagent\'s direct release frees the lease only for its holder (sanlock\'s direct release changes nothing)' : ''}`);
          if (generation === undefined) {
            if (action === 'release') throw new UsageError('release needs -g GENERATION: the generation the lease was acquired with (see lockagent direct dump PATH)');
            generation = 0;
          }
          o = {
            resource: parseResourceArg(opts.resource), hostId, generation,
            ioTimeout: opts.ioTimeout !== undefined ? parseIoTimeoutOpt(opts.ioTimeout) : undefined,
          };
          checkPaxosArgs(o);
        })) return;
        const label = leaseLabel([o!.resource.lockspace, o!.resource.resource], o!.resource.path, o!.resource.offset);
        await runAction(action, label, () => fn(o!));
      });
  };
  paxos('acquire', 'acquire a resource lease for -i/-g like "sanlock direct acquire"; a lease held by another host fails with -241 (no lockspace to check its owner)',
    (o) => directAcquire(ctx, o));
  paxos('release', 'release a resource lease held by -i/-g: RELEASED dblock and leader timestamp 0, as the sanlock daemon does (sanlock\'s direct release is a no-op)',
    (o) => directRelease(ctx, o));
}
