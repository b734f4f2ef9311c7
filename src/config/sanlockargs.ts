/**
 * sanlock's string syntax, for `lockagent direct` and `client` arguments, the config file's
 * `lockspaces` entries and the resource strings handed to libvirt (below the CLI, so that the
 * daemon and the libvirt integration use the same parser and printer):
 *
 *   -s LOCKSPACE   name:host_id:path[:offset]
 *   -r RESOURCE    lockspace:resource:path:offset[:lver|:SH]
 *   dump target    path[:offset[:size]]
 *
 * `\` escapes the next character (so `\:` and `\ ` can appear in a path); offsets and sizes are
 * byte counts or a number with an `M` suffix (MiB). Everything here is pure: a bad argument
 * throws a UsageError before any file is opened.
 */
import { LeaseMode } from '../lease/token';
import { NAME_ID_SIZE, SANLK_PATH_LEN } from '../ondisk/constants';
import { Geometry, listGeometries, MiB } from '../ondisk/sizes';

/** A command-line mistake: one line for the operator, nothing was read or written. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface LockspaceArg {
  /** lockspace name as stored on disk: the UTF-8 bytes as a latin1 string */
  name: string;
  hostId: number;
  path: string;
  offset: number;
}

export interface ResourceArg {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  /** `:lver` suffix (accepted for compatibility; init and read_leader ignore it) */
  lver?: number;
  /** `:SH` suffix (accepted for compatibility; init and read_leader ignore it) */
  shared?: boolean;
}

export interface DumpTarget {
  path: string;
  offset: number;
  /** 0 = no size given: scan until an area without a known magic */
  size: number;
}

/**
 * Split on unescaped `:`; `\x` stands for a literal `x`. A trailing lone backslash is refused
 * (sanlock would silently drop it).
 */
