import { Cron, CronOptions } from 'croner';
import { closeSync, constants as fsc, fstatSync, openSync, readSync } from 'fs';
import { isIP } from 'net';
import { join } from 'path';
import { geometryFor } from '../ondisk/sizes';
import { GROUP_FILE, lookupId, PASSWD_FILE } from './accounts';
import { ConfEntry, ConfSyntaxError, ConfValue, parseConfText } from './confsyntax';
import { nearest } from './nearest';
import { LockspaceArg, parseLockspaceArg } from './sanlockargs';
import { hostIdOutOfRange } from '../ondisk/constants';

/**
 * /etc/lockagent.conf: the keys of libvirt's qemu-sanlock.conf with libvirt's meaning and
 * defaults, plus the agent's own. conf/lockagent.conf documents every key.
 */
export interface AgentConfig {
  /** qemu-sanlock.conf keys */
  autoDiskLeases: boolean;
  diskLeaseDir: string;
  /** 1..2000, 0 = unset, or 'auto': the agent claims a free one (agent/hostidclaim.ts) */
  hostId: number | 'auto';
  requireLeaseForDisks: boolean;
  /** seconds; 0 in the file means sanlock's default 10 */
  ioTimeout: number;
  /** owner and group of lease files this host creates (names or numeric ids) */
  user?: string;
  group?: string;
  /** user/group resolved to ids when the config is loaded */
  userId?: number;
  groupId?: number;
  /** agent keys */
  hostName?: string;
  socketPath: string;
  socketMode: number;
  socketUser?: string;
  socketGroup?: string;
  statePath: string;
  logLevel: LogLevel;
  logFile: string;
  logStderr: boolean;
  sectorSize: 512 | 4096;
  alignSize: number;
  /**
   * Host slots (num_hosts) of the disk lease files this host creates, 1..2000, capped at the
   * geometry's max_hosts. Also what the first read of an acquire is sized for.
   */
  maxHosts: number;
  /** LOCKSPACE:HOST_ID:PATH:OFFSET entries, as written (configLockspaces: parsed) */
  lockspaces: string[];
  cleanupSchedule: string;
  cleanupMinAge: number;
  leaseFailureAction: LeaseFailureAction;
  killGraceSeconds: number;
  metricsListen: string;
  /** 1 = metrics_listen may be a non-loopback address */
  metricsAllowRemote: boolean;
  libvirtUri: string;
  /** sanlock's use_watchdog (-w): 1 = wdmd must be usable or the agent refuses to start */
  useWatchdog: boolean;
  /** fencing layer that stops owners when this agent stops renewing (docs/fencing.md) */
  fencing: 'guard' | 'wdmd' | 'none';
  /** enforce: the guard kills; log: it only logs what it would kill (calibration) */
  fencingMode: 'enforce' | 'log';
  /** file the config came from (for messages) */
  source: string;
}

export type LogLevel = 'error' | 'warning' | 'info' | 'debug';
export type LeaseFailureAction = 'kill' | 'poweroff' | 'pause';

export const DEFAULT_CONFIG_PATH = '/etc/lockagent.conf';
export const DISKS_LOCKSPACE = '__LIBVIRT__DISKS__';

export class ConfigError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'ConfigError';
  }
}

