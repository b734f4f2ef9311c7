/**
 * sanlock 3.8.5 result codes (sanlock_rv.h) with the sentence an operator needs: what happened
 * and what to do about it. `lockagent explain CODE` prints these; errors never show a bare code.
 */
import { constants as osConstants } from 'os';
import { getSystemErrorMap } from 'util';

export interface ResultInfo {
  code: number;
  name: string;
  /** What happened, in words. */
  meaning: string;
  /** What the operator can do. */
  remedy: string;
}

// Generic so that each row keeps its literal code and name: SANLK below is built from them.
const R = <C extends number, N extends string>(code: C, name: N, meaning: string, remedy: string) => ({ code, name, meaning, remedy });

const TABLE = [
  R(0, 'OK', 'success', 'nothing to do'),
  R(-2, 'ENOENT', 'the lease path does not exist', 'create and initialise the lease area (lockagent direct init), or fix the path'),
  R(-3, 'ESRCH', 'no such process: the pid given for the owner does not exist', 'pass the pid of the running process that uses the leases'),
  R(-5, 'EIO', 'the storage returned an I/O error', 'check the storage and its mount; see the kernel log'),
  R(-11, 'EAGAIN', 'the resource is being removed, or live shared holders still exist', 'retry later, or release the shared holders first'),
  R(-13, 'EACCES', 'permission denied on the lease path', 'fix ownership/mode of the lease file or run the agent as the configured user'),
  R(-16, 'EBUSY', 'the resource or lockspace is being added', 'retry in a moment'),
  R(-17, 'EEXIST', 'this host already holds the resource (or already joined the lockspace)', 'nothing to do, or release it first'),
  R(-22, 'EINVAL', 'invalid argument', 'check names (at most 48 bytes), offsets (align multiples) and sizes'),
  R(-28, 'ENOSPC', 'the lockspace is not joined (libvirt reports this as "No space left on device")', 'check that the lockspace joined: lockagent status'),
  R(-110, 'ETIMEDOUT', 'an operation timed out', 'check storage latency against io_timeout'),
  R(-111, 'ECONNREFUSED', 'lockagent is not running: nothing listens on its control socket', 'start it: lockagent daemon (or systemctl start lockagent)'),
  R(-201, 'SANLK_ERROR', 'general lease error', 'see the log for the cause'),
  R(-202, 'SANLK_AIO_TIMEOUT', 'a storage I/O did not complete within io_timeout', 'check the storage path (NFS server, multipath) and consider a larger io_timeout'),
  R(-203, 'SANLK_WD_ERROR', 'watchdog device error', 'check wdmd and /dev/watchdog'),
  R(-210, 'SANLK_DBLOCK_READ', 'reading the paxos dblocks failed', 'check the storage holding the lease'),
  R(-211, 'SANLK_DBLOCK_WRITE', 'writing our paxos dblock failed', 'check the storage holding the lease'),
  R(-212, 'SANLK_DBLOCK_LVER', 'the lease was acquired by another host in a newer ballot', 'normal contention: retry, or find the holder with lockagent direct dump'),
  R(-213, 'SANLK_DBLOCK_MBAL', 'the lease was acquired by another host in the current ballot', 'normal contention: retry, or find the holder with lockagent direct dump'),
  R(-214, 'SANLK_DBLOCK_CHECKSUM', 'a paxos dblock in the lease area has a bad checksum (corrupt sector)', 'inspect with lockagent direct dump PATH -f 2; re-initialise the lease only when no host uses it'),
  R(-220, 'SANLK_LEADER_READ', 'reading the leader record failed', 'check the storage holding the lease'),
  R(-221, 'SANLK_LEADER_WRITE', 'writing the leader record failed', 'check the storage holding the lease'),
  R(-222, 'SANLK_LEADER_DIFF', 'leader records on the lease disks differ', 'check the lease disks; re-initialise when unused'),
  R(-223, 'SANLK_LEADER_MAGIC', 'the area holds no lease record of the expected kind (bad magic: not initialised, cleared, or not a lease)', 'check the path and offset, or initialise it with lockagent direct init'),
  R(-224, 'SANLK_LEADER_VERSION', 'the lease record has an unsupported major version', 'the area was written by an incompatible tool; check the path and offset'),
  R(-225, 'SANLK_LEADER_SECTORSIZE', 'the lease record has an unexpected sector size', 'use the sector/align size the area was initialised with'),
  R(-226, 'SANLK_LEADER_LOCKSPACE', 'the lease record belongs to another lockspace name', 'check the lockspace name and the path/offset'),
  R(-227, 'SANLK_LEADER_RESOURCE', 'the lease record belongs to another resource name', 'check the resource name and the path/offset'),
  R(-228, 'SANLK_LEADER_NUMHOSTS', 'the lease has fewer host slots (num_hosts) than our host_id', 'use a host_id within num_hosts, or re-initialise the lease with a larger -n'),
  R(-229, 'SANLK_LEADER_CHECKSUM', 'the leader record has a bad checksum (corrupt sector)', 'inspect with lockagent direct dump; re-initialise only when no host uses it'),
  R(-230, 'SANLK_ADDLS_SIZES', 'the lockspace sector/align sizes do not match the area', 'use the sizes the lockspace was initialised with'),
  R(-231, 'SANLK_ADDLS_INVALID_HOSTID', 'host_id is larger than the lockspace allows (max_hosts)', 'choose a host_id between 1 and max_hosts'),
  R(-240, 'SANLK_ACQUIRE_LVER', 'the lease version changed: someone else held the lease since we last had it', 'do not resume the VM blindly; check who holds the disk'),
  R(-241, 'SANLK_ACQUIRE_LOCKSPACE', 'the lease is held and its lockspace is not joined here, so the owner cannot be checked', 'join the lockspace first (lockagent client add_lockspace)'),
  R(-242, 'SANLK_ACQUIRE_IDDISK', 'the owner\'s delta lease could not be read', 'check the lockspace storage'),
  R(-243, 'SANLK_ACQUIRE_IDLIVE', 'the lease is held by another host that is alive', 'stop the VM on the other host first, or wait for it to release'),
  R(-244, 'SANLK_ACQUIRE_OWNED', 'another host won this lease version', 'normal contention: the other host holds it now'),
  R(-245, 'SANLK_ACQUIRE_OTHER', 'our ballot committed another host as owner', 'normal contention: the other host holds it now'),
  R(-246, 'SANLK_ACQUIRE_SHRETRY', 'the shared acquire gave up after repeated contention', 'retry'),
  R(-247, 'SANLK_ACQUIRE_OWNED_RETRY', 'the lease is owned and no-wait mode was requested', 'retry later'),
  R(-250, 'SANLK_RELEASE_LVER', 'the lease version changed while we held it', 'another host took the lease; check the VM using it'),
  R(-251, 'SANLK_RELEASE_OWNER', 'we are no longer the owner recorded in the lease', 'another host took the lease; check the VM using it'),
  R(-260, 'SANLK_RENEW_OWNER', 'another host wrote our host_id slot (owner changed)', 'two hosts use the same host_id: give each host a unique host_id'),
  R(-261, 'SANLK_RENEW_DIFF', 'our host_id slot changed under us', 'two hosts use the same host_id: give each host a unique host_id'),
  R(-262, 'SANLK_HOSTID_BUSY', 'the host_id is in use by another live host', 'choose a free host_id (lockagent host_status) or stop the other host'),
  R(-270, 'SANLK_REQUEST_MAGIC', 'the request record has a bad magic', 're-initialise the lease when unused'),
  R(-271, 'SANLK_REQUEST_VERSION', 'the request record has an unsupported version', 're-initialise the lease when unused'),
  R(-272, 'SANLK_REQUEST_OLD', 'the requested lease version is not newer than the current one', 'request a newer lver'),
  R(-273, 'SANLK_REQUEST_LVER', 'a newer request is already pending', 'nothing to do'),
  R(-274, 'SANLK_RINDEX_MAGIC', 'the resource index has a bad magic', 'check the rindex path and offset'),
  R(-275, 'SANLK_RINDEX_VERSION', 'the resource index has an unsupported version', 'check the rindex path and offset'),
  R(-276, 'SANLK_RINDEX_LOCKSPACE', 'the resource index belongs to another lockspace', 'check the lockspace name'),
  R(-277, 'SANLK_RINDEX_OFFSET', 'the resource index offset is wrong', 'check the rindex offset'),
  R(-278, 'SANLK_RINDEX_NOSPACE', 'the resource index is full', 'grow the index or remove entries'),
];

