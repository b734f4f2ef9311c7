/**
 * One-line explanations for the operator (stderr). stdout stays sanlock's; these lines say what
 * a result code means for *this* path and what to do about it.
 */
import {
  DELTA_DISK_MAGIC, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC, RINDEX_DISK_MAGIC,
} from '../ondisk/constants';
import { resultInfo } from '../ondisk/results';
import { escapePath } from '../config/sanlockargs';
import type { RawLeader } from './sanlock-format';

/** The remedy of a short read of a host_id's delta record (-s), which its host_id places too. */
export const SHORT_READ_HOST_ID_REMEDY = 'check the host_id and the offset against the size of the lease file or device: host_id N is the record in sector N-1 of the lockspace';

export function magicName(magic: number): string {
  switch (magic >>> 0) {
    case DELTA_DISK_MAGIC: return 'a lockspace (delta lease)';
    case PAXOS_DISK_MAGIC: return 'a resource (paxos lease)';
    case PAXOS_DISK_CLEAR: return 'a cleared resource (init -z 1)';
    case RINDEX_DISK_MAGIC: return 'a resource index';
    case 0: return 'a zero magic (never initialised, or initialisation did not finish)';
    default: return `no lease (magic 0x${(magic >>> 0).toString(16)})`;
  }
}

function printable(s: string): string {
  // names are latin1 byte strings; show them as UTF-8 text with control bytes escaped
  // eslint-disable-next-line no-control-regex
  return Buffer.from(s, 'latin1').toString('utf8').replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Extra words for a verify failure, from the record that was read. */
export function leaderDetail(rv: number, l: RawLeader | undefined, expect: { lockspace: string; resource?: string }): string {
  if (!l) return '';
  switch (rv) {
    case -223:
      return `found ${magicName(l.magic)} where ${expect.resource === undefined ? 'a lockspace' : 'a resource'} was expected`;
    case -224:
      return `version 0x${(l.version >>> 0).toString(16)}`;
    case -226:
      return `it belongs to lockspace "${printable(l.spaceName)}", not "${printable(expect.lockspace)}"`;
    case -227:
      return `it is resource "${printable(l.resourceName)}", not "${printable(expect.resource ?? '')}"`;
    default:
      return '';
  }
}

/** `lockagent: <what> failed: <meaning> (sanlock <rv> <NAME>)[: detail]; remedy: <remedy>` */
export function failureLine(what: string, rv: number, detail = '', remedy?: string, meaning?: string): string {
  const info = resultInfo(rv);
  return `lockagent: ${what} failed: ${meaning ?? info.meaning} (sanlock ${rv} ${info.name})${detail ? `: ${detail}` : ''}; remedy: ${remedy ?? info.remedy}`;
}

/** A shell-safe rendering of a path for remedies such as `truncate -s 1M PATH`. */
export function shellQuote(p: string): string {
  return /^[A-Za-z0-9_./,:=+-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`;
}

/**
 * Why a lease path could not be opened, in one sentence with a remedy. `createSize` (init only)
 * is the file size that would hold the lease area, for the `truncate` hint.
 */
export function describeOpenError(err: unknown, path: string, purpose: 'init' | 'read', createSize?: string): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = e && typeof e.code === 'string' ? e.code : '';
  const p = path;
  switch (code) {
    case 'ENOENT':
      return {
        code,
        message: purpose === 'init'
          ? `${p} does not exist; lockagent (like sanlock) does not create lease files: create it first, e.g. truncate -s ${createSize ?? '1M'} ${shellQuote(p)}`
          : `${p} does not exist; check the path`,
      };
    case 'ENOTDIR':
      return { code, message: `${p}: a component of the path is not a directory; check the path` };
    case 'EACCES':
    case 'EPERM':
      return {
        code,
        message: `permission denied opening ${p} for ${purpose === 'init' ? 'writing' : 'reading'}; run as a user with access to it (sanlock's user is "sanlock") or fix its owner/mode`,
      };
    case 'EROFS':
      return { code, message: `${p} is on a read-only filesystem; init needs to write it: remount read-write or choose another path` };
    case 'EISDIR':
      return { code, message: `${p} is a directory; give a lease file or a block device` };
    case 'EINVAL':
      return { code, message: `${p}: the filesystem refused direct I/O (O_DIRECT); put leases on a filesystem or device that supports it` };
    case 'ENXIO':
    case 'ENODEV':
      return { code, message: `${p}: no such device; check that the device is present` };
    case 'EBUSY':
      return { code, message: `${p} is busy (opened exclusively by another program)` };
    default: {
      const msg = e && typeof e.message === 'string' ? e.message : String(err);
      return { code, message: `cannot open ${p}: ${msg}` };
    }
  }
}

/** `LS:RES` / `LS:HOST` labels used in messages; names are shown as text, paths escaped. */
export function leaseLabel(parts: string[], path: string, offset: number): string {
  return `${parts.map(printable).join(':')} on ${escapePath(path)}:${offset}`;
}