type Kind = 'bool' | 'int' | 'hostid' | 'string' | 'list' | 'mode' | 'duration' | 'size';
interface KeySpec {
  kind: Kind;
  field: keyof AgentConfig;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

const KEYS: Record<string, KeySpec> = {
  auto_disk_leases: { kind: 'bool', field: 'autoDiskLeases' },
  disk_lease_dir: { kind: 'string', field: 'diskLeaseDir' },
  host_id: { kind: 'hostid', field: 'hostId', min: 0, max: 2000 },
  require_lease_for_disks: { kind: 'bool', field: 'requireLeaseForDisks' },
  io_timeout: { kind: 'int', field: 'ioTimeout', min: 0, max: 255 },
  user: { kind: 'string', field: 'user' },
  group: { kind: 'string', field: 'group' },
  host_name: { kind: 'string', field: 'hostName' },
  socket_path: { kind: 'string', field: 'socketPath' },
  socket_mode: { kind: 'mode', field: 'socketMode' },
  socket_user: { kind: 'string', field: 'socketUser' },
  socket_group: { kind: 'string', field: 'socketGroup' },
  state_path: { kind: 'string', field: 'statePath' },
  log_level: { kind: 'string', field: 'logLevel', choices: ['error', 'warning', 'info', 'debug'] },
  log_file: { kind: 'string', field: 'logFile' },
  log_stderr: { kind: 'bool', field: 'logStderr' },
  sector_size: { kind: 'int', field: 'sectorSize', choices: ['512', '4096'] },
  align_size: { kind: 'size', field: 'alignSize', choices: ['1M', '2M', '4M', '8M'] },
  max_hosts: { kind: 'int', field: 'maxHosts', min: 1, max: 2000 },
  lockspaces: { kind: 'list', field: 'lockspaces' },
  cleanup_schedule: { kind: 'string', field: 'cleanupSchedule' },
  cleanup_min_age: { kind: 'duration', field: 'cleanupMinAge' },
  lease_failure_action: { kind: 'string', field: 'leaseFailureAction', choices: ['kill', 'poweroff', 'pause'] },
  kill_grace_seconds: { kind: 'int', field: 'killGraceSeconds', min: 0, max: 60 },
  metrics_listen: { kind: 'string', field: 'metricsListen' },
  metrics_allow_remote: { kind: 'bool', field: 'metricsAllowRemote' },
  libvirt_uri: { kind: 'string', field: 'libvirtUri' },
  use_watchdog: { kind: 'bool', field: 'useWatchdog' },
  fencing: { kind: 'string', field: 'fencing', choices: ['guard', 'wdmd', 'none'] },
  fencing_mode: { kind: 'string', field: 'fencingMode', choices: ['enforce', 'log'] },
};

/** Keys libvirt's lens still accepts but no driver reads: accepted with a warning, not an error. */
const OBSOLETE_KEYS = new Set(['ignore_readonly_and_shared_disks']);

export function configKeys(): string[] {
  return Object.keys(KEYS);
}

/** The AgentConfig field a key sets (for the test that every documented key is read). */
export function configField(key: string): keyof AgentConfig | undefined {
  return KEYS[key]?.field;
}

export function defaultConfig(): AgentConfig {
  return {
    autoDiskLeases: false,
    diskLeaseDir: '/var/lib/libvirt/sanlock',
    hostId: 0,
    requireLeaseForDisks: true,
    ioTimeout: 10,
    socketPath: '/run/lockagent/lockagent.sock',
    socketMode: 0o660,
    statePath: '/var/lib/lockagent/state.db',
    logLevel: 'info',
    logFile: '/var/log/lockagent.log',
    logStderr: true,
    sectorSize: 512,
    alignSize: 1048576,
    maxHosts: 2000,
    lockspaces: [],
    cleanupSchedule: '0 3 * * 0',
    cleanupMinAge: 3600,
    leaseFailureAction: 'kill',
    killGraceSeconds: 40,
    metricsListen: '',
    metricsAllowRemote: false,
    libvirtUri: 'qemu:///system',
    useWatchdog: false,
    fencing: 'guard',
    fencingMode: 'enforce',
    source: '(defaults)',
  };
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** "90", "90s", "15m", "1h", "7d" → seconds */
export function parseDuration(s: string): number | undefined {
  const m = /^\s*(\d+)\s*([smhdw]?)\s*$/.exec(s);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2] || 's'];
}

function describe(v: ConfValue): string {
  return Array.isArray(v) ? '[list]' : typeof v === 'string' ? `"${v}"` : String(v);
}