/**
 * Codes that sanlock's direct commands return (and lockagent's, as sanlock's do) beside
 * sanlock_rv.h, with the names lockagent gives them. Not in SANLK: the agent never answers them.
 * -1 is sanlock's generic failure (a bare `return -1`); sanlock's sources never mean EPERM by it,
 * so it is not called EPERM.
 */
const OTHER: readonly ResultInfo[] = [
  R(-1, 'FAILED', 'the operation failed', 'see the message for the cause'),
  R(-12, 'ENOMEM', 'the leader describes sizes that cannot be used', 'give -Z and -A explicitly'),
  R(-19, 'ENODEV', 'the lease path could not be opened', 'check the path and its permissions'),
  R(-30, 'EROFS', 'the lease path is on a read-only filesystem', 'remount it read-write'),
  R(-90, 'EMSGSIZE', 'the read went past the end of the file or device (short read)', 'check the offset against the size of the lease file or device'),
];

const KNOWN: readonly ResultInfo[] = [...TABLE, ...OTHER].sort((a, b) => b.code - a.code);
const BY_CODE = new Map<number, ResultInfo>(KNOWN.map((r) => [r.code, r]));
const BY_NAME = new Map<string, ResultInfo>(KNOWN.map((r) => [r.name, r]));
/** errno names of this platform by number (os.constants.errno: real errnos, not libuv's own codes) */
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

