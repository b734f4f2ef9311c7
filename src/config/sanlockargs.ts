/**
 * sanlock's string syntax, for `lockagent direct` and `client` arguments, the config file's
 * `lockspaces` entries and the resource strings handed to libvirt (below the CLI, so that the
 * daemon and the libvirt integration use the same parser and printer):
 *
 *   -s LOCKSPACE   name:host_id:path[:offset]
 *   -r RESOURCE    lockspace:resource:path:offset[:lver|:SH]
 *   dump target    path[:offset[:size]]
 *
 * A ':' after a '\' does not split. What the backslash then stands for is sanlock's rule for
 * each string (sanlock 3.8.5 src/client.c, src/direct.c):
 *
 *   -r (sanlock_str_to_res): in every field `\x` is `x`, so `\:`, `\ ` and `\\` give a colon,
 *      a space and a backslash;
 *   -s (sanlock_str_to_lockspace) and the dump target (direct_dump): the lockspace name is kept
 *      as written, backslashes and all (`-s 'my\:ls:1:/p:0'` is the 6-byte name my\:ls), and a
 *      path loses every backslash (sanlock_path_import), so `\:` and `\ ` give a colon and a
 *      space there too. A path holding `\\` is refused: sanlock would drop both backslashes
 *      and open another file.
 *
 * Offsets and sizes are decimal byte counts or a number with an `M` suffix (MiB); every number
 * goes through parseUnsigned. Everything here is pure: a bad argument throws a UsageError before
 * any file is opened.
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
 * Split on the ':' that no '\' escapes (sanlock's scan: a '\' takes the next character with
 * it), keeping each field as written, backslashes included. A trailing lone backslash is refused
 * (sanlock would silently drop it).
 */