function convert(key: string, spec: KeySpec, e: ConfEntry, where: string): unknown {
  const bad = (allowed: string): never => {
    throw new ConfigError(`${where}: ${key} = ${describe(e.value)} is not valid; allowed: ${allowed}`);
  };
  const v = e.value;
  switch (spec.kind) {
    case 'bool':
      if (v === 0 || v === 1) return v === 1;
      return bad('0 or 1');
    case 'int': {
      if (typeof v !== 'number') return bad(spec.choices ? spec.choices.join(' or ') : `a number from ${spec.min} to ${spec.max}`);
      if (spec.choices && !spec.choices.includes(String(v))) return bad(spec.choices.join(' or '));
      if ((spec.min !== undefined && v < spec.min) || (spec.max !== undefined && v > spec.max)) return bad(`a number from ${spec.min} to ${spec.max}`);
      return v;
    }
    case 'hostid':
      if (v === 'auto') return v;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < spec.min! || v > spec.max!) return bad(`a number from 1 to ${spec.max}, or "auto"`);
      return v;
    case 'string':
      if (typeof v !== 'string') return bad(spec.choices ? spec.choices.map((c) => `"${c}"`).join(', ') : 'a "quoted string"');
      if (spec.choices && !spec.choices.includes(v)) return bad(spec.choices.map((c) => `"${c}"`).join(', '));
      return v;
    case 'list':
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) return bad('a list of quoted strings, e.g. [ "LS:1:/path:0" ]');
      return v as string[];
    case 'mode': {
      const s = typeof v === 'number' ? String(v) : v;
      if (typeof s !== 'string' || !/^0?[0-7]{3}$/.test(s)) return bad('an octal mode such as "0660"');
      return parseInt(s as string, 8);
    }
    case 'duration': {
      const d = typeof v === 'number' ? v : typeof v === 'string' ? parseDuration(v) : undefined;
      if (d === undefined || d < 0) return bad('a duration such as "3600", "90m", "1h" or "7d"');
      return d;
    }
    case 'size': {
      const s = typeof v === 'number' ? String(v) : v;
      const m = typeof s === 'string' ? /^([1248])M$/i.exec(s) : null;
      if (!m) return bad('"1M", "2M", "4M" or "8M"');
      return Number(m[1]) * 1048576;
    }
  }
}

export interface LoadResult {
  config: AgentConfig;
  warnings: string[];
}

/**
 * How strictly a config is read. 'check' (`lockagent config check`, the package's upgrade step)
 * refuses everything this version would not accept in a new file. 'run' (the daemon, the hook,
 * the CLI) accepts, with a warning, what earlier versions accepted: a daemon restarted by systemd
 * (Restart=always) after an upgrade must come back, or the fencing guard stops the running
 * domains; a hook that cannot read the config refuses every start.
 */
export type ConfigMode = 'check' | 'run';

/** Parse and validate config text. Throws ConfigError naming file, line, key and what is allowed. */
export function parseConfig(text: string, source = DEFAULT_CONFIG_PATH, mode: ConfigMode = 'check'): LoadResult {
  const cfg = defaultConfig();
  cfg.source = source;
  const warnings: string[] = [];
  /** Refused by config check; accepted at run time as earlier versions did, with a warning saying what is done (`atRun`). */
  const legacy = (msg: string, atRun = ''): void => {
    if (mode === 'check') throw new ConfigError(msg);
    warnings.push(`${msg}${atRun} (accepted, as earlier versions did; lockagent config check refuses it)`);
  };
  let entries: ConfEntry[];
  try {
    entries = parseConfText(text, source);
  } catch (e) {
    if (e instanceof ConfSyntaxError) throw new ConfigError(e.message);
    throw e;
  }
  /** the line each key was set on, for the checks after the loop */
  const lines = new Map<string, number>();
  const at = (key: string) => (lines.has(key) ? `${source}:${lines.get(key)}` : source);
  let requireGiven = false;
  let fencingGiven = false;
  for (const e of entries) {
    const where = `${source}:${e.line}`;
    const spec = KEYS[e.key];
    if (!spec) {
      if (OBSOLETE_KEYS.has(e.key)) {
        warnings.push(`${where}: ${e.key} is obsolete (libvirt no longer reads it) and is ignored`);
        continue;
      }
      const near = nearest(e.key, Object.keys(KEYS));
      throw new ConfigError(`${where}: unknown key "${e.key}"${near ? `; did you mean "${near}"?` : ''}`);
    }
    // libvirt's qemu-sanlock.conf reader takes the first value, a last-wins reader the last:
    // which one was meant is the operator's to say.
    const first = lines.get(e.key);
    if (first !== undefined) legacy(`${where}: ${e.key} is set more than once (first at line ${first}); keep one`, ': the last value is used');
    lines.set(e.key, e.line);
    if (e.key === 'lease_failure_action' && e.value === 'ignore') {
      legacy(`${where}: lease_failure_action = "ignore" is not supported: a domain left running once its leases are lost could write ` +
        'a disk another host has leased since (libvirt\'s sanlock driver refuses on_lockfailure ignore too); use "kill", "poweroff" or "pause"',
        '; "kill" is used');
      cfg.leaseFailureAction = 'kill';
      continue;
    }
    if (e.key === 'require_lease_for_disks') requireGiven = true;
    if (e.key === 'fencing') fencingGiven = true;
    (cfg as unknown as Record<string, unknown>)[spec.field] = convert(e.key, spec, e, where);
  }
  // libvirt: require_lease_for_disks defaults to the inverse of auto_disk_leases.
  if (!requireGiven) cfg.requireLeaseForDisks = !cfg.autoDiskLeases;
  // sanlock's -w 1 means the watchdog fences: fencing defaults to wdmd then.
  if (!fencingGiven && cfg.useWatchdog) cfg.fencing = 'wdmd';
  if (cfg.ioTimeout === 0) cfg.ioTimeout = 10;
  if (cfg.sectorSize === 512 && cfg.alignSize !== 1048576) {
    throw new ConfigError(`${at('align_size')}: sector_size = 512 only allows align_size = "1M" (sanlock's valid pairs: 512/1M, 4096/1M, 4096/2M, 4096/4M, 4096/8M)`);
  }
  validateHostSlots(cfg, at, legacy);
  validateSafety(cfg, at, legacy);
  validateLockspaces(cfg, at('lockspaces'), legacy);
  try {
    cleanupCron(cfg.cleanupSchedule)?.stop();
  } catch (e) {
    legacy(`${at('cleanup_schedule')}: cleanup_schedule = "${cfg.cleanupSchedule}" is not a cron expression (${(e as Error).message}); ` +
      'give 5 fields (minute hour day month weekday, e.g. "0 3 * * 0"), or 6 with seconds first; "off" or "" turns the sweeper off',
      '; no sweep is scheduled');
  }
  resolveOwner(cfg, at);
  return { config: cfg, warnings };
}

