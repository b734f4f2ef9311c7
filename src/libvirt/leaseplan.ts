import { createHash } from 'crypto';
import { LeaseMode } from '../agent/types';
import { DISKS_LOCKSPACE } from '../config/config';
import { Refusal, SANLK } from '../ondisk/results';
import type { DiskInfo, DomainInfo, OnLockFailure } from './domainxml';
import { formatSanlockResource } from '../config/sanlockargs';
import { shortText as q } from './xmlguard';

/**
 * Which sanlock leases a domain needs, by the rules of libvirt's sanlock lock driver
 * (src/locking/domain_lock.c decides which disks and leases are handed over,
 * src/locking/lock_driver_sanlock.c turns them into sanlock resources). A libvirt host and a
 * lockagent host that plan the same domain get byte-identical lockspace, resource, path and offset,
 * so each refuses what the other holds. docs/lease-plan.md has the rules with their sources.
 */

/** The automatic disk-lease lockspace (libvirt's VIR_LOCK_MANAGER_SANLOCK_AUTO_DISK_LOCKSPACE). */
export const AUTO_DISK_LOCKSPACE = DISKS_LOCKSPACE;
/** libvirt's default disk_lease_dir (LOCALSTATEDIR "/lib/libvirt/sanlock"). */
export const DEFAULT_DISK_LEASE_DIR = '/var/lib/libvirt/sanlock';
/** Longest lockspace or resource name libvirt passes to sanlock: SANLK_NAME_LEN (48) with its NUL. */
export const MAX_NAME_BYTES = 47;
/** Longest lease path libvirt passes to sanlock: SANLK_PATH_LEN (1024) with its NUL. */
export const MAX_PATH_BYTES = 1023;
/** SANLK_MAX_RESOURCES: libvirt's sanlock driver refuses a 9th resource. lockagent does not. */
export const LIBVIRT_MAX_RESOURCES = 8;
/** libvirt's error when require_lease_for_disks refuses a domain (lock_driver_sanlock.c). */
export const LEASE_REQUIRED_MESSAGE = 'Read/write, exclusive access, disks were present, but no leases specified';

/**
 * How a `<disk type='volume'>` resolves through its storage pool. A string is a local path (file,
 * block or dir); an object can also say the volume is a network one (rbd, gluster), which
 * libvirt does not lock. undefined: unknown pool or volume. Never asked for mode='direct'.
 */
export type VolumeResolution =
  | string
  | { type: 'file' | 'block' | 'dir'; path: string }
  | { type: 'network' }
  | undefined;

export type VolumeResolver = (pool: string, volume: string, mode?: 'host' | 'direct') => VolumeResolution;

/** The qemu-sanlock.conf keys that shape a plan (an AgentConfig satisfies this). */
export interface PlanConfig {
  /** auto_disk_leases */
  autoDiskLeases: boolean;
  /** disk_lease_dir; default /var/lib/libvirt/sanlock */
  diskLeaseDir?: string;
  /** require_lease_for_disks; libvirt's default is !autoDiskLeases */
  requireLeaseForDisks?: boolean;
  /** needed only for `<disk type='volume'>` that must be locked */
  resolveVolume?: VolumeResolver;
}

export interface LeaseEntry {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode: LeaseMode;
  origin: 'disk' | 'lease';
  /** for origin 'disk': the path that was hashed, and the disk's target; pool/volume for volumes */
  disk?: { source: string; target: string; pool?: string; volume?: string };
}

export type SkipReason =
  | 'no-source' // empty cdrom/floppy/lun
  | 'readonly' // <readonly/> or any cdrom
  | 'network' // type='network'
  | 'volume-network' // type='volume' resolving to a network volume
  | 'not-lockable' // nvme, vhostuser, vhostvdpa
  | 'auto-leases-off'; // lockable, but auto_disk_leases = 0

export interface SkippedDisk {
  index: number;
  target: string;
  reason: SkipReason;
}

export interface LeasePlan {
  domain: { name: string; uuid: string };
  /** `<lease>` elements first, then disks, each in XML order (libvirt's order), deduplicated */
  entries: LeaseEntry[];
  /** the lockspaces the entries use, in first-use order */
  lockspaces: string[];
  /** where the automatic lockspace lives, when auto_disk_leases is on and an entry uses it */
  autoLockspace?: { name: string; path: string; offset: 0 };
  skipped: SkippedDisk[];
  /** more entries than libvirt's sanlock driver accepts: a libvirt host could not start this domain */
  exceedsLibvirtLimit: boolean;
  onLockFailure?: OnLockFailure;
  /** one line per decision worth logging (merged duplicates, unlocked disks, libvirt limit) */
  notes: string[];
}

export type LeasePlanErrorCode =
  | 'LEASE_REQUIRED'
  | 'VOLUME_UNRESOLVED'
  | 'BAD_LEASE'
  | 'NAME_TOO_LONG'
  | 'PATH_TOO_LONG'
  | 'CONFLICT'
  /** <on_lockfailure>ignore</on_lockfailure>: refused at start (DomainManager.startPlan) */
  | 'UNSUPPORTED_ACTION';