export function splitEscaped(s: string, what: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      if (i === s.length - 1) throw new UsageError(`${what} "${s}" ends with a lone backslash; use \\\\ for a backslash, \\: for a colon`);
      cur += s[++i];
    } else if (c === ':') {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

/** Escape a path for display in sanlock syntax (`:`, space and `\` get a backslash). */
export function escapePath(p: string): string {
  return p.replace(/[\\: ]/g, (c) => `\\${c}`);
}

export interface SanlockResourceFields {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode: LeaseMode;
}

/**
 * sanlock's resource string, as taken by `sanlock client acquire -r` / `command -r` and printed
 * by `sanlock client status`: LOCKSPACE:RESOURCE:PATH:OFFSET[:SH] (one disk per resource, which
 * is all libvirt ever uses).
 *
 * Escaping: sanlock_str_to_res (sanlock src/client.c) takes the character after any '\' literally
 * in every field, so we escape '\', ':' and ' ' wherever they occur, and the string always parses
 * back to the same fields. sanlock_path_export (used for its own output) escapes only ':' and ' '
 * and only in paths, passing an existing '\' through as if it already were an escape; for paths
 * and names without a backslash, and names without ':' or ' ', both give the same text.
 */
export function formatSanlockResource(r: SanlockResourceFields): string {
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw new RangeError(`bad lease offset ${r.offset}`);
  const base = `${escapePath(r.lockspace)}:${escapePath(r.resource)}:${escapePath(r.path)}:${r.offset}`;
  return r.mode === 'shared' ? `${base}:SH` : base;
}

/** Byte count, or a number with an `M` suffix meaning MiB (sanlock's only suffix). */
export function parseByteCount(s: string, what: string): number {
  const m = /^(\d+)(M?)$/.exec(s);
  if (!m) throw new UsageError(`invalid ${what} "${s}": use a byte count or a number of MiB with an M suffix (e.g. 1M)`);
  const n = Number(m[1]) * (m[2] ? MiB : 1);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} "${s}" is too large`);
  return n;
}

function parseUnsigned(s: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`invalid ${what} "${s}": expected a non-negative integer`);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > max) throw new UsageError(`${what} ${s} is too large (at most ${max})`);
  return n;
}

/**
 * Node decodes argv (and the config file) as UTF-8 and turns every byte that is not UTF-8 into
 * U+FFFD, so a latin1 name or path would reach the disk, or open(2), as other bytes than
 * sanlock uses: refused instead of silently naming another lease or file.
 */
export function refuseNonUtf8(s: string, what: string): void {
  if (s.includes('\uFFFD')) {
    throw new UsageError(`${what} contains bytes that are not UTF-8; lockagent takes names and paths in UTF-8 only: ` +
      'give a UTF-8 name, or rename the file (or link it) to a UTF-8 path');
  }
}

/**
 * A lockspace or resource name: 1..48 bytes (UTF-8), stored on disk as those bytes. Returns
 * the on-disk form (a latin1 string holding the bytes).
 */
export function parseName(kind: 'lockspace' | 'resource', name: string, arg: string): string {
  refuseNonUtf8(name, `${kind} name in "${arg}"`);
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0) throw new UsageError(`${kind} name is empty in "${arg}"`);
  if (bytes.length > NAME_ID_SIZE) {
    throw new UsageError(`${kind} name "${name}" is ${bytes.length} bytes; at most ${NAME_ID_SIZE} bytes fit on disk`);
  }
  return bytes.toString('latin1');
}

function parsePath(p: string, arg: string): string {
  if (p.length === 0) throw new UsageError(`path is empty in "${arg}"`);
  refuseNonUtf8(p, `path in "${arg}"`);
  if (Buffer.byteLength(p, 'utf8') > SANLK_PATH_LEN - 1) {
    throw new UsageError(`path in "${arg}" is longer than ${SANLK_PATH_LEN - 1} bytes`);
  }
  return p;
}

/**
 * `-s name:host_id:path[:offset]`: without an offset it is 0, as in sanlock. More fields are
 * refused: sanlock reads everything after the third ':' as the offset (`atoll("b:0")` is 0), so
 * an unescaped ':' in the path would silently name another file.
 */
export function parseLockspaceArg(arg: string): LockspaceArg {
  const parts = splitEscaped(arg, '-s');
  if (parts.length < 3) {
    throw new UsageError(`-s "${arg}" must be LOCKSPACE:HOST_ID:PATH[:OFFSET] (escape ':' in the path as '\\:')`);
  }
  if (parts.length > 4) {
    throw new UsageError(`-s "${arg}" has ${parts.length} fields; it must be LOCKSPACE:HOST_ID:PATH[:OFFSET]: escape ':' in the path as '\\:'`);
  }
  const [name, hostId, path, offset = '0'] = parts;
  return {
    name: parseName('lockspace', name, arg),
    hostId: parseUnsigned(hostId, 'host_id in -s', 0xffffffff),
    path: parsePath(path, arg),
    offset: parseByteCount(offset, 'offset in -s'),
  };
}

/**
 * The lockspace name of `-s` where only the name counts (`client rem_lockspace`, `host_status`,
 * `renewal`): `LOCKSPACE[:HOST_ID:PATH:OFFSET]`, the rest ignored. Escapes and the on-disk form
 * as for add_lockspace's `-s`, so both name the same lockspace.
 */
export function parseLockspaceName(arg: string): string {
  return parseName('lockspace', splitEscaped(arg, '-s')[0], arg);
}

/** `-r lockspace:resource:path:offset[:lver|:SH]` (one disk) */
export function parseResourceArg(arg: string): ResourceArg {
  const parts = splitEscaped(arg, '-r');
  if (parts.length < 4) {
    throw new UsageError(`-r "${arg}" must be LOCKSPACE:RESOURCE:PATH:OFFSET (escape ':' in the path as '\\:')`);
  }
  if (parts.length > 5) {
    // by-path device names contain ':' (pci-0000:00:1f.2-ata-1): an unescaped one reads as more disks
    throw new UsageError(`-r "${arg}" names ${Math.floor((parts.length - 2) / 2)} disks; lockagent supports one disk per resource (escape ':' in the path as '\\:')`);
  }
  const [ls, res, path, offset, tail] = parts;
  const out: ResourceArg = {
    lockspace: parseName('lockspace', ls, arg),
    resource: parseName('resource', res, arg),
    path: parsePath(path, arg),
    offset: parseByteCount(offset, 'offset in -r'),
  };
  if (tail !== undefined) {
    if (tail === 'SH') out.shared = true;
    else out.lver = parseUnsigned(tail, 'lver in -r');
  }
  return out;
}

/** `path[:offset[:size]]` of `direct dump`. */
export function parseDumpTarget(arg: string): DumpTarget {
  const parts = splitEscaped(arg, 'dump path');
  if (parts.length > 3) throw new UsageError(`dump target "${arg}" must be PATH[:OFFSET[:SIZE]] (escape ':' in the path as '\\:')`);
  return {
    path: parsePath(parts[0], arg),
    offset: parts.length > 1 ? parseByteCount(parts[1], 'dump offset') : 0,
    size: parts.length > 2 ? parseByteCount(parts[2], 'dump size') : 0,
  };
}

/** `-Z` */
export function parseSectorSizeOpt(s: string): 512 | 4096 {
  if (s === '512') return 512;
  if (s === '4096') return 4096;
  throw new UsageError(`invalid -Z "${s}": the sector size is 512 or 4096`);
}

/** `-A`: exactly sanlock's spellings. */
export function parseAlignOpt(s: string): number {
  const m = /^([1248])M$/.exec(s);
  if (!m) throw new UsageError(`invalid -A "${s}": the align size is 1M, 2M, 4M or 8M`);
  return Number(m[1]) * MiB;
}

/**
 * -Z and -A come together or not at all, and only as one of sanlock's five pairs. Returns
 * undefined when neither is given (the device decides).
 */
export function parseGeometryOpts(sector?: string, align?: string): Geometry | undefined {
  if (sector === undefined && align === undefined) return undefined;
  if (sector === undefined || align === undefined) {
    throw new UsageError(`-Z and -A must be given together (e.g. -Z 4096 -A 8M); got only ${sector === undefined ? '-A' : '-Z'}`);
  }
  const ss = parseSectorSizeOpt(sector);
  const as = parseAlignOpt(align);
  const g = listGeometries().find((x) => x.sectorSize === ss && x.alignSize === as);
  if (!g) {
    throw new UsageError(`invalid sector/align combination ${ss}/${align}; use one of 512/1M, 4096/1M, 4096/2M, 4096/4M, 4096/8M`);
  }
  return g;
}

/**
 * `-o`: 0 means the default 10, as in sanlock. The leader's field is 16 bits; the agent keeps a
 * lockspace's io_timeout in one byte, so `client add_lockspace` passes MAX_IO_TIMEOUT as `max`.
 */
export function parseIoTimeoutOpt(s: string, max = 0xffff): number {
  const n = parseUnsigned(s, '-o io_timeout', max);
  return n === 0 ? 10 : n;
}

/** `-p PID` of `client acquire|release|inquire`: the owner's process, 1 or more (a pid_t). */
export function parsePidOpt(s: string): number {
  const n = /^[1-9]\d*$/.test(s) ? Number(s) : NaN;
  if (!(n <= 0x7fffffff)) throw new UsageError(`invalid -p "${s}": the owner pid must be a positive integer`);
  return n;
}

/** `-n`: 0 means max_hosts, as in sanlock. The upper bound depends on the geometry. */
export function parseNumHostsOpt(s: string): number {
  return parseUnsigned(s, '-n num_hosts', 0xffffffff);
}

/** `-z 0|1` */
export function parseClearOpt(s: string): boolean {
  if (s === '0') return false;
  if (s === '1') return true;
  throw new UsageError(`invalid -z "${s}": use -z 1 to write the cleared magic, -z 0 (default) for a usable lease`);
}

/**
 * `-a 0|1`, sanlock's use-aio switch of the direct commands: checked, then ignored (lockagent
 * always does its I/O with its own engine).
 */
export function parseAioOpt(s: string): void {
  if (s !== '0' && s !== '1') throw new UsageError(`invalid -a "${s}": use -a 0 or -a 1 (sanlock's use-aio switch; lockagent accepts it and always uses its own I/O engine)`);
}

/** `-f 0|1|2` of dump */
export function parseForceModeOpt(s: string): 0 | 1 | 2 {
  if (s === '0' || s === '1' || s === '2') return Number(s) as 0 | 1 | 2;
  throw new UsageError(`invalid -f "${s}": use -f 1 (bitmaps, requests, rindex entries) or -f 2 (also dblocks)`);
}

/** Human form of a size: "1M", "8M", or bytes. */
export function sizeLabel(n: number): string {
  return n % MiB === 0 && n > 0 ? `${n / MiB}M` : `${n}`;
}