function splitFields(s: string, what: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      if (i === s.length - 1) throw new UsageError(`${what} "${s}" ends with a lone backslash; use \\: for a colon`);
      cur += c + s[++i];
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

/** Split as sanlock_str_to_res does: on unescaped `:`, and in every field `\x` stands for `x`. */
export function splitEscaped(s: string, what: string): string[] {
  return splitFields(s, what).map((f) => f.replace(/\\(.)/gs, '$1'));
}

/**
 * A path of `-s` or of the dump target as sanlock_path_import reads it: every backslash is
 * dropped. `\\` is refused rather than read as nothing, since a path holding a backslash cannot
 * be named there at all (sanlock would open another file).
 */
function importPath(raw: string, what: string, arg: string): string {
  if (raw.includes('\\\\')) {
    throw new UsageError(`the path in ${what} "${arg}" holds "\\\\": sanlock drops every backslash of a ${what} path, so it would open another file; ` +
      'a path with a backslash cannot be given here (\\: and \\ stand for a colon and a space)');
  }
  return raw.replace(/\\/g, '');
}

/**
 * Escape a path for display in lockagent's messages, so that it can be pasted back into `-r`
 * (`:`, space and `\` get a backslash). sanlock's own output escapes paths otherwise:
 * exportPath.
 */
export function escapePath(p: string): string {
  return p.replace(/[\\: ]/g, (c) => `\\${c}`);
}

/**
 * A path as sanlock_path_export prints it (sanlock's `client status`, `inquire`): a ':' or a
 * space gets a backslash, a backslash is passed through with the character after it (as if it
 * already escaped that one), everything else is copied.
 */
export function exportPath(p: string): string {
  return p.replace(/\\[^]?|[: ]/g, (m) => (m[0] === '\\' ? m : `\\${m}`));
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
 * and names without a backslash, and names without ':' or ' ', both give the same text. What
 * sanlock prints, byte for byte, is formatSanlockHeld's.
 */
export function formatSanlockResource(r: SanlockResourceFields): string {
  if (!Number.isSafeInteger(r.offset) || r.offset < 0) throw new RangeError(`bad lease offset ${r.offset}`);
  const base = `${escapePath(r.lockspace)}:${escapePath(r.resource)}:${escapePath(r.path)}:${r.offset}`;
  return r.mode === 'shared' ? `${base}:SH` : base;
}

/** A held lease as sanlock_res_to_str prints it: its fields, and its lver (exclusive, the default) or SH. */
export interface HeldResourceFields extends Omit<SanlockResourceFields, 'mode'> {
  mode?: LeaseMode;
  lver: number;
}

/**
 * A held lease as sanlock prints one (sanlock_res_to_str in src/client.c: the `r` lines of
 * `client status`, the state string of `client inquire`): LOCKSPACE:RESOURCE:PATH:OFFSET:LVER,
 * or :SH for a shared one. The names go out as they are, with no escape (they are the on-disk
 * bytes, a latin1 string here); the path as exportPath prints it, as its UTF-8 bytes (a latin1
 * string, for an output that writes latin1). Unlike formatSanlockResource, this is sanlock's
 * output, not a string meant to be parsed back: a ':' in a name reads as a separator.
 */
export function formatSanlockHeld(l: HeldResourceFields): string {
  const path = Buffer.from(exportPath(l.path), 'utf8').toString('latin1');
  return `${l.lockspace}:${l.resource}:${path}:${l.offset}:${l.mode === 'shared' ? 'SH' : l.lver}`;
}

/** Byte count, or a number with an `M` suffix meaning MiB (sanlock's only suffix). */
export function parseByteCount(s: string, what: string): number {
  const n = parseUnsigned(s.endsWith('M') ? s.slice(0, -1) : s, what, { expected: 'use a byte count or a number of MiB with an M suffix (e.g. 1M)', shown: s });
  const bytes = s.endsWith('M') ? n * MiB : n;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what} "${s}" is too large`);
  return bytes;
}

/** How parseUnsigned reads a number, and what it takes. */
export interface UnsignedRule {
  /** smallest value taken (default 0) */
  min?: number;
  /** largest value taken (default and at most Number.MAX_SAFE_INTEGER) */
  max?: number;
  /**
   * Read as a C literal, as strtoull(s, NULL, 0) does: `0x1f` is 31 and `017` is 15 (octal).
   * Otherwise decimal, as atoi, atoll, strtoul(s, NULL, 10) and sscanf's %llu read it: `017` is 17.
   */
  cLiteral?: boolean;
  /** what the refusal of a malformed or too small value says is expected */
  expected?: string;
  /** the argument as the operator wrote it, for the messages (default: s) */
  shown?: string;
}

/**
 * The one reader of the unsigned numbers in sanlock's arguments. The number is read as sanlock
 * reads it (decimal, or with `cLiteral` a C literal), but all of it: what sanlock's atoi, atoll
 * or strtoull would read only in part, or bend (`12x`, ` 1`, `+1`, `-1`, `08` as a C literal,
 * an empty string), is refused.
 */
export function parseUnsigned(s: string, what: string, rule: UnsignedRule = {}): number {
  const { min = 0, max = Number.MAX_SAFE_INTEGER, cLiteral = false, shown = s } = rule;
  const form = cLiteral ? /^(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/ : /^[0-9]+$/;
  const expected = rule.expected ?? `expected ${min > 0 ? `an integer of ${min} or more` : 'a non-negative integer'}` +
    `${cLiteral ? ' (decimal, hex as 0x1f or octal as 017: sanlock reads it as a C literal)' : ''}`;
  if (!form.test(s)) throw new UsageError(`invalid ${what} "${shown}": ${expected}`);
  const v = cLiteral && /^0[0-7]/.test(s) ? BigInt(`0o${s.slice(1)}`) : BigInt(s);
  if (v > BigInt(Math.min(max, Number.MAX_SAFE_INTEGER))) throw new UsageError(`${what} ${shown} is too large (at most ${max})`);
  const n = Number(v);
  if (n < min) throw new UsageError(`invalid ${what} "${shown}": ${expected}`);
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
 * `-s name:host_id:path[:offset]`, read as sanlock_str_to_lockspace reads it: the name as
 * written (a '\' stays in it), the path without its backslashes (importPath); without an offset
 * it is 0. More fields are refused: sanlock reads everything after the third ':' as the offset
 * (`atoll("b:0")` is 0), so an unescaped ':' in the path would silently name another file.
 * (sanlock's own `M` suffix code splits at every ':', escaped or not, so sanlock misreads an
 * escaped ':' before an offset such as `1M`; lockagent reads what was written.)
 */
export function parseLockspaceArg(arg: string): LockspaceArg {
  const parts = splitFields(arg, '-s');
  if (parts.length < 3) {
    throw new UsageError(`-s "${arg}" must be LOCKSPACE:HOST_ID:PATH[:OFFSET] (escape ':' in the path as '\\:')`);
  }
  if (parts.length > 4) {
    throw new UsageError(`-s "${arg}" has ${parts.length} fields; it must be LOCKSPACE:HOST_ID:PATH[:OFFSET]: escape ':' in the path as '\\:'`);
  }
  const [name, hostId, path, offset = '0'] = parts;
  return {
    name: parseName('lockspace', name, arg),
    hostId: parseUnsigned(hostId, 'host_id in -s', { max: 0xffffffff }),
    path: parsePath(importPath(path, '-s', arg), arg),
    offset: parseByteCount(offset, 'offset in -s'),
  };
}

/**
 * The lockspace name of `-s` where only the name counts (`client rem_lockspace`, `host_status`,
 * `renewal`): `LOCKSPACE[:HOST_ID:PATH:OFFSET]`, the rest ignored. The name is read as
 * add_lockspace's `-s` reads it (as written, a '\' kept), so both name the same lockspace.
 */
export function parseLockspaceName(arg: string): string {
  return parseName('lockspace', splitFields(arg, '-s')[0], arg);
}

/**
 * `-r lockspace:resource:path:offset[:lver|:SH]` (one disk), read as sanlock_str_to_res reads it:
 * `\x` is `x` in every field; the offset is decimal (sscanf's %llu, or `M` MiB), the lver a C
 * literal (strtoull base 0: `0x1f` is 31, `017` is 15).
 */
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
    else out.lver = parseUnsigned(tail, 'lver in -r', { cLiteral: true });
  }
  return out;
}

/** `path[:offset[:size]]` of `direct dump`; the path read as sanlock's direct_dump reads it (importPath). */
export function parseDumpTarget(arg: string): DumpTarget {
  const parts = splitFields(arg, 'dump path');
  if (parts.length > 3) throw new UsageError(`dump target "${arg}" must be PATH[:OFFSET[:SIZE]] (escape ':' in the path as '\\:')`);
  return {
    path: parsePath(importPath(parts[0], 'dump', arg), arg),
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
  const n = parseUnsigned(s, '-o io_timeout', { max });
  return n === 0 ? 10 : n;
}

/**
 * `-p PID` of `client acquire|release|inquire`: the owner's process, 1 or more (a pid_t).
 * Decimal, leading zeros allowed, as sanlock's atoi reads it (`-p 01` is pid 1).
 */
export function parsePidOpt(s: string): number {
  return parseUnsigned(s, '-p', { min: 1, max: 0x7fffffff, expected: 'the owner pid must be a positive integer' });
}

/** `-n`: 0 means max_hosts, as in sanlock. The upper bound depends on the geometry. */
export function parseNumHostsOpt(s: string): number {
  return parseUnsigned(s, '-n num_hosts', { max: 0xffffffff });
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