export class LeasePlanError extends Refusal {
  constructor(readonly code: LeasePlanErrorCode, message: string) {
    super(SANLK.EINVAL, message);
    this.name = 'LeasePlanError';
  }
}

/** libvirt's disk lease name: MD5 of the path's bytes (UTF-8, no NUL), 32 lower-case hex digits. */
export function md5hex(path: string): string {
  return createHash('md5').update(path, 'utf8').digest('hex');
}

/** The entry as a sanlock resource string, LS:RES:PATH:OFF[:SH]. */
export function toSanlockResource(e: Pick<LeaseEntry, 'lockspace' | 'resource' | 'path' | 'offset' | 'mode'>): string {
  return formatSanlockResource(e);
}

const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function checkName(what: string, name: string, who: string): void {
  if (bytes(name) > MAX_NAME_BYTES) {
    throw new LeasePlanError('NAME_TOO_LONG', `${who}: ${what} '${q(name)}' is ${bytes(name)} bytes; libvirt's sanlock driver allows at most ${MAX_NAME_BYTES}`);
  }
}

function checkPath(path: string, who: string): void {
  if (bytes(path) > MAX_PATH_BYTES) {
    throw new LeasePlanError('PATH_TOO_LONG', `${who}: lease path is ${bytes(path)} bytes; libvirt's sanlock driver allows at most ${MAX_PATH_BYTES}`);
  }
}

const diskWho = (d: DiskInfo) => `disk ${q(d.target)} (<disk> #${d.index})`;

/** The path libvirt would lock for a disk, or why it locks nothing. */
type Lockable = { path: string; pool?: string; volume?: string } | { skip: SkipReason };

function lockablePath(d: DiskInfo, needPath: boolean, conf: PlanConfig): Lockable {
  const s = d.source;
  if (!s) return { skip: 'no-source' };
  switch (s.type) {
    case 'file':
    case 'block':
    case 'dir':
      return { path: s.path };
    case 'network':
      return { skip: 'network' };
    case 'nvme':
    case 'vhostuser':
    case 'vhostvdpa':
      return { skip: 'not-lockable' };
    case 'volume': {
      // mode='direct' is valid only for an iSCSI pool, whose volume libvirt then hands QEMU as a
      // network disk (any other pool fails the start): never locked, so nothing to look up.
      if (s.mode === 'direct') return { skip: 'volume-network' };
      // A read-only volume is a no-op whatever it resolves to, and a volume whose lock would
      // be ignored need not be resolved at all.
      if (d.readonly) return { skip: 'readonly' };
      if (!needPath) return { skip: 'auto-leases-off' };
      const where = `${diskWho(d)}: volume '${q(s.volume)}' in pool '${q(s.pool)}'`;
      if (!conf.resolveVolume) {
        // The hook's case: it must not call back into libvirt, which is waiting for it.
        throw new LeasePlanError('VOLUME_UNRESOLVED', `${where} needs a lease, and the hook cannot resolve a storage pool (it must not call libvirt); ` +
          'use the lock-driver plugin (lock_manager = "lockagent"), to which libvirt hands the volume\'s path');
      }
      const r = conf.resolveVolume(s.pool, s.volume, s.mode);
      if (r === undefined) throw new LeasePlanError('VOLUME_UNRESOLVED', `${where} could not be resolved to a path`);
      if (typeof r === 'string') {
        if (r === '') throw new LeasePlanError('VOLUME_UNRESOLVED', `${where} resolved to an empty path`);
        return { path: r, pool: s.pool, volume: s.volume };
      }
      if (r.type === 'network') return { skip: 'volume-network' };
      if (!r.path) throw new LeasePlanError('VOLUME_UNRESOLVED', `${where} resolved to a ${r.type} volume with no path`);
      return { path: r.path, pool: s.pool, volume: s.volume };
    }
  }
}

const SKIP_TEXT: Record<SkipReason, string> = {
  'no-source': 'no medium',
  readonly: 'read-only',
  network: 'network disk',
  'volume-network': 'network volume',
  'not-lockable': 'not a file, block or dir disk',
  'auto-leases-off': 'auto_disk_leases is off',
};

/**
 * Plan the leases for a domain. Throws LeasePlanError where libvirt's driver (or sanlock, at
 * acquire time) would refuse the domain, and where a volume cannot be resolved.
 */
