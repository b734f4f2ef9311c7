/**
 * `lockagent direct read_leader -s LS:HOST_ID:PATH:OFF | -r LS:RES:PATH:OFF` — reads and
 * verifies one leader record exactly as `sanlock direct read_leader` does, with the same result
 * code and the same output lines.
 *
 *  -s: the sector/align sizes come from the leader in sector 0 of the lockspace (or -Z with -A;
 *      -Z alone is ignored, as by sanlock); host_id N's record is sector N-1; checks magic, major
 *      version, lockspace name, checksum.
 *  -r: sector 0, read with 4096-byte sectors unless -Z (alone or with -A) says otherwise; checks
 *      magic (the cleared magic counts as bad), major version, lockspace and resource names,
 *      checksum. Dblocks are not checked (sanlock does not either; `dump -f 2` shows them).
 */
import { constants as osConstants } from 'os';
import { DEFAULT_IO_TIMEOUT, PAXOS_DISK_CLEAR } from '../ondisk/constants';
import { Geometry } from '../ondisk/sizes';
import { verifyDeltaLeader, verifyPaxosLeader } from '../ondisk/verify';
import { LockspaceArg, ResourceArg, UsageError } from '../config/sanlockargs';
import { CliContext, EXIT_FAILED, EXIT_OK } from './context';
import { leaderJson, verdictJson } from './json';
import { failureLine, leaderDetail, leaseLabel, SHORT_READ_HOST_ID_REMEDY } from './messages';
import { openTarget } from './open-target';
import { formatLeaderFields, RawLeader, readRawLeader, zeroRawLeader } from './sanlock-format';
import { EINVAL, EMSGSIZE, readLeaderSizes, ReadableStorage, sanlockRead } from './sanlock-io';

export interface ReadLeaderOptions {
  lockspace?: LockspaceArg;
  resource?: ResourceArg;
  geometry?: Geometry;
  /** -Z without -A: the sector size sector 0 of a resource is read with (ignored for -s, as by sanlock) */
  sectorSize?: 512 | 4096;
  /** -o: I/O timeout in seconds (default 10) */
  ioTimeout?: number;
  json?: boolean;
}

export interface ReadLeaderResult {
  rv: number;
  /** undefined when sanlock would print uninitialised memory (nothing was read) */
  leader?: RawLeader;
  /** what the failure was about, for the operator line */
  detail?: string;
  /** replaces the generic meaning of the code (for sanlock's generic -1) */
  meaning?: string;
  remedy?: string;
  sectorSize?: number;
}

/** The delta leader of host_id `hostId`, as `sanlock direct read_leader -s`. */
export async function readDeltaLeaderLikeSanlock(
  s: ReadableStorage, ls: LockspaceArg, geometry: Geometry | undefined, timeoutMs: number,
): Promise<ReadLeaderResult> {
  let sectorSize: number;
  if (geometry) {
    sectorSize = geometry.sectorSize;
  } else {
    const sizes = await readLeaderSizes(s, ls.offset, timeoutMs);
    if (sizes.rv !== 0 || !('sectorSize' in sizes)) {
      const noLeader = sizes.rv === -1;
      return {
        rv: sizes.rv, leader: zeroRawLeader(),
        meaning: noLeader ? `no lockspace here: sector 0 at offset ${ls.offset} holds no delta or paxos leader, so the sector size is unknown` : undefined,
        detail: noLeader ? '' : `reading 4096 bytes at offset ${ls.offset} to find the sector size failed`,
        remedy: 'check the path and offset (lockagent direct dump PATH), or initialise the lockspace with lockagent direct init -s',
      };
    }
    sectorSize = sizes.sectorSize;
  }
  if (sectorSize !== 512 && sectorSize !== 4096) {
    return {
      rv: EINVAL, leader: zeroRawLeader(), detail: `the lockspace leader gives sector size ${sectorSize >>> 0}`,
      remedy: 'the leader in sector 0 is damaged; give -Z and -A, or re-initialise the lockspace when no host uses it',
    };
  }
  const off = ls.offset + (ls.hostId - 1) * sectorSize;
  const r = await sanlockRead(s, off, sectorSize, timeoutMs);
  if (r.rv !== 0 || !r.data) {
    return {
      rv: r.rv, leader: zeroRawLeader(), sectorSize, detail: `reading host_id ${ls.hostId}'s sector at offset ${off} failed`,
      remedy: r.rv === EMSGSIZE ? SHORT_READ_HOST_ID_REMEDY : undefined,
    };
  }
  const v = verifyDeltaLeader(r.data, 0, ls.name);
  const leader = readRawLeader(r.data, 0);
  return { rv: v.rv, leader, sectorSize, detail: leaderDetail(v.rv, leader, { lockspace: ls.name }) };
}