/**
 * cleanup_schedule as a croner job running `run` (paused when `run` is not given: a check),
 * or undefined when it is off. Throws on an expression croner refuses. 5 fields, or 6 with
 * seconds: croner alone would also take a year field or a date (a single run).
 */
export function cleanupCron(schedule: string, run?: () => void | Promise<void>, opts: CronOptions = {}): Cron | undefined {
  if (cleanupScheduleOff(schedule)) return undefined;
  const s = schedule.trim();
  return run ? new Cron(s, { ...opts, mode: '5-or-6-parts' }, () => run()) : new Cron(s, { paused: true, mode: '5-or-6-parts' });
}

/** cleanup_schedule "" or "off": no scheduled sweeps. */
export function cleanupScheduleOff(schedule: string): boolean {
  const s = schedule.trim();
  return !s || s.toLowerCase() === 'off';
}

/** The lockspaces entries, parsed (parseConfig has checked them). */
export function configLockspaces(cfg: Pick<AgentConfig, 'lockspaces'>): LockspaceArg[] {
  return cfg.lockspaces.map((s) => parseLockspaceArg(s));
}

/**
 * Each lockspaces entry is a lockspace the daemon joins at start: refused here, with the line,
 * rather than by the daemon once it has begun joining the others.
 */
function validateLockspaces(cfg: AgentConfig, where: string, legacy: (msg: string, atRun?: string) => void): void {
  // Each lockspace once: the same one twice was a no-op at start (a warning at run time), two
  // different ones under one name stop the start (EEXIST) and are refused in both modes.
  const joined = new Map<string, { hostId: number | 'auto'; path: string; offset: number; by: string }>();
  if (cfg.autoDiskLeases) joined.set(DISKS_LOCKSPACE, { hostId: cfg.hostId, path: join(cfg.diskLeaseDir, DISKS_LOCKSPACE), offset: 0, by: 'auto_disk_leases = 1 (which joins it from disk_lease_dir)' });
  for (const s of cfg.lockspaces) {
    let ls: LockspaceArg;
    try {
      ls = parseLockspaceArg(s);
    } catch (e) {
      throw new ConfigError(`${where}: lockspaces entry "${s}": ${(e as Error).message}`);
    }
    const outOfRange = hostIdOutOfRange(ls.hostId);
    if (outOfRange) throw new ConfigError(`${where}: lockspaces entry "${s}": ${outOfRange}; give this host's host_id in that lockspace`);
    const first = joined.get(ls.name);
    if (first) {
      const msg = `${where}: lockspaces entry "${s}": lockspace ${ls.name} is also joined by ${first.by}`;
      if (first.hostId === ls.hostId && first.path === ls.path && first.offset === ls.offset) legacy(`${msg}; keep one`);
      else throw new ConfigError(`${msg}, with another host_id, path or offset; keep one`);
    }
    joined.set(ls.name, { ...ls, by: 'another lockspaces entry' });
  }
}