export function planLeases(domain: DomainInfo, conf: PlanConfig): LeasePlan {
  const dir = conf.diskLeaseDir ?? DEFAULT_DISK_LEASE_DIR;
  const auto = conf.autoDiskLeases;
  const requireLease = conf.requireLeaseForDisks ?? !auto;
  const notes: string[] = [];
  const raw: LeaseEntry[] = [];
  const skipped: SkippedDisk[] = [];

  // 1. <lease> elements, always exclusive (domain_lock.c passes leaseFlags = 0)
  for (const l of domain.leases) {
    const who = `<lease> #${l.index} (key '${q(l.key)}')`;
    if (l.lockspace === undefined || l.lockspace === '') {
      throw new LeasePlanError('BAD_LEASE', `${who} has no <lockspace>; libvirt would hand sanlock an empty lockspace name and the acquire would fail`);
    }
    if (l.key === '') throw new LeasePlanError('BAD_LEASE', `<lease> #${l.index} has an empty <key>`);
    checkName('lockspace', l.lockspace, who);
    checkName('key', l.key, who);
    checkPath(l.path, who);
    raw.push({ lockspace: l.lockspace, resource: l.key, path: l.path, offset: l.offset, mode: 'exclusive', origin: 'lease' });
  }

  // 2. disks: only the top image of file/block/dir (or volumes resolving to those), not read-only
  const unleasedRw: DiskInfo[] = [];
  // Without auto leases a path matters only for require_lease_for_disks, and only while no
  // <lease> exists; shareable disks never count there.
  const pathNeeded = (d: DiskInfo) => auto || (requireLease && domain.leases.length === 0 && !d.shareable);
  for (const d of domain.disks) {
    const l = lockablePath(d, pathNeeded(d), conf);
    if ('skip' in l) {
      skipped.push({ index: d.index, target: d.target, reason: l.skip });
      continue;
    }
    if (d.readonly) {
      skipped.push({ index: d.index, target: d.target, reason: 'readonly' });
      continue;
    }
    if (!auto) {
      // lock_driver_sanlock.c: a disk is ignored, but a read/write exclusive one sets hasRWDisks
      if (!d.shareable) unleasedRw.push(d);
      skipped.push({ index: d.index, target: d.target, reason: 'auto-leases-off' });
      continue;
    }
    const name = md5hex(l.path);
    const path = `${dir}/${name}`; // g_strdup_printf("%s/%s"): no normalisation
    checkPath(path, diskWho(d));
    raw.push({
      lockspace: AUTO_DISK_LOCKSPACE,
      resource: name,
      path,
      offset: 0,
      mode: d.shareable ? 'shared' : 'exclusive',
      origin: 'disk',
      disk: { source: l.path, target: d.target, ...(l.pool !== undefined ? { pool: l.pool, volume: l.volume } : {}) },
    });
  }

  // 3. require_lease_for_disks: res_count == 0 && hasRWDisks && requireLeaseForDisks
  if (raw.length === 0 && unleasedRw.length > 0 && requireLease) {
    throw new LeasePlanError('LEASE_REQUIRED', LEASE_REQUIRED_MESSAGE);
  }

  // 4. one entry per sanlock resource (sanlock identifies a resource by lockspace + name)
  const entries: LeaseEntry[] = [];
  const byName = new Map<string, LeaseEntry>();
  for (const e of raw) {
    const k = `${e.lockspace}\0${e.resource}`;
    const prev = byName.get(k);
    if (!prev) {
      const copy = { ...e };
      byName.set(k, copy);
      entries.push(copy);
      continue;
    }
    const what = `${q(e.lockspace)}:${q(e.resource)}`;
    if (prev.path !== e.path || prev.offset !== e.offset) {
      throw new LeasePlanError('CONFLICT', `resource ${what} is listed at ${q(prev.path)}:${prev.offset} and at ${q(e.path)}:${e.offset}`);
    }
    const src = e.disk ? `disk ${q(e.disk.target)} (${q(e.disk.source)})` : `<lease> ${q(e.resource)}`;
    if (prev.mode !== e.mode) {
      prev.mode = 'exclusive';
      notes.push(`${src} is wanted both shared and exclusive as ${what}; taking it exclusive`);
    } else {
      notes.push(`${src} duplicates ${what}; taking it once`);
    }
  }

  for (const s of skipped) {
    if (s.reason === 'auto-leases-off') notes.push(`disk ${q(s.target)} gets no lease: ${SKIP_TEXT[s.reason]}`);
  }
  const exceedsLibvirtLimit = entries.length > LIBVIRT_MAX_RESOURCES;
  if (exceedsLibvirtLimit) {
    notes.push(`${entries.length} leases: more than libvirt's sanlock driver allows (${LIBVIRT_MAX_RESOURCES}); a libvirt host could not start this domain`);
  }

  const lockspaces = [...new Set(entries.map((e) => e.lockspace))];
  return {
    domain: { name: domain.name, uuid: domain.uuid },
    entries,
    lockspaces,
    ...(auto && lockspaces.includes(AUTO_DISK_LOCKSPACE)
      ? { autoLockspace: { name: AUTO_DISK_LOCKSPACE, path: `${dir}/${AUTO_DISK_LOCKSPACE}`, offset: 0 as const } }
      : {}),
    skipped,
    exceedsLibvirtLimit,
    ...(domain.onLockFailure ? { onLockFailure: domain.onLockFailure } : {}),
    notes,
  };
}

/** Human-readable reason for a skipped disk. */
export function skipReasonText(r: SkipReason): string {
  return SKIP_TEXT[r];
}