type Row = (typeof TABLE)[number];
type Short<N extends string> = N extends `SANLK_${infer K}` ? K : N;

/**
 * Every result code by name, built from TABLE: `SANLK.ACQUIRE_IDLIVE` is -243, `SANLK.ERROR` is
 * -201 (the table's SANLK_ERROR), `SANLK.EINVAL` is -22. Code names a code here, never a number.
 */
export const SANLK = Object.freeze(Object.fromEntries(TABLE.map((r) => [r.name.replace(/^SANLK_/, ''), r.code]))) as {
  readonly [E in Row as Short<E['name']>]: E['code'];
};

/** Look up a code (number, "-243") or a name ("SANLK_ACQUIRE_IDLIVE", "ACQUIRE_IDLIVE"). */
export function explainResult(codeOrName: number | string): ResultInfo | undefined {
  if (typeof codeOrName === 'number') return BY_CODE.get(codeOrName);
  const s = codeOrName.trim();
  if (/^[-+]?\d+$/.test(s)) {
    const n = Number(s);
    return BY_CODE.get(n) ?? BY_CODE.get(-Math.abs(n));
  }
  const up = s.toUpperCase();
  return BY_NAME.get(up) ?? BY_NAME.get(`SANLK_${up}`);
}

/** Every named code: sanlock_rv.h's, the errnos lockagent answers with, and OTHER. */
export function allResults(): readonly ResultInfo[] {
  return KNOWN;
}

/**
 * The one naming of a result code, for everything that shows one (the CLI's failure lines and
 * JSON, the agent's refusals as the CLI reports them): sanlock prints only the number, so the
 * names are lockagent's. A code of the table or OTHER has its row; any other negative errno its
 * errno name (-9 is EBADF: what a system call said, which is clearer than a name of sanlock's own
 * that the code is not, such as SANLK_ERROR, -201); a code that is neither is UNKNOWN.
 */
export function resultInfo(rv: number): ResultInfo {
  const known = BY_CODE.get(rv);
  if (known) return known;
  const errno = rv < 0 ? ERRNO_NAMES.get(-rv) : undefined;
  if (errno) {
    const text = getSystemErrorMap().get(rv)?.[1];
    return { code: rv, name: errno, meaning: `system error ${errno}${text ? ` (${text})` : ''}`, remedy: 'check the storage and the system log' };
  }
  return { code: rv, name: 'UNKNOWN', meaning: `result ${rv}, which neither sanlock nor lockagent defines`, remedy: 'see the message and the log for the cause' };
}

/**
 * An acquire's refusal because another host holds the lease or just won it (-243 a live owner,
 * -244 another host won this lease version, -245 our ballot committed another host): contention,
 * not a fault. The one rule; each caller adds what else it counts alike.
 */
export function heldByAnotherHost(rv: number): boolean {
  return rv === SANLK.ACQUIRE_IDLIVE || rv === SANLK.ACQUIRE_OWNED || rv === SANLK.ACQUIRE_OTHER;
}

/** "the lease is held by another host that is alive (sanlock -243 SANLK_ACQUIRE_IDLIVE)" */
export function describeResult(code: number): string {
  const r = resultInfo(code);
  return `${r.meaning} (sanlock ${code} ${r.name})`;
}

/**
 * An error carrying a sanlock result code. `message` is the operator sentence; `rv` keeps the
 * code for scripts and for interop with sanlock's numbers.
 */
export class LeaseError extends Error {
  readonly rv: number;
  constructor(rv: number, message?: string) {
    super(message ?? describeResult(rv));
    this.name = 'LeaseError';
    this.rv = rv;
  }
}

/**
 * A request refused for what it asks (a domain XML that is not valid, a lease plan that libvirt's
 * rules forbid), not for a fault of the agent: it carries the code the client is answered with.
 * The control server logs it as a refusal, never as a fault.
 */
export class Refusal extends Error {
  readonly refusal = true;
  constructor(readonly rv: number, message: string) {
    super(message);
    this.name = 'Refusal';
  }
}