/** Host slots of the lease files this host creates: max_hosts, capped by the geometry (4096-byte sectors in 1 MiB: 250). */
export function hostSlots(cfg: Pick<AgentConfig, 'maxHosts' | 'sectorSize' | 'alignSize'>): number {
  return Math.min(cfg.maxHosts, geometryFor(cfg.sectorSize, cfg.alignSize).maxHosts);
}

/**
 * A host whose host_id is above the num_hosts of the lease files it creates could not acquire
 * them (sanlock and lockagent both refuse with -228): refuse the config instead.
 */
function validateHostSlots(cfg: AgentConfig, at: (key: string) => string, legacy: (msg: string, atRun?: string) => void): void {
  const g = geometryFor(cfg.sectorSize, cfg.alignSize);
  const slots = hostSlots(cfg);
  if (typeof cfg.hostId === 'number' && cfg.hostId > slots) {
    const why = slots < cfg.maxHosts
      ? `sector_size = ${cfg.sectorSize} with align_size = ${cfg.alignSize / 1048576}M holds ${g.maxHosts} host slots`
      : `max_hosts = ${cfg.maxHosts}`;
    const remedy = slots < cfg.maxHosts ? 'use a larger align_size or a host_id' : 'raise max_hosts or use a host_id';
    const msg = `${at('host_id')}: host_id = ${cfg.hostId} is above ${why}: lease files this host creates would have ` +
      `${slots} host slots and refuse host_id ${cfg.hostId} (-228); ${remedy} from 1 to ${slots}`;
    // Above max_hosts was always refused; above the geometry's slots only since this check.
    if (slots < cfg.maxHosts && cfg.hostId <= cfg.maxHosts) legacy(msg);
    else throw new ConfigError(msg);
  }
}

/** user/group → ids once, at load: an unknown name is a config error, not a failed create later. */
function resolveOwner(cfg: AgentConfig, at: (key: string) => string): void {
  const resolve = (key: string, name: string | undefined, file: string): number | undefined => {
    if (name === undefined || name === '') return undefined;
    const id = lookupId(file, name)?.id;
    if (id === undefined) {
      const what = key.replace(/^socket_/, '');
      throw new ConfigError(`${at(key)}: ${key} = "${name}": no such ${what} in ${file}; create it, give a numeric id, or remove the key`);
    }
    return id;
  };
  cfg.userId = resolve('user', cfg.user, PASSWD_FILE);
  cfg.groupId = resolve('group', cfg.group, GROUP_FILE);
  // socket_user/socket_group are looked up again when the socket is made (peerpolicy.ts): here
  // so that config check refuses a name that does not exist.
  resolve('socket_user', cfg.socketUser, PASSWD_FILE);
  resolve('socket_group', cfg.socketGroup, GROUP_FILE);
}

/**
 * metrics_listen as an address the metrics may be served on: a loopback address unless
 * metrics_allow_remote = 1 (config check and the listener both apply it).
 */
export function metricsAddress(listen: string, allowRemote: boolean): ListenAddress {
  let a: ListenAddress;
  try {
    a = parseListenAddress(listen);
  } catch (e) {
    throw new Error(`metrics_listen = ${(e as Error).message}, or "" to turn metrics off`);
  }
  if (!a.loopback && !allowRemote) {
    throw new Error(`metrics_listen = "${listen}" is not a loopback address: the metrics describe the lockspaces, hosts and ` +
      'leases of this host; listen on 127.0.0.1 (and scrape through a proxy), or set metrics_allow_remote = 1 to serve them on the network');
  }
  return a;
}

export interface ListenAddress {
  host: string;
  port: number;
  loopback: boolean;
}

/**
 * metrics_listen: "HOST:PORT", "[IPv6]:PORT", or "PORT" alone (= 127.0.0.1:PORT). Throws a
 * ConfigError-ready message for anything else.
 */