/** The paxos leader in sector 0, as `sanlock direct read_leader -r`. */
export async function readPaxosLeaderLikeSanlock(
  s: ReadableStorage, res: ResourceArg, geometry: Pick<Geometry, 'sectorSize'> | undefined, timeoutMs: number,
): Promise<ReadLeaderResult> {
  const sectorSize = geometry?.sectorSize ?? 4096;
  const r = await sanlockRead(s, res.offset, sectorSize, timeoutMs);
  if (r.rv !== 0 || !r.data) {
    return { rv: r.rv, sectorSize, detail: `reading ${sectorSize} bytes at offset ${res.offset} failed` };
  }
  const v = verifyPaxosLeader(r.data, 0, res.lockspace, res.resource, 0);
  const leader = readRawLeader(r.data, 0);
  let detail = leaderDetail(v.rv, leader, { lockspace: res.lockspace, resource: res.resource });
  let remedy: string | undefined;
  if (v.rv === -223 && leader.magic === PAXOS_DISK_CLEAR) {
    detail = 'the resource lease was cleared with init -z 1 and cannot be used until it is initialised again';
    remedy = 'initialise it again with lockagent direct init -r (only when no host uses it)';
  }
  return { rv: v.rv, leader, sectorSize, detail, remedy };
}

export async function directReadLeader(ctx: CliContext, o: ReadLeaderOptions): Promise<number> {
  const out = ctx.output;
  const target = o.lockspace ?? o.resource;
  if (!target) throw new UsageError('needs -s LOCKSPACE or -r RESOURCE');
  if (o.lockspace && o.resource) throw new UsageError('give either -s or -r, not both');
  if (o.lockspace && o.lockspace.hostId < 1) {
    throw new UsageError(`-s needs a host_id of 1 or more (host_id N is the record in sector N-1), got ${o.lockspace.hostId}`);
  }
  if (target.offset % (o.geometry?.alignSize ?? 1048576) !== 0) {
    throw new UsageError(`offset ${target.offset} is not a multiple of the align size ${o.geometry ? o.geometry.alignSize : '1M'}; lease areas start on align boundaries`);
  }
  const isLs = !!o.lockspace;
  const label = o.lockspace
    ? leaseLabel([o.lockspace.name, String(o.lockspace.hostId)], target.path, target.offset)
    : leaseLabel([o.resource!.lockspace, o.resource!.resource], target.path, target.offset);
  const timeoutMs = (o.ioTimeout ?? DEFAULT_IO_TIMEOUT) * 1000;
  const targetJson = o.lockspace
    ? { kind: 'lockspace', lockspace: textName(o.lockspace.name), hostId: o.lockspace.hostId, path: target.path, offset: target.offset }
    : { kind: 'resource', lockspace: textName(o.resource!.lockspace), resource: textName(o.resource!.resource), path: target.path, offset: target.offset };

  const opened = await openTarget(ctx, target.path, 'read', { timeoutMs });
  if (!opened.ok) {
    const errno = (osConstants.errno as Record<string, number | undefined>)[opened.code];
    const rv = isLs || !errno ? -19 : -errno;
    if (o.json) out.json({ action: 'read_leader', target: targetJson, ...resultFields(rv), error: opened.message, leader: null });
    else out.out(`read_leader done ${rv}\n`);
    out.err(`lockagent: read_leader ${label} failed: ${opened.message}`);
    return EXIT_FAILED;
  }
  let res: ReadLeaderResult;
  try {
    res = o.lockspace
      ? await readDeltaLeaderLikeSanlock(opened.storage, o.lockspace, o.geometry, timeoutMs)
      : await readPaxosLeaderLikeSanlock(opened.storage, o.resource!, o.geometry ?? (o.sectorSize ? { sectorSize: o.sectorSize } : undefined), timeoutMs);
  } finally {
    await opened.storage.close().catch(() => undefined);
  }

  if (o.json) {
    out.json({
      action: 'read_leader', target: targetJson, ...resultFields(res.rv),
      ...(res.rv !== 0 && res.detail ? { detail: res.detail } : {}),
      leader: res.leader ? leaderJson(res.leader, isLs) : null,
    });
  } else {
    out.out(`read_leader done ${res.rv}\n`);
    if (res.leader) out.out(formatLeaderFields(res.leader, isLs));
  }
  if (res.rv !== 0) {
    out.err(failureLine(`read_leader ${label}`, res.rv, res.detail, res.remedy, res.meaning));
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

function textName(latin1: string): string {
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

function resultFields(rv: number): { rv: number; result: ReturnType<typeof verdictJson> } {
  return { rv, result: verdictJson(rv) };
}