export function parseListenAddress(s: string): ListenAddress {
  const t = s.trim();
  const m = /^\d{1,5}$/.test(t) ? ['', '127.0.0.1', '', t] : /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(t);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) throw new Error(`"${s}" is not HOST:PORT (e.g. "127.0.0.1:9478", "[::1]:9478")`);
  const host = m[1] ?? m[2] ?? '';
  if (host === '' || (isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host))) throw new Error(`"${s}": give a host address before the port (e.g. "127.0.0.1:9478")`);
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  return { host, port, loopback };
}

function validateSafety(cfg: AgentConfig, at: (key: string) => string, legacy: (msg: string, atRun?: string) => void): void {
  if (cfg.autoDiskLeases && cfg.hostId === 0) {
    throw new ConfigError(
      `${at('auto_disk_leases')}: Automatic disk lease mode enabled, but no host ID is set: ` +
        'set host_id to a number from 1 to 2000 that no other host sharing disk_lease_dir uses, or to "auto"',
    );
  }
  if (!cfg.diskLeaseDir.startsWith('/')) {
    throw new ConfigError(`${at('disk_lease_dir')}: disk_lease_dir = "${cfg.diskLeaseDir}" must be an absolute path (the shared mount every host uses)`);
  }
  // The daemon runs from / and the hook from libvirtd's directory: a relative path would name
  // different files for each.
  for (const [key, v] of [['socket_path', cfg.socketPath], ['state_path', cfg.statePath], ['log_file', cfg.logFile]] as const) {
    if (v !== '' && !v.startsWith('/')) legacy(`${at(key)}: ${key} = "${v}" must be an absolute path${key === 'log_file' ? ' (or "" for no log file)' : ''}`);
    if (v === '' && key !== 'log_file') throw new ConfigError(`${at(key)}: ${key} must not be empty; give an absolute path`);
  }
  if (cfg.metricsListen) {
    try {
      metricsAddress(cfg.metricsListen, cfg.metricsAllowRemote);
    } catch (e) {
      throw new ConfigError(`${at('metrics_listen')}: ${(e as Error).message}`);
    }
  }
  if (cfg.hostName !== undefined && (cfg.hostName.length === 0 || Buffer.byteLength(cfg.hostName) > 47)) {
    throw new ConfigError(`${at('host_name')}: host_name must be 1 to 47 bytes (sanlock stores at most 47 characters of it)`);
  }
}

/** A config file is a few KiB; anything near this is not one (and would cost memory to parse). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * The file's text, refusing what is not a config file: a FIFO or a device (/dev/zero) would hang
 * or never end, a huge file would be read whole. O_NONBLOCK: opening a FIFO does not wait for a
 * writer; fstat of the opened fd, so the file checked is the file read.
 */
function readConfigText(path: string): string {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const what = st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isBlockDevice() ? 'a block device'
        : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new ConfigError(`config file ${path} is ${what}, not a regular file: pass the path of the config file itself`);
    }
    const tooBig = () => new ConfigError(`config file ${path} is larger than ${MAX_CONFIG_BYTES / 1024} KiB: that is not a lockagent config file`);
    if (st.size > MAX_CONFIG_BYTES) throw tooBig();
    // Read at most one byte past the limit: the file may grow while we read it.
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let len = 0;
    for (;;) {
      const n = readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
      if (len > MAX_CONFIG_BYTES) throw tooBig();
    }
    return buf.toString('utf8', 0, len);
  } finally {
    closeSync(fd);
  }
}

export function loadConfig(path = DEFAULT_CONFIG_PATH, opts: { allowMissing?: boolean; mode?: ConfigMode } = {}): LoadResult {
  let text: string;
  try {
    text = readConfigText(path);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT' && opts.allowMissing) return { config: { ...defaultConfig(), source: `${path} (missing; defaults)` }, warnings: [`${path} does not exist; using defaults`] };
    if (err.code === 'ENOENT') throw new ConfigError(`config file ${path} does not exist: copy conf/lockagent.conf there or pass -c PATH`);
    if (err.code === 'EACCES') throw new ConfigError(`cannot read config file ${path}: permission denied (run as root or fix its mode)`);
    throw new ConfigError(`cannot read config file ${path}: ${err.message}`);
  }
  return parseConfig(text, path, opts.mode ?? 'run');
}
